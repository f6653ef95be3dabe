// The two counting passes of quantile estimation (bnb/quantiles.h has the method), templated
// on the element type; each dtype's instantiation lives in its own quantiles_<dtype>.cu.
//
// Both passes keep their histogram in shared memory (one CTA of 1024 threads per SM, a
// persistent grid striding over tiles) and add it to the global one once at the end, so the
// only global atomics are one per non-empty bin per CTA. (GPUs with less than 192 KiB of
// shared memory per CTA, before sm_90, count with global atomics instead.) Pass 1 reads with the default
// cache policy and pass 2 walks the tiles in reverse order: the tail of the input that
// pass 1 read last is still in L2 when pass 2 starts, which saves part of its DRAM read.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>

#include "bnb/quantiles.h"
#include "bnb/quantiles_cuda.h"
#include "bnb/quantize_cuda.h"
#include "quant_common.cuh"

namespace bnb::cuda {

namespace q = bnb::quantiles;

// Device scratch memory of one call. The two histograms are zeroed before pass 1; the rest
// is written by the locate kernel.
struct QuantileWorkspace {
  unsigned long long hist1[q::kLevel1Bins];
  unsigned long long hist2[q::kMaxQuantiles * q::kLevel2Bins];       // counts per slot and sub-bin
  unsigned long long position_sum[q::kMaxQuantiles * q::kLevel2Bins];  // sums of positions in the final bin
  unsigned long long rank_in_bin[q::kMaxQuantiles];  // wanted rank inside its level-1 bin
  uint32_t slot_bin[q::kMaxQuantiles];       // level-1 bin of each slot
  uint32_t quantile_slot[q::kMaxQuantiles];  // slot of each quantile
  uint32_t num_slots;
};
constexpr size_t kQuantileZeroedBytes = offsetof(QuantileWorkspace, rank_in_bin);

constexpr int kPassThreads = 1024;
constexpr int kPassWords = 4;  // 16-byte loads in flight per thread and tile
constexpr int kLevel1Smem = q::kLevel1Bins * sizeof(uint32_t);  // 128 KiB
constexpr int kLevel2Cells = q::kMaxQuantiles * q::kLevel2Bins;
// Slot of each level-1 bin (64 KiB), then the counts and position sums (64 KiB each).
constexpr int kLevel2Smem = q::kLevel1Bins * sizeof(uint16_t) + 2 * kLevel2Cells * sizeof(uint32_t);
// Pass 2 sums 11-bit positions in 32-bit shared counters: a CTA reads at most 2^21 values,
// so that a sum (at most 2^21 * 2047) cannot overflow.
constexpr int64_t kLevel2MaxValuesPerCta = int64_t(1) << 21;
constexpr uint16_t kNoSlot = 0xffff;

// Calls f(x, converged) for every value of A, visiting tiles of kPassThreads * kPassWords
// 16-byte words (from the last tile down when kReverse). kStream marks the loads as the
// data's last use. `converged` is true where all 32 lanes of the warp make the call
// together (full tiles), so f may use warp votes there.
template <typename T, bool kReverse, bool kStream, class F>
__device__ __forceinline__ void for_each_value(const T* __restrict__ A, int64_t n, F&& f) {
  constexpr int kPerWord = 16 / sizeof(T);
  constexpr int64_t kTile = int64_t(kPassThreads) * kPassWords * kPerWord;
  const bool vector_ok = aligned16(A);
  const int64_t tiles = (n + kTile - 1) / kTile;
  for (int64_t step = blockIdx.x; step < tiles; step += gridDim.x) {
    const int64_t tile = kReverse ? tiles - 1 - step : step;
    const int64_t start = tile * kTile;
    if (vector_ok && start + kTile <= n) {
      const uint4* words = reinterpret_cast<const uint4*>(A + start);
      uint4 raw[kPassWords];
#pragma unroll
      for (int w = 0; w < kPassWords; ++w) {
        const uint4* p = words + w * kPassThreads + threadIdx.x;  // coalesced across the CTA
        raw[w] = kStream ? __ldcs(p) : *p;
      }
#pragma unroll
      for (int w = 0; w < kPassWords; ++w) {
        const T* e = reinterpret_cast<const T*>(&raw[w]);
#pragma unroll
        for (int k = 0; k < kPerWord; ++k) f(to_float(e[k]), true);
      }
    } else {
      const int64_t end = std::min<int64_t>(start + kTile, n);
      for (int64_t i = start + threadIdx.x; i < end; i += kPassThreads) f(to_float(A[i]), false);
    }
  }
}

// Shared-memory atomics of a warp on one address run one after another, so data with a
// dominant value (ties, zeros) would serialise. Lanes whose `id` equals that of lane 0, or
// of the first lane that differs from lane 0, are counted by that leader in one atomic.
// Returns how many values this lane adds (0: a leader adds for it). All 32 lanes must call.
__device__ __forceinline__ uint32_t warp_group_count(uint32_t id) {
  const int lane = threadIdx.x % 32;
  const uint32_t id0 = __shfl_sync(0xffffffffu, id, 0);
  const unsigned m0 = __ballot_sync(0xffffffffu, id == id0);
  if (m0 == 0xffffffffu) return lane == 0 ? 32u : 0u;
  const int lane1 = __ffs(~m0) - 1;
  const uint32_t id1 = __shfl_sync(0xffffffffu, id, lane1);
  const unsigned m1 = __ballot_sync(0xffffffffu, id == id1);
  if (id == id0) return lane == 0 ? __popc(m0) : 0u;
  if (id == id1) return lane == lane1 ? __popc(m1) : 0u;
  return 1u;
}

// kShared: count in shared memory and add to the global histogram once per CTA (GPUs that
// give a CTA 192 KiB of shared memory: sm_90). Otherwise every value is a global atomic:
// correct everywhere, but slower.
template <typename T, bool kShared>
__global__ void __launch_bounds__(kPassThreads) quantile_level1_kernel(const T* __restrict__ A, int64_t n,
                                                                       QuantileWorkspace* ws) {
  if constexpr (kShared) {
    extern __shared__ uint32_t hist[];
    for (int i = threadIdx.x; i < q::kLevel1Bins; i += kPassThreads) hist[i] = 0;
    __syncthreads();
    for_each_value<T, false, false>(A, n, [&](float x, bool converged) {
      const uint32_t bin = q::order_key(x) >> q::kLevel1Shift;
      const uint32_t count = converged ? warp_group_count(bin) : 1u;
      if (count) atomicAdd(&hist[bin], count);
    });
    __syncthreads();
    for (int i = threadIdx.x; i < q::kLevel1Bins; i += kPassThreads)
      if (hist[i]) atomicAdd(&ws->hist1[i], static_cast<unsigned long long>(hist[i]));
  } else {
    for_each_value<T, false, false>(A, n, [&](float x, bool converged) {
      const uint32_t bin = q::order_key(x) >> q::kLevel1Shift;
      const uint32_t count = converged ? warp_group_count(bin) : 1u;
      if (count) atomicAdd(&ws->hist1[bin], static_cast<unsigned long long>(count));
    });
  }
}

template <typename T, bool kShared>
__global__ void __launch_bounds__(kPassThreads) quantile_level2_kernel(const T* __restrict__ A, int64_t n,
                                                                       QuantileWorkspace* ws) {
  extern __shared__ uint32_t smem[];
  uint16_t* slot_of_bin = reinterpret_cast<uint16_t*>(smem);
  uint32_t* hist = smem + q::kLevel1Bins / 2;
  uint32_t* sums = hist + kLevel2Cells;
  const int slots = int(ws->num_slots);
  for (int i = threadIdx.x; i < q::kLevel1Bins / 2; i += kPassThreads) smem[i] = 0xffffffffu;  // kNoSlot pairs
  if constexpr (kShared) {
    for (int i = threadIdx.x; i < slots * q::kLevel2Bins; i += kPassThreads) hist[i] = sums[i] = 0;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += kPassThreads) slot_of_bin[ws->slot_bin[s]] = uint16_t(s);
  __syncthreads();
  for_each_value<T, true, true>(A, n, [&](float x, bool converged) {
    const uint32_t key = q::order_key(x);
    // Grouped by the whole key: equal keys have equal slots and positions.
    const uint32_t count = converged ? warp_group_count(key) : 1u;
    const uint32_t slot = slot_of_bin[key >> q::kLevel1Shift];
    if (count && slot != kNoSlot) {
      const uint32_t at = slot * q::kLevel2Bins + ((key >> q::kFinalShift) & (q::kLevel2Bins - 1));
      const uint32_t position_sum = count * (key & q::kPositionMask);
      if constexpr (kShared) {
        atomicAdd(&hist[at], count);
        atomicAdd(&sums[at], position_sum);
      } else {
        atomicAdd(&ws->hist2[at], static_cast<unsigned long long>(count));
        atomicAdd(&ws->position_sum[at], static_cast<unsigned long long>(position_sum));
      }
    }
  });
  if constexpr (kShared) {
    __syncthreads();
    for (int i = threadIdx.x; i < slots * q::kLevel2Bins; i += kPassThreads) {
      if (hist[i]) {
        atomicAdd(&ws->hist2[i], static_cast<unsigned long long>(hist[i]));
        atomicAdd(&ws->position_sum[i], static_cast<unsigned long long>(sums[i]));
      }
    }
  }
}

// Whether the current GPU gives one CTA the shared memory of the shared-memory passes.
// Device attributes are cached per device: the query is host time on every call otherwise.
inline bool quantile_passes_fit_shared() {
  static std::atomic<int> cached[64] = {};  // 0 unknown, 1 no, 2 yes
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (device < 0 || device >= 64) return false;
  if (const int c = cached[device].load(std::memory_order_relaxed)) return c == 2;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return false;
  const bool fits = optin >= std::max(kLevel1Smem, kLevel2Smem);
  cached[device].store(fits ? 2 : 1, std::memory_order_relaxed);
  return fits;
}

// Persistent grid of one of the pass kernels, after allowing it its shared memory (once per
// device and kernel).
template <typename T, bool kShared>
cudaError_t launch_quantile_pass_on(int level, const T* A, int64_t n, QuantileWorkspace* ws, cudaStream_t stream) {
  const auto kernel = level == 1 ? quantile_level1_kernel<T, kShared> : quantile_level2_kernel<T, kShared>;
  constexpr int kLookupSmem = q::kLevel1Bins * sizeof(uint16_t);
  const int smem = level == 1 ? (kShared ? kLevel1Smem : 0) : (kShared ? kLevel2Smem : kLookupSmem);
  static std::atomic<bool> smem_allowed[2][64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return cudaErrorInvalidDevice;
  std::atomic<bool>* allowed = device >= 0 && device < 64 ? &smem_allowed[level - 1][device] : nullptr;
  if (smem > 48 * 1024 && !(allowed && allowed->load(std::memory_order_relaxed))) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
    if (allowed) allowed->store(true, std::memory_order_relaxed);
  }
  constexpr int64_t kTile = int64_t(kPassThreads) * kPassWords * (16 / sizeof(T));
  constexpr int64_t kMaxTilesPerCta = kLevel2MaxValuesPerCta / kTile;
  const int64_t tiles = (n + kTile - 1) / kTile;
  int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kPassThreads, smem));
  if (level == 2) grid = std::max<int64_t>(grid, (tiles + kMaxTilesPerCta - 1) / kMaxTilesPerCta);
  grid = std::max<int64_t>(grid, 1);
  kernel<<<int(grid), kPassThreads, smem, stream>>>(A, n, ws);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_quantile_pass(int level, const T* A, int64_t n, QuantileWorkspace* ws, cudaStream_t stream) {
  return quantile_passes_fit_shared() ? launch_quantile_pass_on<T, true>(level, A, n, ws, stream)
                                      : launch_quantile_pass_on<T, false>(level, A, n, ws, stream);
}

#define BNB_INSTANTIATE_QUANTILE_PASS(T) \
  template cudaError_t launch_quantile_pass<T>(int, const T*, int64_t, QuantileWorkspace*, cudaStream_t);

}  // namespace bnb::cuda
