// The fused 4-bit product out[M, N] = A[M, K] @ dequant(W)[N, K]^T (+ bias) for a decode step
// (M <= 8), fp16 and bf16, blocks of 64 or more, K a multiple of 128: the weight streamed from
// memory once, in 16-byte loads, dequantized in registers, on tensor cores (mma.m16n8k16 with W
// as the 16 x 16 operand, as in gemm_4bit_mma.cuh, whose helpers it shares).
//
// Why a second tensor-core kernel: at one token it is 10-20% faster than gemm_4bit_mma on the
// large shapes (one H100, bf16, blocksize 64, A/B on the same data: 8192^2 27.4 against 30.4
// us, 11008 -> 4096 24.6 against 30.6, 4096 -> 11008 18.5 against 21.4; 4096^2 and 2048^2
// within 3%), where at 16 tokens it is slower on the large ones (8192^2 46.9 against 38.2), so
// it takes one token tile (M <= 8). It does less work a byte in the L1 than the general kernel:
// - the unit is a step-group of 128 k of 16 rows: lane (g, t) loads 16 bytes (32 k) of rows g and
//   g + 8 at k = 32 t, so a warp's load is 64 contiguous bytes of each of 8 rows;
// - the byte table has 32 copies, one a lane (entry e of copy c at word 32 e + c: a lane's
//   lookups all fall in its own bank, conflict-free), 32 KiB;
// - step s of the eight maps fragment slots {2t, 2t + 1} and {2t + 8, 2t + 9} to k = 32t + 4s +
//   {0, 1} and {2, 3} (bytes 2s and 2s + 1 of the lane's 16), so a lane's activations of a
//   step-group are 32 consecutive values of each token, four 16-byte loads;
// - a block's scale is applied to float32 partial sums (a weight's value, code * scale, exact in
//   float32, as in the general kernel): blocks of 128 or more hold a whole step-group; blocks of
//   64 (SPLIT) are read as halves: a lane's 16 bytes of a row are two 8-byte loads, its 16 k of
//   each of the step-group's two blocks (k = 16 t and 64 + 16 t), so that steps 0-3 lie in the
//   first block and 4-7 in the second, one mma a step. (Masking each step's activations to the
//   lanes of each block instead, two mma a step, took 1-11% more time at one to eight tokens on
//   an H100: docs/4bit.md.)
// Each lane loads one of the four (or two) scales its quad needs, and shuffles them around.
#pragma once
#include <cstdint>

#include "gemm_4bit_mma.cuh"

namespace bnb::cuda {

constexpr int kStreamK = 128;     // k of a step-group: 16 bytes a lane and row
constexpr int kStreamWarps = 8;   // warps of a CTA, splitting K
constexpr int kStreamRound = 2;   // step-groups a warp loads ahead, as one round
// Words of a lane's 16 bytes a row dequantized in registers (code_planes.cuh), the rest by the
// table: 0 (all by the table) until the whole suite has run with the setting that
// benchmarks/ab_4bit_lookup.cu measures fastest.
constexpr int kStreamRegWords = 0;

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// A lane's 16 bytes of a row's step-group, `at` its first: one load, or (SPLIT, blocks of 64)
// 8 bytes of each block, 32 bytes apart.
template <bool SPLIT>
__device__ __forceinline__ uint4 load_step_group(const uint8_t* at) {
  if constexpr (SPLIT) {
    const uint2 lo = load_weight_stream8(at), hi = load_weight_stream8(at + kStreamK / 4);
    return make_uint4(lo.x, lo.y, hi.x, hi.y);
  } else {
    return load_weight_stream(at);
  }
}

// The 16-byte word of a lane's q-th activation load (0..3) of a step-group, from its first: 32
// consecutive activations, or (SPLIT) 16 of each block of 64.
template <bool SPLIT> __device__ __forceinline__ int step_group_a_word(int q) {
  return SPLIT ? 8 * (q / 2) + q % 2 : q;
}

// SPLIT: whether the block of the scale lane (g, t) holds (block t >> 1 of row g + 8 (t & 1))
// has a weight with the reserved code in `w` (the lanes' 16 bytes of rows g and g + 8, 8 of
// each block): the whole quad's half t >> 1 of their bytes. Warp-collective.
__device__ __forceinline__ bool halves_hold_reserved(const uint4 (&w)[2], int g, int t) {
  unsigned held[2][2];  // [the first or last 8 of a lane's bytes][row half]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    held[0][h] = __ballot_sync(0xffffffffu, holds_reserved_code_4bit(w[h].x) || holds_reserved_code_4bit(w[h].y));
    held[1][h] = __ballot_sync(0xffffffffu, holds_reserved_code_4bit(w[h].z) || holds_reserved_code_4bit(w[h].w));
  }
  return ((held[t >> 1][t & 1] >> (4 * g)) & 0xFu) != 0;
}

// The code pair of byte i (0..3) of `word` from this lane's copy of the 32-copy table at shared
// address `table` (entry b of the copy 128 b bytes on). Volatile: never moved above the barrier
// after which the table is full.
__device__ __forceinline__ uint32_t code_pair32(uint32_t table, uint32_t word, int i) {
  const uint32_t b = byte_perm(word, 0u, 0x4440u | unsigned(i));
  uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(table + (b << 7)));
  return v;
}

// MT token tiles of 8 (M <= 8 MT). SPLIT: blocks of 64, two to a step-group's row, read as
// halves. REG_J: the words j < REG_J of a lane's 16 bytes a row are dequantized in registers, the
// rest by the table.
template <typename T, int MT, bool SPLIT, int U = kStreamRound, int MINB = 1, int REG_J = 0>
__global__ void __launch_bounds__(kStreamWarps * 32, MINB)
gemm_4bit_stream_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                        const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M,
                        int64_t N, int64_t K, int log2_blocksize) {
  constexpr int kTokens = MT * 8, kParts = SPLIT ? 2 : 1;
  __shared__ __align__(16) uint32_t s_pair[256 * 32];  // after the loop: the warps' partial sums
  __shared__ float s_ncode[256];                       // nested scales: the values of their codes
  static_assert(kStreamWarps * 16 * (kTokens + 1) <= 256 * 32, "partial sums fit the table's place");

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  // Rows past N repeat the last one (their results are never written). h = 0, 1: rows g, g + 8.
  const uint8_t* w_row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) w_row[h] = B + min(n0 + 8 * h + g, N - 1) * (K / 2) + (SPLIT ? 8 : 16) * t;
  // The scale this lane loads for its quad: row g + 8 (t & 1), in units of 64 k from the
  // tensor's start; SPLIT: the half t >> 1 of the step-group (else both halves: one block).
  const int64_t scale_row = min(n0 + 8 * (t & 1) + g, N - 1);
  const int scale_at = int((scale_row * K) >> 6) + (SPLIT ? (t >> 1) : 0);  // N K < 2^35
  const int shift = log2_blocksize - 6;
  const int groups = int(K / kStreamK), stride = kStreamWarps * U;

  auto load_round = [&](uint4 (&w)[U][2], ScaleParts (&sp)[U], int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + u < groups) {
#pragma unroll
        for (int h = 0; h < 2; ++h) w[u][h] = load_step_group<SPLIT>(w_row[h] + int64_t(c0 + u) * (kStreamK / 2));
        sp[u] = load_scale_parts(scales, (scale_at + 2 * (c0 + u)) >> shift);
      } else {
        sp[u] = {0.f, 0u};  // its scale is still made (never used): a code inside the table
      }
    }
  };
  int c0 = warp * U;
  uint4 w[U][2];
  ScaleParts sp[U];
  if (c0 < groups) load_round(w, sp, c0);  // in flight while the tables fill

  fill_code_pairs<T, 32, (REG_J < 4)>(s_pair, s_ncode, code, scales);
  const CodePlanes planes = REG_J > 0 ? code_planes<T>(code) : CodePlanes{};
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  __syncthreads();

  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane);
  // The lane's first activations of each token tile (tokens past M repeat the last one).
  const T* a_row[MT];
#pragma unroll
  for (int nt = 0; nt < MT; ++nt) a_row[nt] = A + int64_t(min(nt * 8 + g, M - 1)) * K + (SPLIT ? 16 : 32) * t;

  float acc[MT][4] = {};
  for (; c0 < groups; c0 += stride) {
    const bool more = c0 + stride < groups;
    uint4 wn[U][2];
    ScaleParts spn[U];
    if (more) load_round(wn, spn, c0 + stride);

    float mine[U];
    bool marked = false;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      mine[u] = scale_of(scales, sp[u], s_ncode, offset);
      marked |= is_marked(mine[u]);
    }
    if (__any_sync(0xffffffffu, marked)) {
      // A block that held NaN or Inf (rare): rows whose weights in it hold the reserved code read
      // NaN, the others the block's |absmax|. The lanes holding a scale's weights: the whole
      // quad, their bytes of the scale's half (SPLIT: halves_hold_reserved) or all of them.
#pragma unroll
      for (int u = 0; u < U; ++u) {
        bool group;
        if constexpr (SPLIT) {
          group = halves_hold_reserved(w[u], g, t);
        } else {
          unsigned held[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint4 v = w[u][h];
            const bool r = holds_reserved_code_4bit(v.x) || holds_reserved_code_4bit(v.y) ||
                           holds_reserved_code_4bit(v.z) || holds_reserved_code_4bit(v.w);
            held[h] = __ballot_sync(0xffffffffu, r);
          }
          group = ((held[t & 1] >> (4 * g)) & 0xFu) != 0;
        }
        mine[u] = block_scale_or_nan(mine[u], group);
      }
    }

#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + u >= groups) break;
      // The scales of rows g and g + 8 (h), each half (p): lane h + 2 p of the quad loaded them.
      float scale[2][kParts];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int p = 0; p < kParts; ++p) scale[h][p] = __shfl_sync(0xffffffffu, mine[u], (lane & ~3) | (h + 2 * p));
      uint4 a[MT][4];
#pragma unroll
      for (int nt = 0; nt < MT; ++nt)
#pragma unroll
        for (int q = 0; q < 4; ++q)
          a[nt][q] = __ldg(reinterpret_cast<const uint4*>(a_row[nt] + int64_t(c0 + u) * kStreamK) +
                           step_group_a_word<SPLIT>(q));

      float part[kParts][MT][4] = {};
      uint32_t reg_pairs[2][4];
#pragma unroll
      for (int s = 0; s < 8; ++s) {
        const uint32_t lw = word_of(w[u][0], s / 2), hw = word_of(w[u][1], s / 2);
        const int i = 2 * (s & 1);
        uint32_t frag[4];
        if (s / 2 < REG_J) {
          if ((s & 1) == 0) {
            code_pairs_from_planes(planes, lw, reg_pairs[0]);
            code_pairs_from_planes(planes, hw, reg_pairs[1]);
          }
          frag[0] = reg_pairs[0][i];
          frag[1] = reg_pairs[1][i];
          frag[2] = reg_pairs[0][i + 1];
          frag[3] = reg_pairs[1][i + 1];
        } else {
          frag[0] = code_pair32(table, lw, i);
          frag[1] = code_pair32(table, hw, i);
          frag[2] = code_pair32(table, lw, i + 1);
          frag[3] = code_pair32(table, hw, i + 1);
        }
#pragma unroll
        for (int nt = 0; nt < MT; ++nt) {
          const uint32_t b0 = word_of(a[nt][s / 2], 2 * (s & 1)), b1 = word_of(a[nt][s / 2], 2 * (s & 1) + 1);
          MmaOp<T>::mma(part[SPLIT ? s / 4 : 0][nt], frag, b0, b1);  // (SPLIT: steps 4-7 in the second block)
        }
      }
      // c0, c1: row g; c2, c3: row g + 8.
#pragma unroll
      for (int nt = 0; nt < MT; ++nt)
#pragma unroll
        for (int p = 0; p < kParts; ++p) {
          acc[nt][0] = fmaf(scale[0][p], part[p][nt][0], acc[nt][0]);
          acc[nt][1] = fmaf(scale[0][p], part[p][nt][1], acc[nt][1]);
          acc[nt][2] = fmaf(scale[1][p], part[p][nt][2], acc[nt][2]);
          acc[nt][3] = fmaf(scale[1][p], part[p][nt][3], acc[nt][3]);
        }
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        w[u][0] = wn[u][0];
        w[u][1] = wn[u][1];
        sp[u] = spn[u];
      }
    }
  }

  // The warps' partial sums meet in shared memory (the table is no longer read).
  __syncthreads();
  float(*s_sum)[16][kTokens + 1] = reinterpret_cast<float(*)[16][kTokens + 1]>(s_pair);  // + 1: no bank conflicts
#pragma unroll
  for (int nt = 0; nt < MT; ++nt) {
    s_sum[warp][g][nt * 8 + 2 * t] = acc[nt][0];
    s_sum[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
    s_sum[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
    s_sum[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 16 * kTokens; i += blockDim.x) {
    const int row = i % 16, tok = i / 16;  // consecutive features a token: wide stores
    const int64_t n = n0 + row;
    if (n >= N || tok >= M) continue;
    float sum = 0.f;
#pragma unroll
    for (int v = 0; v < kStreamWarps; ++v) sum += s_sum[v][row][tok];
    if (bias != nullptr) sum += to_float(bias[n]);
    out[int64_t(tok) * N + n] = from_float<T>(sum);
  }
}

// Whether this kernel takes the product (else gemm_4bit_mma.cuh or the CUDA-core kernel does).
template <typename T>
bool gemm_4bit_stream_fits(const T* A, const uint8_t* B, int64_t M, int64_t N, int64_t K, int log2_blocksize) {
  return M >= 1 && M <= 8 && log2_blocksize >= 6 && K % kStreamK == 0 && K < (int64_t(1) << 31) &&
         N * K < (int64_t(1) << 35) && aligned16(A) && aligned16(B);
}

template <typename T>
cudaError_t launch_gemm_4bit_stream(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                    const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                    cudaStream_t stream) {
  const int64_t grid = (N + 15) / 16;
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  const int m = int(M);
#define BNB_LAUNCH_STREAM(MT, SPLIT)                                                                  \
  gemm_4bit_stream_kernel<T, MT, SPLIT, kStreamRound, 1, kStreamRegWords>                              \
      <<<int(grid), kStreamWarps * 32, 0, stream>>>(A, B, code, scales, bias, out, m, N, K, log2_blocksize)
  if (log2_blocksize == 6) BNB_LAUNCH_STREAM(1, true);
  else BNB_LAUNCH_STREAM(1, false);
#undef BNB_LAUNCH_STREAM
  return cudaGetLastError();
}

}  // namespace bnb::cuda
