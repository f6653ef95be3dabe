// The two counting passes of quantile estimation (bnb/quantiles.h has the method), templated
// on the element type; each dtype's instantiation lives in its own quantiles_<dtype>.cu.
//
// Both passes keep their histogram in shared memory (one CTA of 1024 threads per SM, a
// persistent grid striding over tiles) and add it to the global one once at the end. On
// sm_90 the CTAs run in thread-block clusters: at the end each CTA of a cluster sums its
// share of the bins over all the cluster's histograms (distributed shared memory) and adds
// that to the global histogram, so the global atomics are one per non-empty bin per
// cluster, not per CTA. (GPUs with less than 192 KiB of shared memory per CTA, before
// sm_90, count with global atomics instead.) Pass 1 reads with the default cache policy
// and pass 2 walks the tiles in reverse order: the tail of the input that pass 1 read last
// is still in L2 when pass 2 starts, which saves part of its DRAM read.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <unordered_map>

#include <cooperative_groups.h>

#include "bnb/quantiles.h"
#include "bnb/quantiles_cuda.h"
#include "bnb/quantize_cuda.h"
#include "quant_common.cuh"

namespace bnb::cuda {

namespace q = bnb::quantiles;

constexpr int kLevel1Chunk = 32;                            // level-1 bins per chunk count
constexpr int kLevel1Chunks = q::kLevel1Bins / kLevel1Chunk;  // 1024

// Device scratch memory of one call. hist1 and chunk1 are zeroed before pass 1, hist2 and
// position_sum by pass 1; the rest is written by the locate kernel.
struct QuantileWorkspace {
  unsigned long long hist1[q::kLevel1Bins];
  unsigned long long chunk1[kLevel1Chunks];  // sums of 32 consecutive level-1 bins
  unsigned long long hist2[q::kMaxQuantiles * q::kLevel2Bins];       // counts per slot and sub-bin
  unsigned long long position_sum[q::kMaxQuantiles * q::kLevel2Bins];  // sums of positions in the final bin
  unsigned long long rank_in_bin[q::kMaxQuantiles];  // wanted rank inside its level-1 bin
  uint32_t slot_bin[q::kMaxQuantiles];       // level-1 bin of each slot
  uint32_t quantile_slot[q::kMaxQuantiles];  // slot of each quantile
  uint32_t num_slots;
};
constexpr size_t kQuantileZeroedBytes = offsetof(QuantileWorkspace, hist2);

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
// CTAs per thread-block cluster on sm_90: the passes' histograms are summed over a cluster
// in distributed shared memory before they go to global memory (8 is the portable maximum).
constexpr int kClusterSize = 8;

// The CTA's thread-block cluster: size, rank, barrier and the shared memory of another
// CTA of it. Before sm_90 (no clusters) every CTA is a cluster of one.
struct Cluster {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __device__ __forceinline__ static unsigned size() { return cooperative_groups::this_cluster().num_blocks(); }
  __device__ __forceinline__ static unsigned rank() { return cooperative_groups::this_cluster().block_rank(); }
  __device__ __forceinline__ static void sync() { cooperative_groups::this_cluster().sync(); }
  template <typename P> __device__ __forceinline__ static P* at(P* p, unsigned r) {
    return cooperative_groups::this_cluster().map_shared_rank(p, r);
  }
#else
  __device__ __forceinline__ static unsigned size() { return 1; }
  __device__ __forceinline__ static unsigned rank() { return 0; }
  __device__ __forceinline__ static void sync() { __syncthreads(); }
  template <typename P> __device__ __forceinline__ static P* at(P* p, unsigned) { return p; }
#endif
};

// Calls f(x) for every value of A, visiting tiles of kPassThreads * kPassWords 16-byte
// words (from the last tile down when kReverse). kStream marks the loads as the data's last
// use. The loads of a CTA's next tile are issued before the values of the current one are
// counted, so that every warp keeps its loads in flight while it counts (measured: 4% off
// the whole call at 2^24 values on the H100).
template <typename T, bool kReverse, bool kStream, class F>
__device__ __forceinline__ void for_each_value(const T* __restrict__ A, int64_t n, F&& f) {
  constexpr int kPerWord = 16 / sizeof(T);
  constexpr int64_t kTile = int64_t(kPassThreads) * kPassWords * kPerWord;
  const bool vector_ok = aligned16(A);
  const int64_t tiles = (n + kTile - 1) / kTile;
  const auto start_of = [&](int64_t step) { return (kReverse ? tiles - 1 - step : step) * kTile; };
  const auto full = [&](int64_t step) { return step < tiles && vector_ok && start_of(step) + kTile <= n; };
  const auto load = [&](int64_t step, uint4 (&raw)[kPassWords]) {
    const uint4* words = reinterpret_cast<const uint4*>(A + start_of(step));
#pragma unroll
    for (int w = 0; w < kPassWords; ++w) {
      const uint4* p = words + w * kPassThreads + threadIdx.x;  // coalesced across the CTA
      raw[w] = kStream ? __ldcs(p) : *p;
    }
  };
  const auto count = [&](const uint4 (&raw)[kPassWords]) {
#pragma unroll
    for (int w = 0; w < kPassWords; ++w) {
      const T* e = reinterpret_cast<const T*>(&raw[w]);
#pragma unroll
      for (int k = 0; k < kPerWord; ++k) f(to_float(e[k]));
    }
  };
  const auto count_partial = [&](int64_t step) {
    const int64_t start = start_of(step), end = std::min<int64_t>(start + kTile, n);
    for (int64_t i = start + threadIdx.x; i < end; i += kPassThreads) f(to_float(A[i]));
  };
  uint4 raw[kPassWords];
  int64_t step = blockIdx.x;
  if (full(step)) load(step, raw);
  for (; step < tiles; step += gridDim.x) {
    const int64_t next = step + gridDim.x;
    uint4 ahead[kPassWords];
    if (full(next)) load(next, ahead);
    if (full(step)) count(raw); else count_partial(step);
#pragma unroll
    for (int w = 0; w < kPassWords; ++w) raw[w] = ahead[w];
  }
}

// Zeroes this CTA's share of the level-2 counts (pass 1 does it for pass 2).
__device__ __forceinline__ void zero_level2_share(QuantileWorkspace* ws) {
  const int per = (kLevel2Cells + int(gridDim.x) - 1) / int(gridDim.x);
  const int begin = int(blockIdx.x) * per, end = min(int(kLevel2Cells), begin + per);
  for (int i = begin + int(threadIdx.x); i < end; i += kPassThreads) ws->hist2[i] = ws->position_sum[i] = 0ull;
}

// Every value is one shared-memory atomic; there is no grouping of equal values. (A warp's
// atomics on one address run one after another, so data dominated by a few values count
// slower: docs/quantiles.md has the measured cost. Grouping equal values with warp votes cost
// more on spread-out data than it saved on ties.)
//
// kShared: count in shared memory and add to the global histogram once per cluster (GPUs
// that give a CTA 192 KiB of shared memory: sm_90). Otherwise every value is a global
// atomic: correct everywhere, but slower. Either way the sums of chunks of 32 bins are
// counted too, so that the locate kernel reads 1024 chunk sums instead of 32768 bins.
template <typename T, bool kShared>
__global__ void __launch_bounds__(kPassThreads) quantile_level1_kernel(const T* __restrict__ A, int64_t n,
                                                                       QuantileWorkspace* ws) {
  extern __shared__ uint32_t hist[];
  zero_level2_share(ws);
  if constexpr (kShared) {
    for (int i = threadIdx.x; i < q::kLevel1Bins; i += kPassThreads) hist[i] = 0;
    __syncthreads();
    for_each_value<T, false, false>(A, n, [&](float x) {
      atomicAdd(&hist[q::order_key(x) >> q::kLevel1Shift], 1u);
    });
    // Every CTA of the cluster sums its share of the bins over the cluster's histograms; a
    // warp's 32 bins are one chunk.
    Cluster::sync();
    const unsigned size = Cluster::size(), rank = Cluster::rank();
    for (int i = int(rank) * kPassThreads + threadIdx.x; i < q::kLevel1Bins; i += int(size) * kPassThreads) {
      unsigned long long total = 0;
      for (unsigned r = 0; r < size; ++r) total += Cluster::at(hist, r)[i];
      if (total) atomicAdd(&ws->hist1[i], total);
      unsigned long long chunk = total;
#pragma unroll
      for (int o = 16; o >= 1; o >>= 1) chunk += __shfl_xor_sync(0xffffffffu, chunk, o);
      if (threadIdx.x % 32 == 0 && chunk) atomicAdd(&ws->chunk1[i / kLevel1Chunk], chunk);
    }
    Cluster::sync();  // no CTA leaves while another still reads its shared memory
  } else {
    for (int i = threadIdx.x; i < kLevel1Chunks; i += kPassThreads) hist[i] = 0;
    __syncthreads();
    for_each_value<T, false, false>(A, n, [&](float x) {
      const uint32_t bin = q::order_key(x) >> q::kLevel1Shift;
      atomicAdd(&ws->hist1[bin], 1ull);
      atomicAdd(&hist[bin / kLevel1Chunk], 1u);
    });
    __syncthreads();
    for (int i = threadIdx.x; i < kLevel1Chunks; i += kPassThreads)
      if (hist[i]) atomicAdd(&ws->chunk1[i], static_cast<unsigned long long>(hist[i]));
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
  const int cells = slots * q::kLevel2Bins;
  for (int i = threadIdx.x; i < q::kLevel1Bins / 2; i += kPassThreads) smem[i] = 0xffffffffu;  // kNoSlot pairs
  if constexpr (kShared) {
    for (int i = threadIdx.x; i < cells; i += kPassThreads) hist[i] = sums[i] = 0;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += kPassThreads) slot_of_bin[ws->slot_bin[s]] = uint16_t(s);
  __syncthreads();
  // Counts a value if its level-1 bin is a slot's, and adds its position in its final bin.
  for_each_value<T, true, true>(A, n, [&](float x) {
    const uint32_t key = q::order_key(x);
    const uint32_t slot = slot_of_bin[key >> q::kLevel1Shift];
    if (slot != kNoSlot) {
      const uint32_t at = slot * q::kLevel2Bins + ((key >> q::kFinalShift) & (q::kLevel2Bins - 1));
      if constexpr (kShared) {
        atomicAdd(&hist[at], 1u);
        atomicAdd(&sums[at], key & q::kPositionMask);
      } else {
        atomicAdd(&ws->hist2[at], 1ull);
        atomicAdd(&ws->position_sum[at], static_cast<unsigned long long>(key & q::kPositionMask));
      }
    }
  });
  if constexpr (kShared) {
    Cluster::sync();
    const unsigned size = Cluster::size(), rank = Cluster::rank();
    for (int i = int(rank) * kPassThreads + threadIdx.x; i < cells; i += int(size) * kPassThreads) {
      unsigned long long count = 0, position_sum = 0;
      for (unsigned r = 0; r < size; ++r) {
        count += Cluster::at(hist, r)[i];
        position_sum += Cluster::at(sums, r)[i];
      }
      if (count) {
        atomicAdd(&ws->hist2[i], count);
        atomicAdd(&ws->position_sum[i], position_sum);
      }
    }
    Cluster::sync();  // no CTA leaves while another still reads its shared memory
  }
}

// Whether the current GPU gives one CTA the shared memory of the shared-memory passes, and
// runs thread-block clusters (sm_90 on). Cached per device: the query is host time on
// every call otherwise.
inline int quantile_device_caps() {  // bit 0: shared-memory passes fit, bit 1: clusters
  static std::atomic<int> cached[64] = {};  // 0 unknown, else caps + 4
  int device = 0, optin = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 0;
  if (device < 0 || device >= 64) return 0;
  if (const int c = cached[device].load(std::memory_order_relaxed)) return c - 4;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return 0;
  const int caps = (optin >= std::max(kLevel1Smem, kLevel2Smem) ? 1 : 0) | (major >= 9 ? 2 : 0);
  cached[device].store(caps + 4, std::memory_order_relaxed);
  return caps;
}

// How many clusters of kClusterSize CTAs of `kernel` the GPU holds at once (0: none, or the
// query failed), cached per device and kernel: the query is host time on every call
// otherwise.
inline int quantile_max_clusters(const void* kernel, int smem, int device) {
  static std::mutex mutex;
  static std::unordered_map<const void*, int> cache[64];
  std::lock_guard<std::mutex> lock(mutex);
  auto& per_device = cache[device];
  auto it = per_device.find(kernel);
  if (it != per_device.end()) return it->second;
  int clusters = 0;
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = unsigned(kClusterSize);
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  config.gridDim = dim3(unsigned(kClusterSize));
  config.blockDim = dim3(kPassThreads);
  config.dynamicSmemBytes = size_t(smem);
  config.attrs = &attr;
  config.numAttrs = 1;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: the launch goes without clusters
    clusters = 0;
  }
  per_device.emplace(kernel, clusters);
  return clusters;
}

// Persistent grid of one of the pass kernels, after allowing it its shared memory (once per
// device and kernel), in clusters of kClusterSize CTAs where the GPU has clusters.
template <typename T, bool kShared>
cudaError_t launch_quantile_pass_on(int level, bool clusters_ok, const T* A, int64_t n, QuantileWorkspace* ws,
                                    cudaStream_t stream) {
  const auto kernel = level == 1 ? quantile_level1_kernel<T, kShared> : quantile_level2_kernel<T, kShared>;
  constexpr int kLookupSmem = q::kLevel1Bins * sizeof(uint16_t);
  constexpr int kChunkSmem = kLevel1Chunks * sizeof(uint32_t);
  const int smem = level == 1 ? (kShared ? kLevel1Smem : kChunkSmem) : (kShared ? kLevel2Smem : kLookupSmem);
  static std::atomic<bool> smem_allowed[2][64] = {};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return cudaErrorInvalidDevice;
  if (device < 0 || device >= 64) return cudaErrorInvalidDevice;
  std::atomic<bool>* allowed = &smem_allowed[level - 1][device];
  if (smem > 48 * 1024 && !allowed->load(std::memory_order_relaxed)) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (err != cudaSuccess) return err;
    allowed->store(true, std::memory_order_relaxed);
  }
  constexpr int64_t kTile = int64_t(kPassThreads) * kPassWords * (16 / sizeof(T));
  constexpr int64_t kMaxTilesPerCta = kLevel2MaxValuesPerCta / kTile;
  const int64_t tiles = (n + kTile - 1) / kTile;
  // Clusters where the input fills at least two of them.
  const int clusters = kShared && clusters_ok && tiles >= 2 * kClusterSize
                           ? quantile_max_clusters((const void*)kernel, smem, device) : 0;
  const int cluster = clusters > 0 ? kClusterSize : 1;
  int64_t grid = clusters > 0 ? int64_t(clusters) * kClusterSize
                              : std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kPassThreads, smem));
  if (level == 2) grid = std::max<int64_t>(grid, (tiles + kMaxTilesPerCta - 1) / kMaxTilesPerCta);
  grid = std::max<int64_t>(grid, 1);
  grid = (grid + cluster - 1) / cluster * cluster;
  if (cluster == 1) {
    kernel<<<int(grid), kPassThreads, smem, stream>>>(A, n, ws);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = unsigned(cluster);
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  config.gridDim = dim3(unsigned(grid));
  config.blockDim = dim3(kPassThreads);
  config.dynamicSmemBytes = size_t(smem);
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, A, n, ws);
}

template <typename T>
cudaError_t launch_quantile_pass(int level, const T* A, int64_t n, QuantileWorkspace* ws, cudaStream_t stream) {
  const int caps = quantile_device_caps();
  return caps & 1 ? launch_quantile_pass_on<T, true>(level, (caps & 2) != 0, A, n, ws, stream)
                  : launch_quantile_pass_on<T, false>(level, false, A, n, ws, stream);
}

#define BNB_INSTANTIATE_QUANTILE_PASS(T) \
  template cudaError_t launch_quantile_pass<T>(int, const T*, int64_t, QuantileWorkspace*, cudaStream_t);

}  // namespace bnb::cuda
