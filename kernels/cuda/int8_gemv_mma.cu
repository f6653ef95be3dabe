// out[M, N] = A[M, K] x (CB[N, K] * SCB / 127)^T + bias on tensor cores, for few rows of A
// (decoding) in fp16 or bf16.
//
// Why tensor cores for a weight-bound product: with 16 rows of A, the float32 CUDA-core
// version needs M*N*K fused multiply-adds (1 G for 16 x 8192 x 8192), as long on an H100 as
// reading the weight itself. One mma.m16n8k16 does 2048 of them, so the kernel is left
// bound by the weight read, as it should be.
//
// Layout. A warp owns 8 weight rows; lane (g = lane / 4, t = lane % 4) streams row g, 16
// bytes at k = 64 j + 16 t of each 512-wide chunk (j = 0..7). The reduction order inside an
// mma is free, so step s of block j feeds the mma's k positions {2t, 2t+1, 2t+8, 2t+9} with
// the lane's own bytes 4s..4s+3: every weight byte is used where it was loaded, with no
// shuffle. A uses the same mapping, read from a shared-memory copy of the chunk (16 rows,
// padded by 8 bytes per row so that the 8-byte reads of a half-warp hit 32 distinct banks).
// int8 weights become 16-bit exactly: fp16 by placing the byte in the mantissa of 1024
// (0x64XX) and subtracting 1152; bf16 through float32 the same way with 2^23.
#include <cstdlib>
#include <string_view>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/int8_cuda.h"
#include "int8_common.cuh"

namespace bnb::cuda {

namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int kMmaRowsPerBlock = kMmaWarps * 8;
constexpr int kMmaChunk = 512;
constexpr int kMmaRows = 16;                 // rows of A per mma
constexpr int kAStride = kMmaChunk + 4;      // halves per staged row (+8 bytes: bank spread)

template <typename T> struct MmaOp;

template <> struct MmaOp<__half> {
  // Four int8 (one 32-bit word) -> two packed fp16 pairs, exactly.
  static __device__ __forceinline__ void convert(uint32_t w, uint32_t& lo, uint32_t& hi) {
    const uint32_t u = w ^ 0x80808080u;                      // x + 128, as unsigned bytes
    uint32_t a = __byte_perm(u, 0x64646464u, 0x4140);        // halves 1024 + u0, 1024 + u1
    uint32_t b = __byte_perm(u, 0x64646464u, 0x4342);        // halves 1024 + u2, 1024 + u3
    const uint32_t magic = 0x64806480u;                      // 1152 = 1024 + 128, twice
    asm("sub.f16x2 %0, %1, %2;" : "=r"(lo) : "r"(a), "r"(magic));
    asm("sub.f16x2 %0, %1, %2;" : "=r"(hi) : "r"(b), "r"(magic));
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <> struct MmaOp<__nv_bfloat16> {
  static __device__ __forceinline__ float byte_to_float(uint32_t u, int i) {
    // 2^23 + byte has the byte as its low mantissa bits; subtracting 2^23 + 128 leaves x.
    return __uint_as_float(0x4B000000u | ((u >> (8 * i)) & 0xFFu)) - 8388736.0f;
  }
  static __device__ __forceinline__ uint32_t pack(float x, float y) {
    const __nv_bfloat162 p = __floats2bfloat162_rn(x, y);  // |x| <= 127: exact in bf16
    uint32_t r;
    memcpy(&r, &p, 4);
    return r;
  }
  static __device__ __forceinline__ void convert(uint32_t w, uint32_t& lo, uint32_t& hi) {
    const uint32_t u = w ^ 0x80808080u;
    lo = pack(byte_to_float(u, 0), byte_to_float(u, 1));
    hi = pack(byte_to_float(u, 2), byte_to_float(u, 3));
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// 16 weight bytes of row n at k (zeros outside the matrix).
__device__ __forceinline__ uint4 load_weight16(const int8_t* __restrict__ CB, int64_t n, int64_t N, int64_t K,
                                               int64_t k, bool aligned) {
  if (n < N && aligned && k + 16 <= K) return __ldcs(reinterpret_cast<const uint4*>(CB + n * K + k));
  uint8_t b[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) b[i] = (n < N && k + i < K) ? uint8_t(CB[n * K + k + i]) : uint8_t(0);
  uint4 r;
  memcpy(&r, b, 16);
  return r;
}

template <typename T>
__global__ void __launch_bounds__(kMmaThreads)
weight_linear_mma_kernel(const T* __restrict__ A, const int8_t* __restrict__ CB, const float* __restrict__ SCB,
                         const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, T* __restrict__ out,
                         bool weights_aligned, bool a_aligned) {
  __shared__ __align__(16) T a_s[kMmaRows * kAStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t n_row = int64_t(blockIdx.x) * kMmaRowsPerBlock + warp * 8 + g;  // the row this lane streams
  const int64_t m_tiles = (M + kMmaRows - 1) / kMmaRows;
  const uint16_t zero_bits = 0;
  T zero;
  memcpy(&zero, &zero_bits, 2);

  for (int64_t mt = blockIdx.y; mt < m_tiles; mt += gridDim.y) {
    const int64_t m0 = mt * kMmaRows;
    const int rows = int(M - m0 < kMmaRows ? M - m0 : int64_t(kMmaRows));
    __syncthreads();  // a_s of the previous tile is no longer read
    // Rows past M stay zero for the whole tile: cleared once.
    for (int i = threadIdx.x; i < (kMmaRows - rows) * kAStride; i += kMmaThreads) a_s[rows * kAStride + i] = zero;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    uint4 w[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) w[j] = load_weight16(CB, n_row, N, K, 64 * j + 16 * t, weights_aligned);

    for (int64_t k0 = 0; k0 < K; k0 += kMmaChunk) {
      // The next chunk's weights are requested first so their loads overlap the staging and the mmas.
      uint4 w_next[8];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        w_next[j] = load_weight16(CB, n_row, N, K, k0 + kMmaChunk + 64 * j + 16 * t, weights_aligned);
      __syncthreads();  // every warp is done with the previous chunk of A
      for (int p = threadIdx.x; p < rows * (kMmaChunk / 4); p += kMmaThreads) {
        const int r = p / (kMmaChunk / 4), c = (p % (kMmaChunk / 4)) * 4;  // 4 halves = 8 bytes
        const int64_t gk = k0 + c;
        const T* src = A + (m0 + r) * K + gk;
        uint2 v;
        if (a_aligned && gk + 4 <= K) {
          v = *reinterpret_cast<const uint2*>(src);
        } else {
          T e[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) e[i] = gk + i < K ? src[i] : zero;
          memcpy(&v, e, 8);
        }
        *reinterpret_cast<uint2*>(a_s + r * kAStride + c) = v;
      }
      __syncthreads();
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint32_t words[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const int kk = 64 * j + 16 * t + 4 * s;
          const uint2 top = *reinterpret_cast<const uint2*>(a_s + g * kAStride + kk);
          const uint2 bottom = *reinterpret_cast<const uint2*>(a_s + (g + 8) * kAStride + kk);
          // Registers: rows g / g+8 at positions (2t, 2t+1), then at (2t+8, 2t+9).
          const uint32_t a[4] = {top.x, bottom.x, top.y, bottom.y};
          uint32_t b0, b1;
          MmaOp<T>::convert(words[s], b0, b1);
          MmaOp<T>::mma(acc, a, b0, b1);
        }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) w[j] = w_next[j];
    }
    // acc[0..1]: row g, columns 2t, 2t+1 of the warp's 8; acc[2..3]: row g + 8.
    const int64_t n_base = int64_t(blockIdx.x) * kMmaRowsPerBlock + warp * 8 + 2 * t;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + g + (i >= 2 ? 8 : 0);
      const int64_t n = n_base + (i & 1);
      if (m < M && n < N) {
        float v = __fmul_rn(acc[i], __fmul_rn(SCB[n], kInt8Inv127));
        if (bias) v = __fadd_rn(v, to_float(bias[n]));
        out[m * N + n] = from_float<T>(v);
      }
    }
  }
}

constexpr int kDefaultSplitK = 512;  // measured faster than 1024 on the H100 (more blocks per SM)

// Split-K version, what the 16-bit decode path runs. The staged kernel above gives each block
// all of K: 256 blocks of 4 warps for N = 8192, 8 warps per SM, and per 512 columns a barrier
// and an A staging loop whose L2 round trips the weight stream waits behind (ncu: 19% of
// DRAM bandwidth, 12% achieved occupancy). Here a block takes 32 weight rows over one
// kSplitK-wide slice of K: it requests all of its weight bytes (kSplitK / 4 per lane) first,
// stages its slice of A (16 rows) with one round of loads, passes one barrier and runs the
// mmas. Grid (N / 32) x (K / kSplitK) x row tiles: 4096 blocks for 8192 x 8192 at a 512
// slice, five per SM (registers), so plenty of bytes are in flight (ncu: 49% of DRAM
// bandwidth under ncu's clocks, 30% achieved occupancy; 54% of the copy bandwidth timed). Partial sums (float32, unscaled) go to
// partial[split][M][N]; finish_kernel adds them in split order (deterministic), scales, adds
// the bias and rounds.
template <typename T, int kSplitK>
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
  for (int j = 0; j < kSplitJ; ++j) {
    const uint32_t words[4] = {w[j].x, w[j].y, w[j].z, w[j].w};
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int kk = 64 * j + 16 * t + 4 * s;
      const uint2 top = *reinterpret_cast<const uint2*>(a_s + g * kSplitStride + kk);
      const uint2 bottom = *reinterpret_cast<const uint2*>(a_s + (g + 8) * kSplitStride + kk);
      const uint32_t frag[4] = {top.x, bottom.x, top.y, bottom.y};
      uint32_t b0, b1;
      MmaOp<T>::convert(words[s], b0, b1);
      MmaOp<T>::mma(acc, frag, b0, b1);
    }
  }
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

// Which tensor-core kernel serves 16-bit activations: BNB_INT8_GEMV=staged selects the
// one-slice kernel, splitk512 / splitk1024 the slice width (to compare); read at each call
// so that one process can compare them.
bool use_splitk() {
  const char* v = std::getenv("BNB_INT8_GEMV");
  return !(v && std::string_view(v) == "staged");
}

int splitk_width() {
  const char* v = std::getenv("BNB_INT8_GEMV");
  if (v && std::string_view(v) == "splitk512") return 512;
  if (v && std::string_view(v) == "splitk1024") return 1024;
  return kDefaultSplitK;
}

int64_t splitk_slices(int64_t K) { return (K + splitk_width() - 1) / splitk_width(); }

template <typename T>
cudaError_t launch(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N, int64_t K,
                   T* out, float* workspace, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const bool weights_aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
  const bool a_aligned = K % 4 == 0 && (reinterpret_cast<uintptr_t>(A) & 7u) == 0;
  const int64_t blocks_n = (N + kMmaRowsPerBlock - 1) / kMmaRowsPerBlock;
  const int64_t m_tiles = (M + kMmaRows - 1) / kMmaRows;
  if (blocks_n > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(blocks_n), unsigned(m_tiles < 65535 ? m_tiles : 65535));
  if (use_splitk() && workspace != nullptr) {
    const int64_t splits = splitk_slices(K);
    if (splits > 65535 || m_tiles > 65535) return cudaErrorInvalidValue;
    const dim3 sgrid{unsigned(blocks_n), unsigned(splits), unsigned(m_tiles)};
    const bool a16 = K % 8 == 0 && (reinterpret_cast<uintptr_t>(A) & 15u) == 0;
    if (splitk_width() == 512)
      weight_linear_splitk_kernel<T, 512>
          <<<sgrid, kMmaThreads, 0, stream>>>(A, CB, M, N, K, workspace, weights_aligned, a16);
    else
      weight_linear_splitk_kernel<T, 1024>
          <<<sgrid, kMmaThreads, 0, stream>>>(A, CB, M, N, K, workspace, weights_aligned, a16);
    const int64_t total = M * N;
    const int fgrid = int(std::min<int64_t>((total + 255) / 256, 65535));
    weight_linear_finish_kernel<T><<<fgrid, 256, 0, stream>>>(workspace, splits, SCB, bias, M, N, out);
  } else {
    weight_linear_mma_kernel<T><<<grid, kMmaThreads, 0, stream>>>(A, CB, SCB, bias, M, N, K, out, weights_aligned,
                                                                  a_aligned);
  }
  return cudaGetLastError();
}

}  // namespace

bool int8_weight_linear_mma_enabled() {
  // BNB_INT8_GEMV=simt selects the CUDA-core kernel instead (to compare the two).
  const char* v = std::getenv("BNB_INT8_GEMV");
  return !(v && std::string_view(v) == "simt");
}

int64_t int8_weight_linear_workspace_floats(DType dtype, int64_t M, int64_t N, int64_t K) {
  if (dtype == DType::Float32 || !int8_weight_linear_mma_enabled() || !use_splitk()) return 0;
  return splitk_slices(K) * M * N;
}

cudaError_t int8_weight_linear_mma(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                                   int64_t M, int64_t N, int64_t K, void* out, float* workspace, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float16:
      return launch(static_cast<const __half*>(A), CB, SCB, static_cast<const __half*>(bias), M, N, K,
                    static_cast<__half*>(out), workspace, stream);
    case DType::BFloat16:
      return launch(static_cast<const __nv_bfloat16*>(A), CB, SCB, static_cast<const __nv_bfloat16*>(bias), M, N, K,
                    static_cast<__nv_bfloat16*>(out), workspace, stream);
    default:
      return cudaErrorInvalidValue;  // float32 takes the CUDA-core kernel
  }
}

}  // namespace bnb::cuda
