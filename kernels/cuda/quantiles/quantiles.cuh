// The two counting passes of quantile estimation (bnb/quantiles.h has the method), templated
// on the element type; each dtype's instantiation lives in its own quantiles_<dtype>.cu.
//
// Both passes keep their histogram in shared memory (one CTA of 1024 threads per SM, a
// persistent grid striding over tiles). On sm_90 the CTAs run in thread-block clusters: at
// the end each CTA of a cluster sums its share of the bins over all the cluster's
// histograms (distributed shared memory) and stores the sums in the cluster's own row of
// the workspace, with plain stores: no global atomics, and nothing to zero before a call
// (a memset is a launch of its own). The next kernel adds up the rows it needs. (GPUs with
// less than 192 KiB of shared memory per CTA, before sm_90, count with global atomics into
// one zeroed row instead.) Pass 1 reads with the default cache policy and pass 2 walks the
// tiles in reverse order: the tail of the input that pass 1 read last is still in L2 when
// pass 2 starts, which saves part of its DRAM read.
//
// The kernels of a call are chained with programmatic dependent launch (sm_90): each one
// lets the next start as soon as it runs, and the next waits for it (griddepcontrol.wait)
// only after its own set-up, so the launch and set-up of a kernel overlap the end of the
// one before.
#pragma once
#include <algorithm>
#include <cstddef>

#include <cooperative_groups.h>

#include "bnb/quantiles.h"
#include "bnb/quantiles_cuda.h"
#include "../common/device_caps.cuh"
#include "../common/launch.cuh"
#include "../common/reduce.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

namespace q = bnb::quantiles;

constexpr int kLevel1Chunk = 32;                              // level-1 bins per chunk count
constexpr int kLevel1Chunks = q::kLevel1Bins / kLevel1Chunk;  // 1024
constexpr int kLevel2Cells = q::kMaxQuantiles * q::kLevel2Bins;  // 64 sub-bins per slot

// What the locate kernel finds (written by it and by pass 2, read by pass 2 and finish).
struct QuantileHeader {
  unsigned long long rank_in_bin[q::kMaxQuantiles];  // wanted rank inside its level-1 bin
  uint32_t bin_of[q::kMaxQuantiles];                 // level-1 bin of each quantile
  uint32_t quantile_slot[q::kMaxQuantiles];          // slot of each quantile (pass 2 numbers them)
};

// The workspace of one call: the header, then one row per group (a cluster, or a CTA where
// there are no clusters) of each pass's sums. A slot is numbered by the first quantile whose
// level-1 bin it is, so its 64 cells start at cell slot * 64.
struct QuantileWorkspace {
  QuantileHeader* header;
  uint32_t* chunk1;            // [groups1][kLevel1Chunks]: sums of 32 consecutive level-1 bins
  uint32_t* hist1;             // [groups1][q::kLevel1Bins]: level-1 counts
  unsigned long long* count2;  // [groups2][kLevel2Cells]: counts per slot and sub-bin
  unsigned long long* sum2;    // [groups2][kLevel2Cells]: sums of positions in the final bin
};

// How a pass is launched: `grid` CTAs in clusters of `cluster`, summed into `groups` rows.
struct QuantilePassGrid {
  int64_t grid = 1;
  int cluster = 1;
  int64_t groups = 1;
  bool shared = false;  // shared-memory histograms (else global atomics into a zeroed row 0)
};

constexpr int kPassThreads = 1024;
constexpr int kPassWords = 4;  // 16-byte loads in flight per thread and tile
constexpr int kLevel1Smem = q::kLevel1Bins * sizeof(uint32_t);  // 128 KiB
// Slot of each level-1 bin (64 KiB), then the counts and position sums (64 KiB each).
constexpr int kLevel2Smem = q::kLevel1Bins * sizeof(uint16_t) + 2 * kLevel2Cells * sizeof(uint32_t);
// Pass 2 sums 11-bit positions in 32-bit shared counters: a CTA reads at most 2^21 values,
// so that a sum (at most 2^21 * 2047) cannot overflow.
constexpr int64_t kLevel2MaxValuesPerCta = int64_t(1) << 21;
// Pass 1 stores a cluster's counts as 32-bit numbers: a CTA reads at most 2^28 values, so
// that the sum over a cluster of 8 cannot overflow.
constexpr int64_t kLevel1MaxValuesPerCta = int64_t(1) << 28;
// Without shared-memory histograms pass 1 counts into rows of 32-bit global counters, one row
// per 2^30 values.
constexpr int64_t kGlobalRowValues = int64_t(1) << 30;
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

// Programmatic dependent launch (sm_90; no-ops before, and when a kernel was launched
// without the attribute). launch_dependents lets the next kernel of the stream be scheduled
// now; wait_for_previous blocks until the kernel before has finished and its writes are
// visible. A kernel reads nothing its predecessor writes before wait_for_previous.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait_for_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

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

// Every value is one shared-memory atomic; there is no grouping of equal values. (A warp's
// atomics on one address run one after another, so data dominated by a few values count
// slower: docs/quantiles.md has the measured cost. Grouping equal values with warp votes cost
// more on spread-out data than it saved on ties.)
//
// kShared: count in shared memory and store the cluster's sums in its row (GPUs that give a
// CTA 192 KiB of shared memory: sm_90). Otherwise every value is a global atomic into row
// blockIdx % groups (zeroed by the launcher): correct everywhere, but slower. Either way the
// sums of chunks of 32 bins are counted too, so that the locate kernel reads 1024 chunk
// sums per row instead of 32768 bins.
template <typename T, bool kShared>
__global__ void __launch_bounds__(kPassThreads) quantile_level1_kernel(const T* __restrict__ A, int64_t n,
                                                                       QuantileWorkspace ws, int64_t groups) {
  extern __shared__ uint32_t hist[];
  pdl_launch_dependents();  // the locate kernel may take its place now; it waits for this one
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
    const int64_t group = blockIdx.x / size;
    uint32_t* hist_row = ws.hist1 + group * q::kLevel1Bins;
    uint32_t* chunk_row = ws.chunk1 + group * kLevel1Chunks;
    for (int i = int(rank) * kPassThreads + threadIdx.x; i < q::kLevel1Bins; i += int(size) * kPassThreads) {
      uint32_t total = 0;
      for (unsigned r = 0; r < size; ++r) total += Cluster::at(hist, r)[i];
      hist_row[i] = total;
      const uint32_t chunk = warp_sum(total);
      if (threadIdx.x % 32 == 0) chunk_row[i / kLevel1Chunk] = chunk;
    }
    Cluster::sync();  // no CTA leaves while another still reads its shared memory
  } else {
    for (int i = threadIdx.x; i < kLevel1Chunks; i += kPassThreads) hist[i] = 0;
    __syncthreads();
    const int64_t group = blockIdx.x % groups;
    uint32_t* hist_row = ws.hist1 + group * q::kLevel1Bins;
    for_each_value<T, false, false>(A, n, [&](float x) {
      const uint32_t bin = q::order_key(x) >> q::kLevel1Shift;
      atomicAdd(&hist_row[bin], 1u);
      atomicAdd(&hist[bin / kLevel1Chunk], 1u);
    });
    __syncthreads();
    for (int i = threadIdx.x; i < kLevel1Chunks; i += kPassThreads)
      if (hist[i]) atomicAdd(&ws.chunk1[group * kLevel1Chunks + i], hist[i]);
  }
}

// A value that counts costs two shared-memory atomics (count and position sum). (Storing the
// position of one value per cell instead of summing them measured within 2% of this, either
// way, and makes the estimate an arbitrary value of the final bin: up to twice the rank error,
// and not the same from run to run.)
template <typename T, bool kShared>
__global__ void __launch_bounds__(kPassThreads) quantile_level2_kernel(const T* __restrict__ A, int64_t n,
                                                                       QuantileWorkspace ws, int num_quantiles) {
  extern __shared__ uint32_t smem[];
  uint16_t* slot_of_bin = reinterpret_cast<uint16_t*>(smem);
  uint32_t* hist = smem + q::kLevel1Bins / 2;
  uint32_t* sums = hist + kLevel2Cells;
  const int cells = num_quantiles * q::kLevel2Bins;
  pdl_launch_dependents();  // the finish kernel may take its place now; it waits for this one
  // Set-up that needs nothing from the locate kernel, done while it may still run.
  for (int i = threadIdx.x; i < q::kLevel1Bins / 2; i += kPassThreads) smem[i] = 0xffffffffu;  // kNoSlot pairs
  if constexpr (kShared) {
    for (int i = threadIdx.x; i < cells; i += kPassThreads) hist[i] = sums[i] = 0;
  }
  pdl_wait_for_previous();
  __syncthreads();
  // Slot j opens where quantile j's bin differs from quantile j-1's (the bins rise with j).
  const QuantileHeader* header = ws.header;
  for (int j = threadIdx.x; j < num_quantiles; j += kPassThreads) {
    const uint32_t bin = header->bin_of[j];
    if (j == 0 || bin != header->bin_of[j - 1]) slot_of_bin[bin] = uint16_t(j);
  }
  __syncthreads();
  if (blockIdx.x == 0) {
    for (int j = threadIdx.x; j < num_quantiles; j += kPassThreads)
      ws.header->quantile_slot[j] = slot_of_bin[header->bin_of[j]];
  }
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
        atomicAdd(&ws.count2[at], 1ull);
        atomicAdd(&ws.sum2[at], static_cast<unsigned long long>(key & q::kPositionMask));
      }
    }
  });
  if constexpr (kShared) {
    Cluster::sync();
    const unsigned size = Cluster::size(), rank = Cluster::rank();
    const int64_t group = blockIdx.x / size;
    unsigned long long* count_row = ws.count2 + group * kLevel2Cells;
    unsigned long long* sum_row = ws.sum2 + group * kLevel2Cells;
    for (int i = int(rank) * kPassThreads + threadIdx.x; i < cells; i += int(size) * kPassThreads) {
      unsigned long long count = 0, position_sum = 0;
      for (unsigned r = 0; r < size; ++r) {
        count += Cluster::at(hist, r)[i];
        position_sum += Cluster::at(sums, r)[i];
      }
      count_row[i] = count;
      sum_row[i] = position_sum;
    }
    Cluster::sync();  // no CTA leaves while another still reads its shared memory
  }
}

// A launch in clusters of `cluster` CTAs (none when 1) and, with `pdl`, allowed to start
// before the previous kernel of the stream has finished.
template <typename... Params, typename... Args>
cudaError_t launch_quantile_kernel(void (*kernel)(Params...), int64_t grid, int threads, int smem, int cluster,
                                   bool pdl, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attrs[2] = {};
  unsigned num = 0;
  if (cluster > 1) {
    attrs[num].id = cudaLaunchAttributeClusterDimension;
    attrs[num].val.clusterDim.x = unsigned(cluster);
    attrs[num].val.clusterDim.y = attrs[num].val.clusterDim.z = 1;
    ++num;
  }
  if (pdl) {
    attrs[num].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[num].val.programmaticStreamSerializationAllowed = 1;
    ++num;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(grid));
  config.blockDim = dim3(unsigned(threads));
  config.dynamicSmemBytes = size_t(smem);
  config.stream = stream;
  config.attrs = attrs;
  config.numAttrs = num;
  return cudaLaunchKernelEx(&config, kernel, Params(args)...);
}

// The grid of a pass: a persistent grid, in clusters of kClusterSize CTAs where the GPU has
// clusters and the input fills at least two, grown where a CTA would read more values than
// its counters hold.
template <typename T>
cudaError_t quantile_pass_grid(int level, int64_t n, QuantilePassGrid* out) {
  const DeviceCaps& caps = device_caps();
  if (caps.device < 0) return cudaErrorInvalidDevice;
  // Whether one CTA may have the shared memory of the shared-memory passes.
  const bool shared = caps.smem_optin >= std::max(kLevel1Smem, kLevel2Smem);
  const void* kernel = nullptr;
  int smem = 0;
  cudaError_t err = cudaSuccess;
  if (level == 1) {
    if (shared) {
      smem = kLevel1Smem;
      kernel = (const void*)quantile_level1_kernel<T, true>;
      err = allow_dynamic_smem(kernel, smem);
    } else {
      smem = kLevel1Chunks * sizeof(uint32_t);
      kernel = (const void*)quantile_level1_kernel<T, false>;
    }
  } else if (shared) {
    smem = kLevel2Smem;
    kernel = (const void*)quantile_level2_kernel<T, true>;
    err = allow_dynamic_smem(kernel, smem);
  } else {
    smem = q::kLevel1Bins * sizeof(uint16_t);
    kernel = (const void*)quantile_level2_kernel<T, false>;
    err = allow_dynamic_smem(kernel, smem);
  }
  if (err != cudaSuccess) return err;
  constexpr int64_t kTile = int64_t(kPassThreads) * kPassWords * (16 / sizeof(T));
  const int64_t tiles = (n + kTile - 1) / kTile;
  const int64_t max_tiles_per_cta = (level == 1 ? kLevel1MaxValuesPerCta : kLevel2MaxValuesPerCta) / kTile;
  const int clusters = shared && caps.clusters() && tiles >= 2 * kClusterSize
                           ? max_active_clusters(kernel, kPassThreads, kClusterSize, smem)
                           : 0;
  const int cluster = clusters > 0 ? kClusterSize : 1;
  int64_t grid = clusters > 0 ? int64_t(clusters) * kClusterSize
                              : std::min<int64_t>(tiles, persistent_grid(kernel, kPassThreads, smem));
  if (shared) grid = std::max<int64_t>(grid, (tiles + max_tiles_per_cta - 1) / max_tiles_per_cta);
  grid = std::max<int64_t>(grid, 1);
  grid = (grid + cluster - 1) / cluster * cluster;
  out->grid = grid;
  out->cluster = cluster;
  out->shared = shared;
  // Rows: one per cluster with shared histograms; else pass 1 one per 2^30 values, pass 2 one.
  out->groups = shared ? grid / cluster : level == 1 ? (n + kGlobalRowValues - 1) / kGlobalRowValues : 1;
  return cudaSuccess;
}

template <typename T>
cudaError_t launch_quantile_pass(int level, const QuantilePassGrid& g, bool pdl, const T* A, int64_t n,
                                 const QuantileWorkspace& ws, int num_quantiles, cudaStream_t stream) {
  if (level == 1) {
    if (g.shared)
      return launch_quantile_kernel(quantile_level1_kernel<T, true>, g.grid, kPassThreads, kLevel1Smem, g.cluster,
                                    pdl, stream, A, n, ws, g.groups);
    return launch_quantile_kernel(quantile_level1_kernel<T, false>, g.grid, kPassThreads,
                                  int(kLevel1Chunks * sizeof(uint32_t)), 1, pdl, stream, A, n, ws, g.groups);
  }
  if (g.shared)
    return launch_quantile_kernel(quantile_level2_kernel<T, true>, g.grid, kPassThreads, kLevel2Smem, g.cluster, pdl,
                                  stream, A, n, ws, num_quantiles);
  constexpr int kLookupSmem = q::kLevel1Bins * sizeof(uint16_t);
  return launch_quantile_kernel(quantile_level2_kernel<T, false>, g.grid, kPassThreads, kLookupSmem, 1, pdl, stream,
                                A, n, ws, num_quantiles);
}

#define BNB_INSTANTIATE_QUANTILE_PASS(T)                                                         \
  template cudaError_t quantile_pass_grid<T>(int, int64_t, QuantilePassGrid*);                   \
  template cudaError_t launch_quantile_pass<T>(int, const QuantilePassGrid&, bool, const T*, int64_t, \
                                               const QuantileWorkspace&, int, cudaStream_t);

}  // namespace bnb::cuda
