// Persistent-grid sizing: how many CTAs of a kernel the current GPU holds at once.
// Cached per (kernel, device) because the occupancy query costs more than a launch.
#include <mutex>
#include <unordered_map>

#include "bnb/quantize_cuda.h"

namespace bnb::cuda {

int persistent_grid(const void* kernel, int threads, int dynamic_smem) {
  static std::mutex mutex;
  static std::unordered_map<const void*, int> cache[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return 1024;
  std::lock_guard<std::mutex> lock(mutex);
  auto& per_device = cache[device];
  auto it = per_device.find(kernel);
  if (it != per_device.end()) return it->second;
  int sms = 0, per_sm = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, dynamic_smem);
  const int grid = std::max(1, sms * std::max(1, per_sm));
  per_device.emplace(kernel, grid);
  return grid;
}

}  // namespace bnb::cuda
