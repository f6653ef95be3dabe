// The kept optimizer launches (optimizer_launch.h): a small most-recently-used list keyed by
// the tensors a launch updates.
#include "optimizer_launch.h"

#include <ATen/ops/empty.h>

#include <list>
#include <mutex>
#include <utility>

namespace bnb::ops {

namespace {

// Enough for every launch of several optimizers at once (one per group, dtype and state kind);
// each costs a few bytes per tensor.
constexpr size_t kKeptLaunches = 256;

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

uint64_t launch_key(const c10::Device& device, const std::vector<TensorSlot>& slots) {
  uint64_t h = mix(uint64_t(device.type()) << 8 | uint64_t(uint8_t(device.index())), slots.size());
  for (const TensorSlot& s : slots) {
    h = mix(h, reinterpret_cast<uintptr_t>(s.p));
    h = mix(h, reinterpret_cast<uintptr_t>(s.state1));
    h = mix(h, reinterpret_cast<uintptr_t>(s.state2));
    h = mix(h, reinterpret_cast<uintptr_t>(s.absmax1));
    h = mix(h, reinterpret_cast<uintptr_t>(s.absmax2));
    h = mix(h, uint64_t(s.n));
  }
  return h;
}

struct Kept {
  std::mutex mutex;
  std::list<std::pair<uint64_t, std::shared_ptr<OptimizerLaunch>>> recent;  // most recent first
};

Kept& kept() {
  static Kept* k = new Kept();  // never destroyed: device memory is not freed at interpreter exit
  return *k;
}

}  // namespace

std::shared_ptr<OptimizerLaunch> optimizer_launch_for(const c10::Device& device,
                                                      const std::vector<TensorSlot>& slots) {
  const uint64_t key = launch_key(device, slots);
  std::shared_ptr<OptimizerLaunch> launch;
  {
    Kept& k = kept();
    const std::lock_guard<std::mutex> lock(k.mutex);
    for (auto it = k.recent.begin(); it != k.recent.end(); ++it) {
      if (it->first == key) {
        k.recent.splice(k.recent.begin(), k.recent, it);
        launch = it->second;
        break;
      }
    }
    if (!launch) {
      launch = std::make_shared<OptimizerLaunch>();
      k.recent.emplace_front(key, launch);
      if (k.recent.size() > kKeptLaunches) k.recent.pop_back();
    }
  }
  const int64_t floats = int64_t(slots.size()) * kStats;
  if (!launch->workspace.defined() || launch->workspace.numel() < floats)
    launch->workspace = at::empty({floats}, at::TensorOptions().dtype(at::kFloat).device(device));
  return launch;
}

}  // namespace bnb::ops
