// Quantile estimation on the GPU: the locate and finish steps between and after the two
// counting passes (quantiles.cuh), and the launcher that queues all of them. Everything
// stays on the device: the located bins and the count of slots are read by the next
// kernel from the workspace, never by the host.
#include "quantiles.cuh"

namespace bnb::cuda {

extern template cudaError_t launch_quantile_pass<float>(int, const float*, int64_t, QuantileWorkspace*,
                                                        cudaStream_t);
extern template cudaError_t launch_quantile_pass<__half>(int, const __half*, int64_t, QuantileWorkspace*,
                                                         cudaStream_t);
extern template cudaError_t launch_quantile_pass<__nv_bfloat16>(int, const __nv_bfloat16*, int64_t,
                                                                QuantileWorkspace*, cudaStream_t);

namespace {

constexpr int kLocateThreads = 1024;
constexpr int kChunk = 32;                              // level-1 bins per warp load
constexpr int kChunks = q::kLevel1Bins / kChunk;        // 1024, one per locate thread
static_assert(kChunks == kLocateThreads, "one chunk per thread");
constexpr int kFinishWarps = 8;

template <typename V> __device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename V> __device__ __forceinline__ V warp_inclusive_scan(V v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += up;
  }
  return v;
}

// One CTA. Finds, for each quantile, the level-1 bin holding its wanted rank and the rank
// inside that bin, and numbers the distinct bins found (the slots pass 2 refines).
__global__ void __launch_bounds__(kLocateThreads)
quantile_locate_kernel(QuantileWorkspace* ws, int64_t n, double offset, int num_quantiles) {
  __shared__ unsigned long long chunk_incl[kChunks];  // values in chunks 0..c
  __shared__ unsigned long long warp_total[32];
  __shared__ uint32_t bin_of[q::kMaxQuantiles];
  __shared__ uint32_t slots_in_warp[q::kMaxQuantiles / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  // Sum of each chunk of 32 bins: warp w owns chunks w*32 .. w*32+31, read in batches of 16
  // coalesced loads kept in flight together (the counts sit in L2; latency is the cost).
  constexpr int kBatch = 16;
#pragma unroll
  for (int b = 0; b < kChunk; b += kBatch) {
    unsigned long long v[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) v[k] = ws->hist1[(warp * kChunk + b + k) * kChunk + lane];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const unsigned long long s = warp_sum(v[k]);
      if (lane == 0) chunk_incl[warp * kChunk + b + k] = s;
    }
  }
  __syncthreads();
  // Inclusive scan over the 1024 chunk sums, one per thread.
  unsigned long long x = warp_inclusive_scan(chunk_incl[threadIdx.x], lane);
  if (lane == 31) warp_total[warp] = x;
  __syncthreads();
  if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
  __syncthreads();
  if (warp > 0) x += warp_total[warp - 1];
  chunk_incl[threadIdx.x] = x;
  __syncthreads();

  // Warp w takes quantiles w, w + 32, ...: a binary search over the chunk counts for each
  // (shared memory), then one load of each quantile's chunk, all in flight together, and a
  // warp scan inside the chunk.
  constexpr int kPerWarp = q::kMaxQuantiles / 32;
  unsigned long long t[kPerWarp], h[kPerWarp];
  int chunk[kPerWarp];
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + 32 * i;
    chunk[i] = 0;
    t[i] = 0;
    if (j < num_quantiles) {
      t[i] = static_cast<unsigned long long>(q::quantile_target(n, offset, num_quantiles, j));
      int lo = 0, hi = kChunks - 1;  // smallest chunk whose inclusive count exceeds t
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (chunk_incl[mid] > t[i]) hi = mid; else lo = mid + 1;
      }
      chunk[i] = lo;
    }
  }
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) h[i] = warp + 32 * i < num_quantiles ? ws->hist1[chunk[i] * kChunk + lane] : 0ull;
#pragma unroll
  for (int i = 0; i < kPerWarp; ++i) {
    const int j = warp + 32 * i;
    if (j >= num_quantiles) break;  // the same for the whole warp
    const unsigned long long base = chunk[i] > 0 ? chunk_incl[chunk[i] - 1] : 0ull;
    const unsigned long long incl = base + warp_inclusive_scan(h[i], lane);
    const bool here = incl - h[i] <= t[i] && t[i] < incl;
    const unsigned found = __ballot_sync(0xffffffffu, here);
    // `found` is empty only if the counts do not add up to n (A changed under us); then the
    // chunk's first bin stands in.
    const int owner = found ? __ffs(found) - 1 : 0;
    if (lane == owner) {
      bin_of[j] = uint32_t(chunk[i] * kChunk + lane);
      ws->rank_in_bin[j] = found ? t[i] - (incl - h[i]) : 0ull;
    }
  }
  __syncthreads();

  // Slots: quantile j opens a new slot when its bin differs from quantile j-1's (the bins
  // rise with j). Slot numbers are a prefix count of those openings.
  const int j = threadIdx.x;
  const bool opens = j < num_quantiles && (j == 0 || bin_of[j] != bin_of[j - 1]);
  const unsigned ballot = __ballot_sync(0xffffffffu, opens);
  if (j < q::kMaxQuantiles && lane == 0) slots_in_warp[warp] = __popc(ballot);
  __syncthreads();
  if (j < num_quantiles) {
    int slot = __popc(ballot & ((2u << lane) - 1u)) - 1;  // openings at or before j in this warp, minus one
    for (int w = 0; w < warp; ++w) slot += int(slots_in_warp[w]);
    if (opens) ws->slot_bin[slot] = bin_of[j];
    ws->quantile_slot[j] = uint32_t(slot);
    if (j == num_quantiles - 1) ws->num_slots = uint32_t(slot + 1);
  }
}

// One warp per quantile: finds the sub-bin (final bin) holding the rank among the slot's
// level-2 counts and writes the mean value of that bin.
__global__ void __launch_bounds__(kFinishWarps * 32)
quantile_finish_kernel(const QuantileWorkspace* __restrict__ ws, int num_quantiles, float* out) {
  constexpr int kPerLane = q::kLevel2Bins / 32;
  static_assert(kPerLane == 2, "two sub-bins per lane");
  const int lane = threadIdx.x % 32;
  const int j = blockIdx.x * kFinishWarps + threadIdx.x / 32;
  if (j >= num_quantiles) return;  // whole warps leave together
  const uint32_t slot = ws->quantile_slot[j];
  const unsigned long long r = ws->rank_in_bin[j];
  const size_t first = size_t(slot) * q::kLevel2Bins + lane * kPerLane;
  const unsigned long long c0 = ws->hist2[first], c1 = ws->hist2[first + 1];
  const unsigned long long incl = warp_inclusive_scan(c0 + c1, lane);
  const unsigned long long below = incl - c0 - c1;
  const bool here = below <= r && r < incl;
  const unsigned found = __ballot_sync(0xffffffffu, here);
  const uint32_t level1 = ws->slot_bin[slot];
  if (here) {
    const int k = r < below + c0 ? 0 : 1;
    const uint32_t final_bin = (level1 << q::kLevel2Bits) | uint32_t(lane * kPerLane + k);
    out[j] = q::final_estimate(final_bin, k ? c1 : c0, ws->position_sum[first + k]);
  } else if (!found && lane == 0) {  // counts changed between the passes: the level-1 bin's start
    out[j] = q::final_estimate(level1 << q::kLevel2Bits, 0, 0);
  }
}

template <typename T>
cudaError_t launch_estimate_quantiles(const T* A, int64_t n, double offset, int num_quantiles, float* out,
                                      QuantileWorkspace* ws, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(ws, 0, kQuantileZeroedBytes, stream);
  if (err != cudaSuccess) return err;
  if ((err = launch_quantile_pass<T>(1, A, n, ws, stream)) != cudaSuccess) return err;
  quantile_locate_kernel<<<1, kLocateThreads, 0, stream>>>(ws, n, offset, num_quantiles);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  if ((err = launch_quantile_pass<T>(2, A, n, ws, stream)) != cudaSuccess) return err;
  const int blocks = (num_quantiles + kFinishWarps - 1) / kFinishWarps;
  quantile_finish_kernel<<<blocks, kFinishWarps * 32, 0, stream>>>(ws, num_quantiles, out);
  return cudaGetLastError();
}

}  // namespace

size_t estimate_quantiles_workspace_bytes() { return sizeof(QuantileWorkspace); }

cudaError_t estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles, float* out,
                               void* workspace, cudaStream_t stream) {
  if (n <= 0 || num_quantiles <= 0 || num_quantiles > q::kMaxQuantiles) return cudaErrorInvalidValue;
  auto* ws = static_cast<QuantileWorkspace*>(workspace);
  switch (dtype) {
    case DType::Float32:
      return launch_estimate_quantiles(static_cast<const float*>(A), n, offset, num_quantiles, out, ws, stream);
    case DType::Float16:
      return launch_estimate_quantiles(static_cast<const __half*>(A), n, offset, num_quantiles, out, ws, stream);
    case DType::BFloat16:
      return launch_estimate_quantiles(static_cast<const __nv_bfloat16*>(A), n, offset, num_quantiles, out, ws,
                                       stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
