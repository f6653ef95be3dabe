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
static_assert(kLevel1Chunks == kLocateThreads, "one chunk per locate thread");
constexpr int kFinishWarps = 8;

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
  __shared__ unsigned long long chunk_incl[kLevel1Chunks];  // values in chunks 0..c
  __shared__ unsigned long long warp_total[32];
  __shared__ uint32_t bin_of[q::kMaxQuantiles];
  __shared__ uint32_t slots_in_warp[q::kMaxQuantiles / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  // Inclusive scan over the 1024 chunk sums (pass 1 counted them), one per thread.
  unsigned long long x = warp_inclusive_scan(ws->chunk1[threadIdx.x], lane);
  if (lane == 31) warp_total[warp] = x;
  __syncthreads();
  if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
  __syncthreads();
  if (warp > 0) x += warp_total[warp - 1];
  chunk_incl[threadIdx.x] = x;
  __syncthreads();

  // Warp w takes quantiles w, w + 32, ..., kBatch at a time: a binary search over the chunk
  // counts for each (shared memory), one load of each quantile's chunk and a warp scan
  // inside it. The steps of the kBatch quantiles are interleaved, so that their latencies
  // overlap: this kernel runs alone on the GPU, and its time is its chain of latencies.
  constexpr int kPerWarp = q::kMaxQuantiles / 32;
  constexpr int kBatch = 4;
#pragma unroll 1
  for (int b = 0; b < kPerWarp; b += kBatch) {
    if (warp + 32 * b >= num_quantiles) break;  // the same for the whole warp
    unsigned long long t[kBatch], incl[kBatch];
    int chunk[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int j = warp + 32 * (b + i);
      t[i] = j < num_quantiles ? static_cast<unsigned long long>(q::quantile_target(n, offset, num_quantiles, j)) : 0ull;
      chunk[i] = 0;
    }
    // chunk = the number of chunks whose inclusive count is <= t: the first one that
    // exceeds t (at most kLevel1Chunks - 1).
#pragma unroll
    for (int step = kLevel1Chunks / 2; step >= 1; step /= 2) {
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
        if (chunk_incl[chunk[i] + step - 1] <= t[i]) chunk[i] += step;
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) incl[i] = ws->hist1[chunk[i] * kLevel1Chunk + lane];
    const unsigned long long h0 = incl[0], h1 = incl[1], h2 = incl[2], h3 = incl[3];
    static_assert(kBatch == 4, "h0..h3");
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const unsigned long long up = __shfl_up_sync(0xffffffffu, incl[i], o);
        if (lane >= o) incl[i] += up;
      }
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int j = warp + 32 * (b + i);
      if (j >= num_quantiles) break;  // the same for the whole warp
      const unsigned long long h = i == 0 ? h0 : i == 1 ? h1 : i == 2 ? h2 : h3;
      const unsigned long long base = chunk[i] > 0 ? chunk_incl[chunk[i] - 1] : 0ull;
      const unsigned long long in = base + incl[i];
      const bool here = in - h <= t[i] && t[i] < in;
      const unsigned found = __ballot_sync(0xffffffffu, here);
      // `found` is empty only if the counts do not add up to n (A changed under us); then
      // the chunk's first bin stands in.
      const int owner = found ? __ffs(found) - 1 : 0;
      if (lane == owner) {
        bin_of[j] = uint32_t(chunk[i] * kLevel1Chunk + lane);
        ws->rank_in_bin[j] = found ? t[i] - (in - h) : 0ull;
      }
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
