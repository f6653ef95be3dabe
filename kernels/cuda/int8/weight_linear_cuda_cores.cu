// out[M, N] = A[M, K] x (CB[N, K] * SCB / 127)^T + bias for few rows of A (decoding), on CUDA
// cores: what float32 activations run (16-bit ones take the tensor-core kernels).
//
// Why this shape of kernel: with a handful of rows, the product is bound by reading the
// int8 weight, so each weight byte is loaded once (16 per lane, coalesced) and used for up
// to 16 rows of A. A is small and reused by every weight row: a block stages a 512-wide
// chunk of up to 16 rows of it in shared memory, permuted so that the float4 each lane
// reads back sits in its own banks (conflict-free), and its warps stream two weight rows
// each against it. The next chunk's weights are loaded before the current chunk is used,
// so the loads stay in flight across the barrier.
#include <algorithm>

#include "../common/reduce.cuh"
#include "quantize_math.cuh"
#include "weight_linear.cuh"

namespace bnb::cuda {

namespace {

constexpr int kThreadsGemv = 256;
constexpr int kWarps = kThreadsGemv / 32;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr int kChunk = 512;  // 32 lanes x 16 weights

// Chunk-local column k = 16 * lane + 4 * q + i sits in shared-memory slot q * 128 + lane * 4 + i:
// lane reads its 16 values as four float4 at q * 128 + lane * 4, so consecutive lanes read
// consecutive 16-byte words. This is the inverse: which column sits in slot p.
__device__ __forceinline__ int column_of(int p) { return ((p % 128) / 4) * 16 + (p / 128) * 4 + (p % 4); }

__device__ __forceinline__ void load_weights(const int8_t* __restrict__ CB, int64_t n, int64_t N, int64_t K,
                                             int64_t k, bool aligned, int8_t (&w)[16]) {
  if (n < N && aligned && k + 16 <= K) {
    const int4 raw = __ldcs(reinterpret_cast<const int4*>(CB + n * K + k));  // streamed: read once
    memcpy(w, &raw, 16);
  } else {
#pragma unroll
    for (int j = 0; j < 16; ++j) w[j] = (n < N && k + j < K) ? CB[n * K + k + j] : int8_t(0);
  }
}

template <typename T, int MT>
__global__ void __launch_bounds__(kThreadsGemv)
weight_linear_kernel(const T* __restrict__ A, const int8_t* __restrict__ CB, const float* __restrict__ SCB,
                     const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, T* __restrict__ out,
                     bool aligned) {
  __shared__ __align__(16) float a_s[MT * kChunk];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n0 = int64_t(blockIdx.x) * kRowsPerBlock + warp * kRowsPerWarp;
  const int64_t m_tiles = (M + MT - 1) / MT;
  for (int64_t mt = blockIdx.y; mt < m_tiles; mt += gridDim.y) {
    const int64_t m0 = mt * MT;
    float acc[kRowsPerWarp][MT];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int m = 0; m < MT; ++m) acc[r][m] = 0.f;
    int8_t w[kRowsPerWarp][16];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) load_weights(CB, n0 + r, N, K, int64_t(lane) * 16, aligned, w[r]);
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
      __syncthreads();  // the previous chunk is no longer read
      for (int p = threadIdx.x; p < MT * kChunk; p += kThreadsGemv) {
        const int m = p / kChunk;
        const int64_t gm = m0 + m, gk = k0 + column_of(p % kChunk);
        a_s[p] = (gm < M && gk < K) ? to_float(A[gm * K + gk]) : 0.f;
      }
      __syncthreads();
      int8_t next[kRowsPerWarp][16];
      const int64_t k_next = k0 + kChunk + int64_t(lane) * 16;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) load_weights(CB, n0 + r, N, K, k_next, aligned, next[r]);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          const float4 a = *reinterpret_cast<const float4*>(a_s + m * kChunk + q * 128 + lane * 4);
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) {
            float s = acc[r][m];
            s = fmaf(a.x, float(w[r][q * 4 + 0]), s);
            s = fmaf(a.y, float(w[r][q * 4 + 1]), s);
            s = fmaf(a.z, float(w[r][q * 4 + 2]), s);
            s = fmaf(a.w, float(w[r][q * 4 + 3]), s);
            acc[r][m] = s;
          }
        }
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int j = 0; j < 16; ++j) w[r][j] = next[r][j];
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t n = n0 + r;
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        acc[r][m] = warp_sum(acc[r][m]);
      }
      if (n >= N) continue;
      const float scale = __fmul_rn(SCB[n], kInt8Inv127);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (lane == m && m0 + m < M) {
          float v = __fmul_rn(acc[r][m], scale);
          if (bias) v = __fadd_rn(v, to_float(bias[n]));
          out[(m0 + m) * N + n] = from_float<T>(v);
        }
      }
    }
  }
}

template <typename T, int MT>
cudaError_t launch_mt(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N, int64_t K,
                      T* out, cudaStream_t stream) {
  const bool aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
  const int64_t blocks_n = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t m_tiles = (M + MT - 1) / MT;
  if (blocks_n > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(blocks_n), unsigned(std::min<int64_t>(m_tiles, 65535)));
  weight_linear_kernel<T, MT><<<grid, kThreadsGemv, 0, stream>>>(A, CB, SCB, bias, M, N, K, out, aligned);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_weight_linear_cuda_cores(const float* A, const int8_t* CB, const float* SCB, const float* bias,
                                            int64_t M, int64_t N, int64_t K, float* out, cudaStream_t stream) {
  // The fewest rows of A per pass that cover M: registers and shared memory scale with it.
  if (M <= 1) return launch_mt<float, 1>(A, CB, SCB, bias, M, N, K, out, stream);
  if (M <= 2) return launch_mt<float, 2>(A, CB, SCB, bias, M, N, K, out, stream);
  if (M <= 4) return launch_mt<float, 4>(A, CB, SCB, bias, M, N, K, out, stream);
  if (M <= 8) return launch_mt<float, 8>(A, CB, SCB, bias, M, N, K, out, stream);
  return launch_mt<float, 16>(A, CB, SCB, bias, M, N, K, out, stream);
}

}  // namespace bnb::cuda
