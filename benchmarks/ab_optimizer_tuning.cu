// Settings of the quantized-state optimizer update (OptTuning, optimizer.cuh) side by side:
// how many chunks ahead of the one it computes a warp asks for (2 or 3: the next in registers,
// the rest of L2) and whether the block maxima's reciprocals sit behind one branch. The same
// data for every setting: AdamW with 8-bit state over the GPT-2-medium set (292 tensors, 355M
// values) in bfloat16 and in float32, one float32 tensor of 2^28 values, AdamW with 4-bit
// state and AdEMAMix with 8-bit state over the bfloat16 set. Every setting's parameters,
// states and absmax must equal the first setting's (the library's default) bit for bit; times
// are medians of single launches, also as a fraction of the copy floor (the bytes a step must
// move at the bandwidth of cudaMemcpy measured here). The last line names the fastest setting
// by the geometric mean over the bfloat16 cases. On a CUDA machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include \
//     -Ikernels/cuda -Ikernels -o /tmp/ab_optimizer_tuning benchmarks/ab_optimizer_tuning.cu \
//     kernels/cuda/common/launch.cu kernels/cuda/common/device_caps.cu && /tmp/ab_optimizer_tuning
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "harness_common.h"
#include "optimizer/optimizer.cuh"
using namespace bnb;
using namespace bnb::cuda;

static std::vector<int64_t> gpt2_medium() {
  const int64_t d = 1024, vocab = 50304, ctx = 1024;
  std::vector<int64_t> n = {vocab * d, ctx * d};
  for (int l = 0; l < 24; ++l)
    for (int64_t x : {d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d, 4 * d * d, d}) n.push_back(x);
  n.push_back(d);
  n.push_back(d);
  return n;
}

typedef void (*Kern)(OptTable, int, OptimizerHyper, const float*, const float*);
constexpr int kNumSettings = 4;  // the first is the library's default, the reference
const char* const kSettingNames[kNumSettings] = {"a2", "a2+1br", "a3", "a3+1br"};

struct Case {
  const char* name;
  int elem;    // bytes of a parameter value
  int bits;    // of the state
  bool three;  // AdEMAMix's third state
  std::vector<int64_t> sizes;
  Kern kernel[kNumSettings];  // per setting
  int smem;                   // dynamic shared memory
};

template <typename T, int Bits, Algorithm A>
Case make_case(const char* name, bool three, std::vector<int64_t> sizes) {
  return {name, int(sizeof(T)), Bits, three, std::move(sizes),
          {optimizer_update_kernel<T, Bits, A, OptDefaultTuning>, optimizer_update_kernel<T, Bits, A, OptTuning<2, true>>,
           optimizer_update_kernel<T, Bits, A, OptTuning<3, false>>,
           optimizer_update_kernel<T, Bits, A, OptTuning<3, true>>},
          optimizer_smem_bytes(true, num_states(A))};
}

int main() {
  int dev = 0, optin = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, dev));
  const double copy_gbs = copy_bandwidth_gbs();
  printf("%s, %d SMs, %d KiB shared memory a CTA, copy %.0f GB/s\n", prop.name, sms, optin / 1024, copy_gbs);

  const std::vector<float> map8s = dynamic_map(true, 7, 8), map8u = dynamic_map(false, 7, 8);
  std::vector<float> map4s = dynamic_map(true, 3, 4), map4u(16);
  for (int i = 0; i < 16; ++i) map4u[i] = (i + 1) / 16.f;
  float *d8s, *d8u, *d4s, *d4u;
  CK(cudaMalloc(&d8s, 1024)); CK(cudaMalloc(&d8u, 1024)); CK(cudaMalloc(&d4s, 64)); CK(cudaMalloc(&d4u, 64));
  CK(cudaMemcpy(d8s, map8s.data(), 1024, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d8u, map8u.data(), 1024, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d4s, map4s.data(), 64, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d4u, map4u.data(), 64, cudaMemcpyHostToDevice));

  using bf = __nv_bfloat16;
  const std::vector<int64_t> gpt2 = gpt2_medium();
  std::vector<Case> cases = {
      make_case<bf, 8, Algorithm::Adam>("GPT-2-medium bf16 AdamW 8-bit", false, gpt2),
      make_case<bf, 4, Algorithm::Adam>("GPT-2-medium bf16 AdamW 4-bit", false, gpt2),
      make_case<bf, 8, Algorithm::AdEMAMix>("GPT-2-medium bf16 AdEMAMix 8-bit", true, gpt2),
      make_case<float, 8, Algorithm::Adam>("GPT-2-medium f32 AdamW 8-bit", false, gpt2),
      make_case<float, 8, Algorithm::Adam>("2^28 f32 AdamW 8-bit", false, {int64_t(1) << 28}),
  };
  std::map<int, double> logsum;
  std::map<int, int> count;
  bool all_equal = true;
  std::mt19937 rng(7);
  uint32_t xs = 2463534242u;  // xorshift: hundreds of millions of values in a second or two
  auto next = [&]() { xs ^= xs << 13, xs ^= xs >> 17, xs ^= xs << 5; return xs; };
  for (const Case& cs : cases) {
    const int count_t = int(cs.sizes.size());
    const int64_t block = cs.bits == 4 ? kOptimizerBlock4bit : kOptimizerBlock;
    int64_t total = 0, total_blocks = 0;
    for (int64_t n : cs.sizes) total += n, total_blocks += (n + block - 1) / block;
    auto state_bytes_of = [&](int64_t n) { return cs.bits == 4 ? (n + 1) / 2 : n; };
    int64_t state_len = 0;  // bytes of one state, each tensor's part 16-byte aligned
    for (int64_t n : cs.sizes) state_len += (state_bytes_of(n) + 15) / 16 * 16;
    const int states = cs.three ? 3 : 2;
    // Device buffers: p, g, the states and absmax, each tensor's part at its offset.
    const size_t pbytes = size_t(total) * cs.elem;
    char *p, *g, *p0;
    uint8_t *st, *st0;
    float *am, *am0, *stats;
    CK(cudaMalloc(&p, pbytes)); CK(cudaMalloc(&p0, pbytes)); CK(cudaMalloc(&g, pbytes));
    CK(cudaMalloc(&st, size_t(state_len) * states)); CK(cudaMalloc(&st0, size_t(state_len) * states));
    CK(cudaMalloc(&am, size_t(total_blocks) * states * 4)); CK(cudaMalloc(&am0, size_t(total_blocks) * states * 4));
    CK(cudaMalloc(&stats, size_t(count_t) * kStats * 4));
    {  // random parameters, gradients, codes and absmax
      std::vector<uint8_t> h(std::max<size_t>(pbytes, size_t(state_len) * states));
      auto fill_values = [&](char* dst) {
        for (size_t i = 0; i < pbytes / cs.elem; ++i) {
          const float x = (int32_t(next()) >> 8) * 0x1p-28f;  // uniform in [-0.03, 0.03]
          if (cs.elem == 2) {
            const bf b = __float2bfloat16(x);
            memcpy(h.data() + 2 * i, &b, 2);
          } else {
            memcpy(h.data() + 4 * i, &x, 4);
          }
        }
        CK(cudaMemcpy(dst, h.data(), pbytes, cudaMemcpyHostToDevice));
      };
      fill_values(p0);
      fill_values(g);
      for (size_t i = 0; i < size_t(state_len) * states; ++i) h[i] = uint8_t(next() >> 24);
      CK(cudaMemcpy(st0, h.data(), size_t(state_len) * states, cudaMemcpyHostToDevice));
      std::vector<float> ha(size_t(total_blocks) * states);
      for (float& a : ha) a = std::uniform_real_distribution<float>(1e-4f, 1e-2f)(rng);
      CK(cudaMemcpy(am0, ha.data(), ha.size() * 4, cudaMemcpyHostToDevice));
    }
    std::vector<TensorSlot> slots(count_t);
    int64_t off = 0, soff = 0, aoff = 0;
    for (int i = 0; i < count_t; ++i) {
      const int64_t n = cs.sizes[i], nb = (n + block - 1) / block, sb = state_bytes_of(n);
      TensorSlot s{};
      s.p = p + off * cs.elem;
      s.g = g + off * cs.elem;
      s.n = n;
      s.stats = stats + i * kStats;
      if (cs.three) {  // AdEMAMix: state1 holds the fast and the slow EMA, absmax1 both maxima
        s.state1 = st + 2 * soff;
        s.state3 = st + 2 * soff + sb;
        s.state2 = st + 2 * state_len + soff;
        s.absmax1 = am + 2 * aoff;
        s.absmax3 = am + 2 * aoff + nb;
        s.absmax2 = am + 2 * total_blocks + aoff;
      } else {
        s.state1 = st + soff;
        s.state2 = st + state_len + soff;
        s.absmax1 = am + aoff;
        s.absmax2 = am + total_blocks + aoff;
      }
      slots[i] = s;
      off += n, soff += (sb + 15) / 16 * 16, aoff += nb;
    }
    std::vector<char> table(count_t * sizeof(TensorSlot) + (count_t + 1) * sizeof(int64_t));
    const int64_t chunks = fill_optimizer_table(slots.data(), count_t, table.data());
    char* dtable;
    CK(cudaMalloc(&dtable, table.size()));
    CK(cudaMemcpy(dtable, table.data(), table.size(), cudaMemcpyHostToDevice));
    const OptTable tab{reinterpret_cast<const TensorSlot*>(dtable),
                       reinterpret_cast<const int64_t*>(dtable + count_t * sizeof(TensorSlot)), chunks};
    OptimizerHyper hp{};
    hp.algorithm = cs.three ? Algorithm::AdEMAMix : Algorithm::Adam;
    hp.lr = 1e-4f, hp.beta1 = 0.9f, hp.beta2 = 0.999f, hp.beta3 = 0.9999f, hp.alpha = 5.f, hp.eps = 1e-8f;
    hp.weight_decay = 1e-2f, hp.decoupled = true, hp.block_wise = true;
    hp.inv_bias_correction1 = 1.f / (1.f - std::pow(0.9f, 10.f));
    hp.inv_bias_correction2_sqrt = 1.f / std::sqrt(1.f - std::pow(0.999f, 10.f));
    const float* c1 = cs.bits == 4 ? d4s : d8s;
    const float* c2 = cs.bits == 4 ? d4u : d8u;
    // The bytes a step must move: p read and written, g read, each state and absmax read and written.
    const double bytes = 3.0 * pbytes + 2.0 * states * (cs.bits == 4 ? total / 2.0 : total) + 2.0 * states * total_blocks * 4;
    const double floor_us = bytes / (copy_gbs * 1e3);
    auto reset = [&]() {
      CK(cudaMemcpy(p, p0, pbytes, cudaMemcpyDeviceToDevice));
      CK(cudaMemcpy(st, st0, size_t(state_len) * states, cudaMemcpyDeviceToDevice));
      CK(cudaMemcpy(am, am0, size_t(total_blocks) * states * 4, cudaMemcpyDeviceToDevice));
    };
    std::vector<char> ref_p(pbytes), got_p(pbytes);
    std::vector<uint8_t> ref_s(size_t(state_len) * states), got_s(ref_s.size());
    std::vector<float> ref_a(size_t(total_blocks) * states), got_a(ref_a.size());
    printf("%-34s floor %7.1f us:", cs.name, floor_us);
    for (int v = 0; v < kNumSettings; ++v) {
      const int smem = cs.smem;
      const Kern kernel = cs.kernel[v];
      CK(cudaFuncSetAttribute((const void*)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      int per_sm = 0;
      CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, (const void*)kernel, kOptThreads, smem));
      const int64_t grid = std::min<int64_t>((chunks + kOptWarps - 1) / kOptWarps, int64_t(sms) * std::max(1, per_sm));
      reset();
      kernel<<<int(grid), kOptThreads, smem>>>(tab, count_t, hp, c1, c2);
      CK(cudaGetLastError());
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(v ? got_p.data() : ref_p.data(), p, pbytes, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(v ? got_s.data() : ref_s.data(), st, ref_s.size(), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(v ? got_a.data() : ref_a.data(), am, ref_a.size() * 4, cudaMemcpyDeviceToHost));
      const bool eq = v == 0 || (ref_p == got_p && ref_s == got_s && memcmp(ref_a.data(), got_a.data(), ref_a.size() * 4) == 0);
      all_equal &= eq;
      const float us = 1000.f * median_ms([&] { kernel<<<int(grid), kOptThreads, smem>>>(tab, count_t, hp, c1, c2); });
      if (cs.elem == 2) logsum[v] += std::log(us), count[v] += 1;
      printf("  %s %7.1f us %.2f%s", kSettingNames[v], us, floor_us / us, eq ? "" : " MISMATCH");
    }
    printf("\n");
    cudaFree(p), cudaFree(p0), cudaFree(g), cudaFree(st), cudaFree(st0), cudaFree(am), cudaFree(am0);
    cudaFree(stats), cudaFree(dtable);
  }
  printf("results equal across settings: %s\n", all_equal ? "yes" : "NO");
  int most = 0, best = 0;
  double best_t = 1e30;
  for (auto& [k, n] : count) most = std::max(most, n);
  for (auto& [k, n] : count) {
    if (n != most) continue;
    const double gm = std::exp(logsum[k] / n);
    printf("%s: geomean %.1f us over %d bf16 cases\n", kSettingNames[k], gm, n);
    if (gm < best_t) best_t = gm, best = k;
  }
  printf("BEST=%s\n", kSettingNames[best]);
  return all_equal ? 0 : 2;
}
