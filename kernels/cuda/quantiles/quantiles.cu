// Quantile estimation on the GPU: the locate and finish steps between and after the two
// counting passes (quantiles.cuh), and the launcher that queues all of them. Everything
// stays on the device: the located bins are read by the next kernel from the workspace,
// never by the host.
#include "quantiles.cuh"

namespace bnb::cuda {

#define BNB_EXTERN_QUANTILE_PASS(T)                                                                 \
  extern template cudaError_t quantile_pass_grid<T>(int, int64_t, QuantilePassGrid*);                    \
  extern template cudaError_t launch_quantile_pass<T>(int, const QuantilePassGrid&, bool, const T*, int64_t, \
                                                      const QuantileWorkspace&, int, cudaStream_t);
BNB_EXTERN_QUANTILE_PASS(float)
BNB_EXTERN_QUANTILE_PASS(__half)
BNB_EXTERN_QUANTILE_PASS(__nv_bfloat16)
#undef BNB_EXTERN_QUANTILE_PASS

namespace {

constexpr int kLocateThreads = 1024;
constexpr int kLocateWarps = kLocateThreads / 32;
static_assert(kLevel1Chunks == kLocateThreads, "one chunk per locate thread");
constexpr int kFinishWarps = 16;

template <typename V> __device__ __forceinline__ V warp_inclusive_scan(V v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V up = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += up;
  }
  return v;
}

// Rows are read kRowBatch at a time, all loads of a batch in flight together: the locate and
// finish kernels are chains of memory latencies, and a load consumed before the next one is
// issued costs a latency per row.
constexpr int kRowBatch = 16;

// p[0] + p[stride] + ... over `rows` rows.
__device__ __forceinline__ unsigned long long sum_rows(const uint32_t* p, int64_t stride, int64_t rows) {
  unsigned long long total = 0;
  for (int64_t g = 0; g < rows; g += kRowBatch) {
    uint32_t v[kRowBatch];
#pragma unroll
    for (int k = 0; k < kRowBatch; ++k) v[k] = p[std::min(g + k, rows - 1) * stride];  // unconditional loads
#pragma unroll
    for (int k = 0; k < kRowBatch; ++k) total += g + k < rows ? v[k] : 0u;
  }
  return total;
}

// One warp per quantile, 32 per CTA. Every CTA adds up the rows' chunk sums (1024 per row)
// and scans them; each warp then finds its quantile's chunk by a binary search, adds up that
// chunk's 32 bins over the rows and finds the level-1 bin holding the wanted rank and the
// rank inside it. The work is spread over ceil(num_quantiles / 32) CTAs, so that its time is
// one chain of latencies, not a chain per quantile.
__global__ void __launch_bounds__(kLocateThreads)
quantile_locate_kernel(QuantileWorkspace ws, int64_t groups, int64_t n, double offset, int num_quantiles) {
  __shared__ unsigned long long chunk_incl[kLevel1Chunks];  // values in chunks 0..c
  __shared__ unsigned long long warp_total[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  pdl_launch_dependents();  // pass 2 may take the SMs pass 1 leaves; it waits for this kernel
  pdl_wait_for_previous();  // pass 1's rows

  unsigned long long x = sum_rows(ws.chunk1 + threadIdx.x, kLevel1Chunks, groups);
  x = warp_inclusive_scan(x, lane);
  if (lane == 31) warp_total[warp] = x;
  __syncthreads();
  if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
  __syncthreads();
  if (warp > 0) x += warp_total[warp - 1];
  chunk_incl[threadIdx.x] = x;
  __syncthreads();

  const int j = blockIdx.x * kLocateWarps + warp;
  if (j >= num_quantiles) return;  // whole warps leave together
  const unsigned long long t = static_cast<unsigned long long>(q::quantile_target(n, offset, num_quantiles, j));
  // chunk = the number of chunks whose inclusive count is <= t: the first one that exceeds t
  // (at most kLevel1Chunks - 1).
  int chunk = 0;
#pragma unroll
  for (int step = kLevel1Chunks / 2; step >= 1; step /= 2)
    if (chunk_incl[chunk + step - 1] <= t) chunk += step;
  const unsigned long long h = sum_rows(ws.hist1 + chunk * kLevel1Chunk + lane, q::kLevel1Bins, groups);
  const unsigned long long base = chunk > 0 ? chunk_incl[chunk - 1] : 0ull;
  const unsigned long long in = base + warp_inclusive_scan(h, lane);
  const bool here = in - h <= t && t < in;
  const unsigned found = __ballot_sync(0xffffffffu, here);
  // `found` is empty only if the counts do not add up to n (A changed under us); then the
  // chunk's first bin stands in.
  const int owner = found ? __ffs(found) - 1 : 0;
  if (lane == owner) {
    ws.header->bin_of[j] = uint32_t(chunk * kLevel1Chunk + lane);
    ws.header->rank_in_bin[j] = found ? t - (in - h) : 0ull;
  }
}

// One CTA per quantile: warp w adds up the slot's level-2 counts of rows w, w + kFinishWarps,
// ... (all rows' loads in flight at once: one memory latency where there are at most
// kFinishWarps rows), then warp 0 adds the warps' sums, finds the sub-bin (final bin) holding
// the rank and writes the mean value of that bin.
__global__ void __launch_bounds__(kFinishWarps * 32)
quantile_finish_kernel(QuantileWorkspace ws, int64_t groups, int num_quantiles, float* out) {
  constexpr int kPerLane = q::kLevel2Bins / 32;
  static_assert(kPerLane == 2, "two sub-bins per lane");
  __shared__ ulonglong2 warp_counts[kFinishWarps][32], warp_sums[kFinishWarps][32];
  pdl_wait_for_previous();  // pass 2's rows
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int j = blockIdx.x;
  const QuantileHeader* header = ws.header;
  const uint32_t slot = header->quantile_slot[j];
  const unsigned long long r = header->rank_in_bin[j];
  const uint32_t level1 = header->bin_of[j];
  const size_t first = size_t(slot) * q::kLevel2Bins + lane * kPerLane;
  unsigned long long c0 = 0, c1 = 0, s0 = 0, s1 = 0;
  for (int64_t g = warp; g < groups; g += kFinishWarps) {
    const ulonglong2 c = *reinterpret_cast<const ulonglong2*>(ws.count2 + g * kLevel2Cells + first);
    const ulonglong2 s = *reinterpret_cast<const ulonglong2*>(ws.sum2 + g * kLevel2Cells + first);
    c0 += c.x;
    c1 += c.y;
    s0 += s.x;
    s1 += s.y;
  }
  warp_counts[warp][lane] = make_ulonglong2(c0, c1);
  warp_sums[warp][lane] = make_ulonglong2(s0, s1);
  __syncthreads();
  if (warp != 0) return;
  c0 = c1 = s0 = s1 = 0;
#pragma unroll
  for (int w = 0; w < kFinishWarps; ++w) {
    const ulonglong2 c = warp_counts[w][lane], s = warp_sums[w][lane];
    c0 += c.x;
    c1 += c.y;
    s0 += s.x;
    s1 += s.y;
  }
  const unsigned long long incl = warp_inclusive_scan(c0 + c1, lane);
  const unsigned long long below = incl - c0 - c1;
  const bool here = below <= r && r < incl;
  const unsigned found = __ballot_sync(0xffffffffu, here);
  if (here) {
    const int k = r < below + c0 ? 0 : 1;
    const uint32_t final_bin = (level1 << q::kLevel2Bits) | uint32_t(lane * kPerLane + k);
    out[j] = q::final_estimate(final_bin, k ? c1 : c0, k ? s1 : s0);
  } else if (!found && lane == 0) {  // counts changed between the passes: the level-1 bin's start
    out[j] = q::final_estimate(level1 << q::kLevel2Bits, 0, 0);
  }
}

// Where the parts of one call's workspace lie (bytes from its start), from the passes' grids.
struct QuantilePlan {
  QuantilePassGrid pass1, pass2;
  size_t chunk1 = 0, hist1 = 0, count2 = 0, sum2 = 0, bytes = 0;
};

template <typename T>
cudaError_t quantile_plan(int64_t n, QuantilePlan* plan) {
  cudaError_t err = quantile_pass_grid<T>(1, n, &plan->pass1);
  if (err != cudaSuccess) return err;
  if ((err = quantile_pass_grid<T>(2, n, &plan->pass2)) != cudaSuccess) return err;
  const auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  size_t at = align(sizeof(QuantileHeader));
  plan->chunk1 = at;
  at = align(at + size_t(plan->pass1.groups) * kLevel1Chunks * sizeof(uint32_t));
  plan->hist1 = at;
  at = align(at + size_t(plan->pass1.groups) * q::kLevel1Bins * sizeof(uint32_t));
  plan->count2 = at;
  at = align(at + size_t(plan->pass2.groups) * kLevel2Cells * sizeof(unsigned long long));
  plan->sum2 = at;
  plan->bytes = align(at + size_t(plan->pass2.groups) * kLevel2Cells * sizeof(unsigned long long));
  return cudaSuccess;
}

cudaError_t quantile_plan(DType dtype, int64_t n, QuantilePlan* plan) {
  switch (dtype) {
    case DType::Float32: return quantile_plan<float>(n, plan);
    case DType::Float16: return quantile_plan<__half>(n, plan);
    case DType::BFloat16: return quantile_plan<__nv_bfloat16>(n, plan);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_estimate_quantiles(const T* A, int64_t n, double offset, int num_quantiles, float* out,
                                      void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  QuantilePlan plan;
  cudaError_t err = quantile_plan<T>(n, &plan);
  if (err != cudaSuccess) return err;
  if (workspace_bytes < plan.bytes) return cudaErrorInvalidValue;
  char* base = static_cast<char*>(workspace);
  const QuantileWorkspace ws{reinterpret_cast<QuantileHeader*>(base), reinterpret_cast<uint32_t*>(base + plan.chunk1),
                             reinterpret_cast<uint32_t*>(base + plan.hist1),
                             reinterpret_cast<unsigned long long*>(base + plan.count2),
                             reinterpret_cast<unsigned long long*>(base + plan.sum2)};
  // Without shared-memory histograms the passes add into rows of global counters.
  if (!plan.pass1.shared && (err = cudaMemsetAsync(base + plan.chunk1, 0, plan.bytes - plan.chunk1, stream)) != cudaSuccess)
    return err;
  // Dependent launches where the GPU has them (sm_90). Pass 1 is not one: it must not start
  // before the work queued ahead of this call has written A.
  const bool pdl = device_caps().major >= 9;
  if ((err = launch_quantile_pass<T>(1, plan.pass1, false, A, n, ws, num_quantiles, stream)) != cudaSuccess) return err;
  const int locate_blocks = (num_quantiles + kLocateWarps - 1) / kLocateWarps;
  if ((err = launch_quantile_kernel(quantile_locate_kernel, locate_blocks, kLocateThreads, 0, 1, pdl, stream, ws,
                                    plan.pass1.groups, n, offset, num_quantiles)) != cudaSuccess)
    return err;
  if ((err = launch_quantile_pass<T>(2, plan.pass2, pdl, A, n, ws, num_quantiles, stream)) != cudaSuccess) return err;
  // One CTA per quantile.
  return launch_quantile_kernel(quantile_finish_kernel, num_quantiles, kFinishWarps * 32, 0, 1, pdl, stream, ws,
                                plan.pass2.groups, num_quantiles, out);
}

}  // namespace

size_t estimate_quantiles_workspace_bytes(DType dtype, int64_t n) {
  QuantilePlan plan;
  return quantile_plan(dtype, n, &plan) == cudaSuccess ? plan.bytes : 0;
}

cudaError_t estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles, float* out,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (n <= 0 || num_quantiles <= 0 || num_quantiles > q::kMaxQuantiles) return cudaErrorInvalidValue;
  switch (dtype) {
    case DType::Float32:
      return launch_estimate_quantiles(static_cast<const float*>(A), n, offset, num_quantiles, out, workspace,
                                       workspace_bytes, stream);
    case DType::Float16:
      return launch_estimate_quantiles(static_cast<const __half*>(A), n, offset, num_quantiles, out, workspace,
                                       workspace_bytes, stream);
    case DType::BFloat16:
      return launch_estimate_quantiles(static_cast<const __nv_bfloat16*>(A), n, offset, num_quantiles, out,
                                       workspace, workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
