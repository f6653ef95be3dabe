// The fused 4-bit product out[M, N] = A[M, K] @ dequant(W)[N, K]^T (+ bias) on tensor cores,
// for the few rows of a decode step or a short prefill (M <= 64), fp16 and bf16, on the
// checkpoint's own layout (row-major packed codes, block-wise scales, plain or nested): the
// weight is read once, dequantized in registers and never written anywhere.
//
// The product is computed transposed, out^T = W @ A^T, so that W is the 16 x 16 operand of
// mma.m16n8k16 (16 output features) and A the 16 x 8 one (8 tokens): one token wastes 7/8 of
// a tensor-core instruction, which costs nothing here, and the weight is not staged at all.
// Which physical k each fragment slot stands for is free (a dot product does not care about
// the order of its terms) as long as W and A agree, so each lane takes 32 consecutive k of a
// 128-wide chunk: 16 packed bytes of a weight row (one 16-byte load, rows g and g + 8) and 32
// activations per token (four 16-byte loads). Step j of the chunk maps the fragment's k slots
// {2t, 2t + 1} and {2t + 8, 2t + 9} to k = 32t + 4j + {0, 1} and {2, 3}: one packed byte each.
//
// Dequantization: a 256-entry table in shared memory (16 interleaved copies) holds both values
// of every byte (code of the high nibble, code of the low nibble, each rounded to the dtype),
// and one paired multiply by the block's scale (rounded to the dtype) gives the two weights of a
// fragment register: about two instructions per two weights.
//
// A CTA is one 16 RT-row slab of W with its K split over kMmaWarps warps (adjacent chunks, so
// the CTA reads each row in long runs); their partial sums meet in shared memory.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/block_scales.h"
#include "../common/quant.cuh"
#include "../int8/weight_linear_mma.cuh"  // MmaOp<T>::mma, load_weight_stream

namespace bnb::cuda {

constexpr int kMmaWarps = 4;    // warps of a CTA, splitting K
constexpr int kMmaChunk = 128;  // k per lane group and step: 16 packed bytes a lane and row

// Two values of T in one register, the first (the lower k) in the low half.
template <typename T> struct Pair4bit;
template <> struct Pair4bit<__half> {
  static __device__ __forceinline__ uint32_t pack(float first, float second) {
    const __half2 h = __floats2half2_rn(first, second);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }
};
template <> struct Pair4bit<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float first, float second) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(first, second);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  // a * b + (-0.0): one rounding, and the sign of a zero product kept (mul.bf16x2 needs sm_90).
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
    return d;
  }
};

// The scale of a lane's 32 weights of a row (its 16 bytes) in a block whose stored absmax is
// `stored` (marked blocks: nonfinite.h); the check of the bytes only in a marked block.
__device__ __forceinline__ float lane_scale(float stored, const uint32_t (&bytes)[4]) {
  if (!is_marked(stored)) return stored;
  return block_scale_or_nan(stored, holds_reserved_code_4bit(bytes[0]) || holds_reserved_code_4bit(bytes[1]) ||
                                        holds_reserved_code_4bit(bytes[2]) || holds_reserved_code_4bit(bytes[3]));
}

// MT token tiles of 8 (M <= 8 MT); RT row tiles of 16 a warp (the activation fragments serve
// RT tiles: the CTAs together read A N / (16 RT) times); U chunks a warp loads before using
// any (the weight bytes in flight hide the memory latency). A_SMEM: the CTA first copies all of
// A to shared memory (rows padded by 16 bytes: conflict-free fragment reads), all its loads in
// flight at once, where it fits; else fragments come through the L1, a whole chunk's loaded
// one chunk ahead when MT <= 2 (more would not fit the registers).
template <typename T, int MT, int RT, int U, bool A_SMEM>
__global__ void __launch_bounds__(kMmaWarps * 32)
gemm_4bit_mma_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                     const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M, int64_t N,
                     int64_t K, int log2_blocksize) {
  using P = Pair4bit<T>;
  constexpr int kTokens = MT * 8, kRows = 16 * RT;
  constexpr bool kWholeChunk = A_SMEM || MT <= 2;  // a chunk's fragments of every token tile at once
  extern __shared__ uint4 s_a[];                   // A_SMEM: [M][K / 8 + 1]
  // The byte table, 16 copies interleaved (entry b of copy c at 16 b + c): lane l reads copy
  // l % 16, so a warp's 32 lookups of random bytes meet at most two to a bank (one copy: about
  // four, and the lookups bound the kernel).
  __shared__ uint32_t s_pair[256 * 16];
  __shared__ float s_sum[kMmaWarps][kRows][kTokens + 1];  // + 1: no bank conflicts on the way in
  for (int i = threadIdx.x; i < 256 * 16; i += blockDim.x) s_pair[i] = P::pack(code[i >> 8], code[(i >> 4) & 15]);
  const int64_t row_vecs = K / 8 + 1;  // uint4 a padded row of A in shared memory
  if constexpr (A_SMEM) {
    const int64_t vecs = int64_t(M) * (K / 8);
    const uint4* src = reinterpret_cast<const uint4*>(A);
    for (int64_t i0 = threadIdx.x; i0 < vecs; i0 += 4 * blockDim.x) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t i = i0 + int64_t(u) * blockDim.x;
        if (i < vecs) v[u] = __ldg(src + i);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int64_t i = i0 + int64_t(u) * blockDim.x;
        if (i < vecs) s_a[(i / (K / 8)) * row_vecs + i % (K / 8)] = v[u];
      }
    }
  }
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const uint32_t* table = s_pair + (lane & 15);  // this lane's copy
  const int64_t n0 = int64_t(blockIdx.x) * kRows;
  // Rows past N and tokens past M repeat the last one (their results are never written).
  // Row h * 8 + g of tile r (h = 0, 1: the fragment's two row halves).
  const uint8_t* w_row[RT][2];
  int64_t first[RT][2];  // flattened index of the lane's first weight of the row in chunk 0
#pragma unroll
  for (int r = 0; r < RT; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = min(n0 + 16 * r + 8 * h + g, N - 1);
      w_row[r][h] = B + row * (K / 2) + 16 * t;
      first[r][h] = row * K + 32 * t;
    }
  }
  int64_t a_at[MT];  // the lane's first activation of each token tile: uint4 index (A_SMEM) or element
#pragma unroll
  for (int nt = 0; nt < MT; ++nt) {
    const int64_t tok = min(nt * 8 + g, M - 1);
    a_at[nt] = A_SMEM ? tok * row_vecs + 4 * t : tok * K + 32 * t;
  }
  // The 16 words of a lane's fragments of token tile nt in the chunk at k0.
  auto load_a = [&](uint32_t (&a)[16], int nt, int64_t k0) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const uint4 v = A_SMEM ? s_a[a_at[nt] + k0 / 8 + q]
                             : __ldg(reinterpret_cast<const uint4*>(A + a_at[nt] + k0) + q);
      a[4 * q] = v.x;
      a[4 * q + 1] = v.y;
      a[4 * q + 2] = v.z;
      a[4 * q + 3] = v.w;
    }
  };

  float acc[RT][MT][4] = {};
  const int64_t chunks = K / kMmaChunk;
  // A warp takes U adjacent chunks a round, the CTA's warps 4 U adjacent ones: runs of
  // 64 U bytes a row per warp.
  for (int64_t c0 = int64_t(warp) * U; c0 < chunks; c0 += int64_t(kMmaWarps) * U) {
    uint4 w[U][RT][2];
    float m[U][RT][2];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t k0 = min(c0 + u, chunks - 1) * kMmaChunk;  // past the end: a repeat, unused
#pragma unroll
      for (int r = 0; r < RT; ++r) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          w[u][r][h] = load_weight_stream(reinterpret_cast<const int8_t*>(w_row[r][h] + k0 / 2));
          // A lane's 32 weights of a row lie in one block (blocksize >= 32, rows start at multiples of 128).
          m[u][r][h] = block_scale(scales, (first[r][h] + k0) >> log2_blocksize);
        }
      }
    }
    uint32_t a_next[kWholeChunk ? MT : 1][16];
    if constexpr (kWholeChunk) {
#pragma unroll
      for (int nt = 0; nt < MT; ++nt) load_a(a_next[nt], nt, c0 * kMmaChunk);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + u >= chunks) break;
      const int64_t k0 = (c0 + u) * kMmaChunk;
      uint32_t frag[RT][8][4];
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        const uint32_t lo[4] = {w[u][r][0].x, w[u][r][0].y, w[u][r][0].z, w[u][r][0].w};
        const uint32_t hi[4] = {w[u][r][1].x, w[u][r][1].y, w[u][r][1].z, w[u][r][1].w};
        const float m_lo = lane_scale(m[u][r][0], lo), m_hi = lane_scale(m[u][r][1], hi);
        const uint32_t s_lo = P::pack(m_lo, m_lo), s_hi = P::pack(m_hi, m_hi);
#pragma unroll
        for (int j = 0; j < 8; ++j) {  // bytes 2j and 2j + 1 of each row
          const int shift = 16 * (j & 1);
          frag[r][j][0] = P::mul(table[((lo[j / 2] >> shift) & 0xff) << 4], s_lo);
          frag[r][j][1] = P::mul(table[((hi[j / 2] >> shift) & 0xff) << 4], s_hi);
          frag[r][j][2] = P::mul(table[((lo[j / 2] >> (shift + 8)) & 0xff) << 4], s_lo);
          frag[r][j][3] = P::mul(table[((hi[j / 2] >> (shift + 8)) & 0xff) << 4], s_hi);
        }
      }
      if constexpr (kWholeChunk) {
        uint32_t a[MT][16];
#pragma unroll
        for (int nt = 0; nt < MT; ++nt)
#pragma unroll
          for (int i = 0; i < 16; ++i) a[nt][i] = a_next[nt][i];
        if (u + 1 < U && c0 + u + 1 < chunks) {  // the next chunk's fragments, in flight meanwhile
#pragma unroll
          for (int nt = 0; nt < MT; ++nt) load_a(a_next[nt], nt, k0 + kMmaChunk);
        }
#pragma unroll
        for (int nt = 0; nt < MT; ++nt)
#pragma unroll
          for (int r = 0; r < RT; ++r)
#pragma unroll
            for (int j = 0; j < 8; ++j) MmaOp<T>::mma(acc[r][nt], frag[r][j], a[nt][2 * j], a[nt][2 * j + 1]);
      } else {
#pragma unroll
        for (int nt = 0; nt < MT; ++nt) {
          uint32_t a[16];
          load_a(a, nt, k0);
#pragma unroll
          for (int r = 0; r < RT; ++r)
#pragma unroll
            for (int j = 0; j < 8; ++j) MmaOp<T>::mma(acc[r][nt], frag[r][j], a[2 * j], a[2 * j + 1]);
        }
      }
    }
  }

  // c0, c1: row g, tokens 2t and 2t + 1 of the tile; c2, c3: row g + 8.
#pragma unroll
  for (int r = 0; r < RT; ++r) {
#pragma unroll
    for (int nt = 0; nt < MT; ++nt) {
      s_sum[warp][16 * r + g][nt * 8 + 2 * t] = acc[r][nt][0];
      s_sum[warp][16 * r + g][nt * 8 + 2 * t + 1] = acc[r][nt][1];
      s_sum[warp][16 * r + g + 8][nt * 8 + 2 * t] = acc[r][nt][2];
      s_sum[warp][16 * r + g + 8][nt * 8 + 2 * t + 1] = acc[r][nt][3];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kRows * kTokens; i += blockDim.x) {
    const int row = i % kRows, tok = i / kRows;  // consecutive features a token: wide stores
    const int64_t n = n0 + row;
    if (n >= N || tok >= M) continue;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < kMmaWarps; ++w) sum += s_sum[w][row][tok];
    if (bias != nullptr) sum += to_float(bias[n]);
    out[int64_t(tok) * N + n] = from_float<T>(sum);
  }
}

// Whether the tensor-core kernel takes this product (else the CUDA-core kernel does).
template <typename T> bool gemm_4bit_mma_fits(const T* A, const uint8_t* B, int64_t M, int64_t K) {
  return M >= 1 && M <= 64 && K % kMmaChunk == 0 && aligned16(A) && aligned16(B);
}

template <typename T>
cudaError_t launch_gemm_4bit_mma(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                 const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                 cudaStream_t stream) {
  const int m = int(M);
  // All of A in shared memory where it fits beside the static 25 KiB in the default 48 KiB (a
  // decode step's one or two rows; up to 16 tokens: more would not leave the registers the
  // staged fragments need).
  const size_t a_bytes = size_t(M) * size_t(K / 8 + 1) * 16;
  const bool a_smem = a_bytes <= 20 * 1024;
#define BNB_LAUNCH_AS(MT, RT, U, AS, SMEM)                                                                     \
  do {                                                                                                        \
    const int64_t grid = (N + 16 * RT - 1) / (16 * RT);                                                       \
    if (grid > 0x7fffffff) return cudaErrorInvalidValue;                                                      \
    gemm_4bit_mma_kernel<T, MT, RT, U, AS>                                                                    \
        <<<int(grid), kMmaWarps * 32, SMEM, stream>>>(A, B, code, scales, bias, out, m, N, K, log2_blocksize); \
  } while (0)
#define BNB_LAUNCH(MT, RT, U)                  \
  do {                                         \
    if (a_smem) {                              \
      BNB_LAUNCH_AS(MT, RT, U, true, a_bytes); \
    } else {                                   \
      BNB_LAUNCH_AS(MT, RT, U, false, 0);      \
    }                                          \
  } while (0)
  // One token tile: the weight stream is everything, four chunks in flight. More tokens: two
  // row tiles a warp halve the activation reads; 64 tokens keep one (registers).
  if (M <= 8) {
    BNB_LAUNCH(1, 1, 4);
  } else if (M <= 16) {
    BNB_LAUNCH(2, 2, 2);
  } else if (M <= 32) {
    BNB_LAUNCH_AS(4, 2, 2, false, 0);
  } else {
    BNB_LAUNCH_AS(8, 1, 2, false, 0);
  }
#undef BNB_LAUNCH
#undef BNB_LAUNCH_AS
  return cudaGetLastError();
}

}  // namespace bnb::cuda
