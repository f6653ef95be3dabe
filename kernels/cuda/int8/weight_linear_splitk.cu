// The split-K kernel of int8_weight_linear: 16-bit activations on tensor cores where the
// cluster kernel does not apply (more than 32 rows of A, K past its shared-memory limit,
// devices before sm_90).
//
// Layout. A warp owns 8 weight rows; lane (g = lane / 4, t = lane % 4) streams row g, 16
// bytes at k = 64 j + 16 t of each 512-wide slice (j = 0..7). The reduction order inside an
// mma is free, so step s of block j feeds the mma's k positions {2t, 2t+1, 2t+8, 2t+9} with
// the lane's own bytes 4s..4s+3: every weight byte is used where it was loaded, with no
// shuffle. A uses the same mapping, read from a shared-memory copy of the slice (16 rows,
// padded by 8 bytes per row so that the 8-byte reads of a half-warp hit 32 distinct banks).
//
// Why split K: a block that walks all of K (256 blocks of 4 warps for N = 8192, 8 warps per
// SM, and per 512 columns a barrier and an A staging loop whose L2 round trips the weight
// stream waits behind) reached 19% of DRAM bandwidth under ncu, 12% achieved occupancy.
// Here a block takes 32 weight rows over one kSplitK-wide slice of K: it requests all of its
// weight bytes (kSplitK / 4 per lane) first, stages its slice of A (16 rows) with one round
// of loads, passes one barrier and runs the mmas. Grid (N / 32) x (K / kSplitK) x row tiles:
// 4096 blocks for 8192 x 8192, five per SM (registers), so plenty of bytes are in flight
// (ncu: 49% of DRAM bandwidth under ncu's clocks, 30% achieved occupancy; 54% of the copy
// bandwidth timed). Partial sums (float32, unscaled) go to partial[split][M][N];
// weight_linear_finish_kernel adds them in split order (deterministic), scales, adds the
// bias and rounds.
#include <algorithm>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "quantize_math.cuh"
#include "weight_linear.cuh"
#include "weight_linear_mma.cuh"

namespace bnb::cuda {

namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int kMmaRowsPerBlock = kMmaWarps * 8;
constexpr int kMmaRows = 16;  // rows of A per mma
constexpr int kSplitK = 512;  // measured faster than 1024 on the H100 (more blocks per SM)

template <typename T>
__global__ void __launch_bounds__(kMmaThreads)
weight_linear_splitk_kernel(const T* __restrict__ A, const int8_t* __restrict__ CB, int64_t M, int64_t N, int64_t K,
                            float* __restrict__ partial, bool weights_aligned, bool a_aligned) {
  constexpr int kSplitJ = kSplitK / 64;      // 16-byte weight loads per lane per slice
  constexpr int kSplitStride = kSplitK + 4;  // halves per staged row (+8 bytes: bank spread)
  __shared__ __align__(16) T a_s[kMmaRows * kSplitStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t n_row = int64_t(blockIdx.x) * kMmaRowsPerBlock + warp * 8 + g;
  const int64_t k_begin = int64_t(blockIdx.y) * kSplitK;
  const int64_t m0 = int64_t(blockIdx.z) * kMmaRows;
  uint4 w[kSplitJ];
#pragma unroll
  for (int j = 0; j < kSplitJ; ++j) w[j] = load_weight16(CB, n_row, N, K, k_begin + 64 * j + 16 * t, weights_aligned);

  // A[m0 .. m0 + 16, k_begin .. k_begin + kSplitK): 16 rows x 128 groups of 8 values; each
  // thread loads its 16 groups before storing any (one round trip).
  constexpr int kGroups = kMmaRows * (kSplitK / 8) / kMmaThreads;
  uint4 a[kGroups];
#pragma unroll
  for (int i = 0; i < kGroups; ++i) {
    const int p = i * kMmaThreads + threadIdx.x;
    const int r = p / (kSplitK / 8), c = (p % (kSplitK / 8)) * 8;
    const int64_t m = m0 + r, k = k_begin + c;
    if (m < M && a_aligned && k + 8 <= K) {
      a[i] = __ldg(reinterpret_cast<const uint4*>(A + m * K + k));
    } else {
      uint16_t e[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        e[q] = 0;
        if (m < M && k + q < K) memcpy(&e[q], A + m * K + k + q, 2);
      }
      memcpy(&a[i], e, 16);
    }
  }
#pragma unroll
  for (int i = 0; i < kGroups; ++i) {
    const int p = i * kMmaThreads + threadIdx.x;
    const int r = p / (kSplitK / 8), c = (p % (kSplitK / 8)) * 8;
    uint2* dst = reinterpret_cast<uint2*>(a_s + r * kSplitStride + c);  // 8-byte aligned rows
    dst[0] = make_uint2(a[i].x, a[i].y);
    dst[1] = make_uint2(a[i].z, a[i].w);
  }
  __syncthreads();

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int j = 0; j < kSplitJ; ++j) mma_weight_bytes(acc, w[j], a_s, kSplitStride, g, 64 * j + 16 * t);
  const int64_t n_base = int64_t(blockIdx.x) * kMmaRowsPerBlock + warp * 8 + 2 * t;
  float* part = partial + int64_t(blockIdx.y) * M * N;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + g + (i >= 2 ? 8 : 0);
    const int64_t n = n_base + (i & 1);
    if (m < M && n < N) part[m * N + n] = acc[i];
  }
}

template <typename T>
__global__ void weight_linear_finish_kernel(const float* __restrict__ partial, int64_t splits,
                                            const float* __restrict__ SCB, const T* __restrict__ bias, int64_t M,
                                            int64_t N, T* __restrict__ out) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i % N;
    float acc = 0.f;
    for (int64_t s = 0; s < splits; ++s) acc += partial[s * total + i];
    float v = __fmul_rn(acc, __fmul_rn(SCB[n], kInt8Inv127));
    if (bias) v = __fadd_rn(v, to_float(bias[n]));
    out[i] = from_float<T>(v);
  }
}

}  // namespace

int64_t weight_linear_splitk_workspace_floats(int64_t M, int64_t N, int64_t K) {
  return (K + kSplitK - 1) / kSplitK * M * N;
}

template <typename T>
cudaError_t launch_weight_linear_splitk(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M,
                                        int64_t N, int64_t K, T* out, float* workspace, cudaStream_t stream) {
  const int64_t blocks_n = (N + kMmaRowsPerBlock - 1) / kMmaRowsPerBlock;
  const int64_t m_tiles = (M + kMmaRows - 1) / kMmaRows;
  const int64_t splits = (K + kSplitK - 1) / kSplitK;
  if (blocks_n > 0x7fffffff) return cudaErrorInvalidValue;
  if (splits > 0) {  // K == 0: no partial sums, the finish kernel writes the bias (or zeros)
    if (splits > 65535 || m_tiles > 65535 || workspace == nullptr) return cudaErrorInvalidValue;
    const bool weights_aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
    const bool a16 = K % 8 == 0 && (reinterpret_cast<uintptr_t>(A) & 15u) == 0;
    const dim3 grid{unsigned(blocks_n), unsigned(splits), unsigned(m_tiles)};
    weight_linear_splitk_kernel<T><<<grid, kMmaThreads, 0, stream>>>(A, CB, M, N, K, workspace, weights_aligned, a16);
  }
  const int64_t total = M * N;
  const int fgrid = int(std::min<int64_t>((total + 255) / 256, 65535));
  weight_linear_finish_kernel<T><<<fgrid, 256, 0, stream>>>(workspace, splits, SCB, bias, M, N, out);
  return cudaGetLastError();
}

template cudaError_t launch_weight_linear_splitk<__half>(const __half*, const int8_t*, const float*, const __half*,
                                                         int64_t, int64_t, int64_t, __half*, float*, cudaStream_t);
template cudaError_t launch_weight_linear_splitk<__nv_bfloat16>(const __nv_bfloat16*, const int8_t*, const float*,
                                                                const __nv_bfloat16*, int64_t, int64_t, int64_t,
                                                                __nv_bfloat16*, float*, cudaStream_t);

}  // namespace bnb::cuda
