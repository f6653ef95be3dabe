// The fused 4-bit product out[M, N] = A[M, K] @ dequant(W)[N, K]^T (+ bias) on tensor cores,
// for the few rows of a decode step or a short prefill (M <= 64), fp16 and bf16, on the
// checkpoint's own layout (row-major packed codes, block-wise scales, plain or nested): the
// weight is read once, dequantized in registers and never written anywhere.
//
// The product is computed transposed, out^T = W @ A^T, so that W is the 16 x 16 operand of
// mma.m16n8k16 (16 output features) and A the 16 x 8 one (8 tokens): one token wastes 7/8 of
// a tensor-core instruction, which costs nothing here, and the weight is not staged at all.
// Which physical k each fragment slot stands for is free (a dot product does not care about
// the order of its terms) as long as W and A agree. The unit is a sub-chunk of 64 k of a row:
// lane t of a lane group takes its 16 k (8 packed bytes, one 8-byte load for rows g and g + 8),
// and step s of the sub-chunk's four maps the fragment's k slots {2t, 2t + 1} and
// {2t + 8, 2t + 9} to k = 16t + 4s + {0, 1} and {2, 3}: one packed byte each, and four
// consecutive activations of a token.
//
// Dequantization: a 256-entry table in shared memory (16 interleaved copies: a warp's 32
// lookups of random bytes meet at most two to a bank) holds both code values of every byte,
// rounded to the dtype; a lookup is a byte permute, a multiply-add and the load. The block's
// scale is then applied in one of two ways:
// - POST (blocks of 64 or more): a sub-chunk lies in one block, so its four mma steps sum
//   code * activation into a float32 partial and one fma a partial applies the scale: no work
//   per weight beyond the lookup (the weight's value, code * scale, is then exact in float32
//   rather than rounded to the dtype);
// - otherwise (blocks of 32, and 32 or more tokens, where a partial per token tile would cost
//   more than it saves): each fragment register is multiplied by the scale rounded to the dtype.
//
// A CTA is one 16 RT-row slab of W with its K split over its warps (adjacent sub-chunks, so the
// CTA reads each row in long runs); their partial sums meet in shared memory. Each warp keeps
// two rounds of U sub-chunks in flight: the next round is loaded before the current one is
// used, and the first before the CTA fills its tables.
//
// SPLIT (sm_90): a thread-block cluster of S CTAs takes one slab, each CTA a slice of its K, and
// their sums meet through distributed shared memory, added in rank order (deterministic; no
// workspace, no second launch). Where N / (16 RT) slabs are fewer than the SMs (4096 rows at
// 16-32 tokens: 128 CTAs of 4 warps on 132 SMs), the split multiplies the CTAs.
#pragma once
#include <cstdint>
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/block_scales.h"
#include "../common/device_caps.cuh"
#include "../common/launch.cuh"
#include "../common/quant.cuh"
#include "../int8/weight_linear_mma.cuh"  // MmaOp<T>::mma
#include "block_scale_parts.cuh"
#include "code_planes.cuh"

namespace bnb::cuda {

constexpr int kMmaSubK = 64;      // k of a sub-chunk: 8 packed bytes a lane and row, four mma steps
constexpr int kMmaMaxWarps = 8;   // warps of a CTA (one token tile: 4 or 8; more tokens: 4)
constexpr int kMmaRegWords = 0;   // words of a lane's 8 bytes a row dequantized in registers (as kStreamRegWords)
// The most CTAs a cluster splits a slab's K over (SPLIT above; 1: never split).
constexpr int kMmaMaxSplit = 2;

// The scale of a lane's 16 weights of a row (its 8 bytes) in a block whose stored absmax is
// `stored` (marked blocks: nonfinite.h); the check of the bytes only in a marked block.
__device__ __forceinline__ float lane_scale(float stored, uint2 bytes) {
  if (!is_marked(stored)) return stored;
  return block_scale_or_nan(stored, holds_reserved_code_4bit(bytes.x) || holds_reserved_code_4bit(bytes.y));
}

// The code pair of byte i (0..3) of `word` from this lane's copy of the byte table, at shared
// address `table` (entry b of the copy 64 b bytes on): a byte permute brings the byte down (a
// shift and a mask would be two instructions) and one multiply-add makes the address. (Left to
// the compiler, the index arithmetic takes four instructions a lookup; the lookups are most of
// the kernel's work.) Volatile: never moved above the barrier after which the table is full.
__device__ __forceinline__ uint32_t code_pair(uint32_t table, uint32_t word, int i) {
  const uint32_t b = byte_perm(word, 0u, 0x4440u | unsigned(i));
  uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];" : "=r"(v) : "r"(table + (b << 6)));
  return v;
}

// 8 bytes of the weight stream, not kept in the L1 (read once).
__device__ __forceinline__ uint2 load_weight_stream8(const uint8_t* p) {
  uint2 r;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
  return r;
}

// Fills, with the whole CTA, the table of each byte's two code values (Pair4bit<T>::pack), COPIES
// interleaved copies an entry (entry e at words COPIES e .. COPIES e + COPIES - 1, so that lanes
// reading their own copy never meet in a bank; not where TABLE is false, for kernels that make
// every pair in registers), and the nested scales' code values. A thread an entry stores its
// COPIES / 4 16-byte words in an order rotated by the entry (below), so that the eight lanes of
// each quarter-warp store to eight different 16-byte bank groups: no conflicts.
// (In order from the first word, a quarter-warp's stores met 4-way (16 copies) or 8-way (32) in
// the same banks: at one token through 8192^2 they took as many shared-memory wavefronts as all
// the lookups, 1.09 M against 1.14 M, 86% of them in excess.)
template <typename T, int COPIES, bool TABLE = true>
__device__ __forceinline__ void fill_code_pairs(uint32_t* s_pair, float* s_ncode, const float* __restrict__ code,
                                                const BlockScales& scales) {
  constexpr int kWords = COPIES / 4;  // 16-byte words an entry
  static_assert(COPIES % 4 == 0 && 8 % kWords == 0, "whole 16-byte stores, an entry within 128 bytes");
  for (int e = threadIdx.x; e < 256; e += blockDim.x) {
    if constexpr (TABLE) {
      const uint32_t v = Pair4bit<T>::pack(code[e >> 4], code[e & 15]);
      uint4* words = reinterpret_cast<uint4*>(s_pair) + kWords * e;
      // Word (c + e kWords / 8) mod kWords: bank group (kWords e + that) mod 8, distinct over
      // eight consecutive entries.
      const int first = e * kWords / 8;
#pragma unroll
      for (int c = 0; c < kWords; ++c) words[(c + first) % kWords] = make_uint4(v, v, v, v);
    }
    if (scales.nested) s_ncode[e] = scales.nested_code[e];
  }
}

// The four mma steps' weight fragments of a sub-chunk of 16 rows: lo and hi are the lane's 8
// bytes of rows g and g + 8; step s takes bytes 2s and 2s + 1 (word s / 2). The first REG_W
// words' code pairs come from the planes' permutes, the rest from the lane's copy of the table.
template <int REG_W>
__device__ __forceinline__ void weight_fragments(uint32_t (&frag)[4][4], uint32_t table, const CodePlanes& planes,
                                                 const uint2& lo, const uint2& hi) {
  uint32_t reg_pairs[2][2][4];  // [word][row half][byte]
#pragma unroll
  for (int x = 0; x < REG_W; ++x) {
    code_pairs_from_planes(planes, x ? lo.y : lo.x, reg_pairs[x][0]);
    code_pairs_from_planes(planes, x ? hi.y : hi.x, reg_pairs[x][1]);
  }
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const uint32_t lw = s < 2 ? lo.x : lo.y, hw = s < 2 ? hi.x : hi.y;
    const int i = 2 * (s & 1), x = s / 2;
    if (x < REG_W) {
      frag[s][0] = reg_pairs[x][0][i];
      frag[s][1] = reg_pairs[x][1][i];
      frag[s][2] = reg_pairs[x][0][i + 1];
      frag[s][3] = reg_pairs[x][1][i + 1];
    } else {
      frag[s][0] = code_pair(table, lw, i);
      frag[s][1] = code_pair(table, hw, i);
      frag[s][2] = code_pair(table, lw, i + 1);
      frag[s][3] = code_pair(table, hw, i + 1);
    }
  }
}

// Each fragment register times its row's scale rounded to T (rows g: m_lo, g + 8: m_hi): a
// weight rounded as dequantize_4bit writes it (the kernels' scaling where it is not POST).
template <typename T>
__device__ __forceinline__ void scale_fragments(uint32_t (&frag)[4][4], float m_lo, float m_hi) {
  using P = Pair4bit<T>;
  const uint32_t s_lo = P::pack(m_lo, m_lo), s_hi = P::pack(m_hi, m_hi);
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    frag[s][0] = P::mul(frag[s][0], s_lo);
    frag[s][1] = P::mul(frag[s][1], s_hi);
    frag[s][2] = P::mul(frag[s][2], s_lo);
    frag[s][3] = P::mul(frag[s][3], s_hi);
  }
}

// MT token tiles of 8 (M <= 8 MT); RT row tiles of 16 a warp (the activation fragments serve
// RT tiles: the CTAs together read A N / (16 RT) times); U sub-chunks a warp's round. A_SMEM:
// the CTA first copies all of A to shared memory (rows padded by 16 bytes: conflict-free
// fragment reads), all its loads in flight at once, where it fits; else fragments come through
// the L1 (one sub-chunk ahead for MT <= 2). POST: scales applied to partial sums (above).
template <typename T, int MT, int RT, int U, bool A_SMEM, bool POST, int REG_W = 0, bool SPLIT = false>
__global__ void __launch_bounds__(kMmaMaxWarps * 32)
gemm_4bit_mma_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                     const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M, int64_t N,
                     int64_t K, int log2_blocksize) {
  constexpr int kTokens = MT * 8, kRows = 16 * RT;
  constexpr int kWarps = MT == 1 ? kMmaMaxWarps : 4;  // most warps a CTA of this shape is launched with
  constexpr bool kAhead = MT <= 2;                    // activation fragments one sub-chunk ahead
  extern __shared__ uint4 s_a[];                      // A_SMEM: [M][K / 8 + 1]
  // The warps' partial sums ([kWarps][kRows][kTokens + 1]: + 1, no bank conflicts on the way
  // in) take the byte table's place once the K loop is done (a barrier between) where both
  // would not fit the 48 KiB of static shared memory (64 tokens at RT 2); else each its own.
  constexpr int kSumWords = kWarps * kRows * (kTokens + 1), kTableWords = 256 * 16;
  constexpr bool kSumOverTable = 4 * (kSumWords + kTableWords + 256) > 48 * 1024;
  __shared__ __align__(16) uint32_t s_pair[kSumOverTable && kSumWords > kTableWords ? kSumWords : kTableWords];
  __shared__ float s_ncode[256];                      // nested scales: the values of their codes
  __shared__ float s_sum_own[kSumOverTable ? 1 : kSumWords];
  using SumRows = float[kRows][kTokens + 1];
  SumRows* const s_sum = reinterpret_cast<SumRows*>(kSumOverTable ? reinterpret_cast<float*>(s_pair) : s_sum_own);

  const int warps = int(blockDim.x) / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  // SPLIT: the cluster of gridDim.x CTAs shares slab blockIdx.y, rank blockIdx.x its slice of K.
  const int64_t n0 = int64_t(SPLIT ? blockIdx.y : blockIdx.x) * kRows;
  // Rows past N and tokens past M repeat the last one (their results are never written).
  // Row h * 8 + g of tile r (h = 0, 1: the fragment's two row halves).
  const uint8_t* w_row[RT][2];
  // Where the lane's scale of the row is read, in units of 16 weights (32-bit: the launcher's
  // rule), from the row's start; its block is that >> (log2_blocksize - 4).
  int first[RT][2];
#pragma unroll
  for (int r = 0; r < RT; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = min(n0 + 16 * r + 8 * h + g, N - 1);
      w_row[r][h] = B + row * (K / 2) + 8 * t;
      first[r][h] = int((row * K) >> 4) + (POST ? 0 : t);
    }
  }
  // This CTA's sub-chunks [sub_begin, subs) of the row (K < 2^31: the launcher's rule).
  int sub_begin = 0, subs = int(K / kMmaSubK);
  if constexpr (SPLIT) {
    const int per = (subs + int(gridDim.x) - 1) / int(gridDim.x);
    sub_begin = min(subs, int(blockIdx.x) * per);
    subs = min(subs, sub_begin + per);
  }
  const int stride = warps * U;
  // Round c0's weights and scales; sub-chunks past the end are not loaded (nor used).
  auto load_round = [&](uint2 (&w)[U][RT][2], ScaleParts (&sp)[U][RT][2], int c0) {
#pragma unroll
    for (int r = 0; r < RT; ++r) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint8_t* p = w_row[r][h] + int64_t(c0) * (kMmaSubK / 2);
        const int e = first[r][h] + c0 * (kMmaSubK / 16);
#pragma unroll
        for (int u = 0; u < U; ++u) {
          if (c0 + u < subs) {
            w[u][r][h] = load_weight_stream8(p + u * (kMmaSubK / 2));
            sp[u][r][h] = load_scale_parts(scales, (e + u * (kMmaSubK / 16)) >> (log2_blocksize - 4));
          } else {
            sp[u][r][h] = {0.f, 0u};  // its scale is still made (never used): a code inside the table
          }
        }
      }
    }
  };
  int c0 = sub_begin + warp * U;
  uint2 w[U][RT][2];
  ScaleParts sp[U][RT][2];
  if (c0 < subs) load_round(w, sp, c0);  // in flight while the tables fill

  fill_code_pairs<T, 16, (REG_W < 2)>(s_pair, s_ncode, code, scales);
  const CodePlanes planes = REG_W > 0 ? code_planes<T>(code) : CodePlanes{};
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  const int row_vecs = int(K / 8) + 1;  // uint4 a padded row of A in shared memory
  if constexpr (A_SMEM) {
    // At most 20 KiB (the launcher's rule): 32-bit indices.
    const int kv = int(K / 8), vecs = M * kv;
    const uint4* src = reinterpret_cast<const uint4*>(A);
    for (int i0 = threadIdx.x; i0 < vecs; i0 += 4 * blockDim.x) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = i0 + u * int(blockDim.x);
        if (i < vecs) v[u] = __ldg(src + i);
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = i0 + u * int(blockDim.x);
        if (i < vecs) s_a[(i / kv) * row_vecs + i % kv] = v[u];
      }
    }
  }
  __syncthreads();

  // This lane's copy of the byte table (entry b of copy c at word 16 b + c).
  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane & 15);
  // The lane's first activation of each token tile: uint4 index in shared memory (A_SMEM) or
  // pointer.
  int a_at[MT];
  const uint4* a_ptr[MT];
#pragma unroll
  for (int nt = 0; nt < MT; ++nt) {
    const int tok = min(nt * 8 + g, M - 1);
    a_at[nt] = tok * row_vecs + 2 * t;
    a_ptr[nt] = reinterpret_cast<const uint4*>(A + int64_t(tok) * K + 16 * t);
  }
  // The 8 words of a lane's fragments of token tile nt in sub-chunk c.
  auto load_a = [&](uint32_t (&a)[8], int nt, int c) {
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const uint4 v = A_SMEM ? s_a[a_at[nt] + c * (kMmaSubK / 8) + q] : __ldg(a_ptr[nt] + c * (kMmaSubK / 8) + q);
      a[4 * q] = v.x;
      a[4 * q + 1] = v.y;
      a[4 * q + 2] = v.z;
      a[4 * q + 3] = v.w;
    }
  };

  float acc[RT][MT][4] = {};
  for (; c0 < subs; c0 += stride) {
    const bool more = c0 + stride < subs;
    uint2 wn[U][RT][2];
    ScaleParts spn[U][RT][2];
    if (more) load_round(wn, spn, c0 + stride);

    float m[U][RT][2];
    bool marked = false;
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          m[u][r][h] = scale_of(scales, sp[u][r][h], s_ncode, offset);
          marked |= is_marked(m[u][r][h]);
        }
    if constexpr (POST) {
      // A block that held NaN or Inf (rare): the rows whose weights in it hold the reserved
      // code read NaN, the others the block's |absmax|. A scale serves the lane group's whole
      // sub-chunk of a row, so the group agrees on it.
      if (__any_sync(0xffffffffu, marked)) {
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int r = 0; r < RT; ++r)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const float s = m[u][r][h];
              const bool mine = is_marked(s) && (holds_reserved_code_4bit(w[u][r][h].x) ||
                                                 holds_reserved_code_4bit(w[u][r][h].y));
              const bool group = (__ballot_sync(0xffffffffu, mine) >> (lane & ~3)) & 0xFu;
              m[u][r][h] = block_scale_or_nan(s, group);
            }
      }
    }

    uint32_t a_cur[kAhead ? MT : 1][8];
    if constexpr (kAhead) {
#pragma unroll
      for (int nt = 0; nt < MT; ++nt) load_a(a_cur[nt], nt, c0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + u >= subs) break;
      uint32_t a_next[kAhead ? MT : 1][8];
      if constexpr (kAhead) {
        if (u + 1 < U && c0 + u + 1 < subs) {
#pragma unroll
          for (int nt = 0; nt < MT; ++nt) load_a(a_next[nt], nt, c0 + u + 1);
        }
      }
      // The sub-chunk's weight fragments, step s: bytes 2s and 2s + 1 of each row.
      uint32_t frag[RT][4][4];
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        const uint2 lo = w[u][r][0], hi = w[u][r][1];
        weight_fragments<REG_W>(frag[r], table, planes, lo, hi);
        if constexpr (!POST) scale_fragments<T>(frag[r], lane_scale(m[u][r][0], lo), lane_scale(m[u][r][1], hi));
      }
#pragma unroll
      for (int nt = 0; nt < MT; ++nt) {
        uint32_t a_own[kAhead ? 1 : 8];
        if constexpr (!kAhead) load_a(a_own, nt, c0 + u);  // several tiles: one at a time (registers)
        const uint32_t* a = kAhead ? a_cur[nt] : a_own;
#pragma unroll
        for (int r = 0; r < RT; ++r) {
          if constexpr (POST) {
            float part[4] = {};
#pragma unroll
            for (int s = 0; s < 4; ++s) MmaOp<T>::mma(part, frag[r][s], a[2 * s], a[2 * s + 1]);
            // c0, c1: row g; c2, c3: row g + 8.
            acc[r][nt][0] = fmaf(m[u][r][0], part[0], acc[r][nt][0]);
            acc[r][nt][1] = fmaf(m[u][r][0], part[1], acc[r][nt][1]);
            acc[r][nt][2] = fmaf(m[u][r][1], part[2], acc[r][nt][2]);
            acc[r][nt][3] = fmaf(m[u][r][1], part[3], acc[r][nt][3]);
          } else {
#pragma unroll
            for (int s = 0; s < 4; ++s) MmaOp<T>::mma(acc[r][nt], frag[r][s], a[2 * s], a[2 * s + 1]);
          }
        }
      }
      if constexpr (kAhead) {
#pragma unroll
        for (int nt = 0; nt < MT; ++nt)
#pragma unroll
          for (int i = 0; i < 8; ++i) a_cur[nt][i] = a_next[nt][i];
      }
    }
    if (more) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < RT; ++r)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            w[u][r][h] = wn[u][r][h];
            sp[u][r][h] = spn[u][r][h];
          }
    }
  }

  if constexpr (kSumOverTable) __syncthreads();  // every warp's last lookup is done
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
  auto warps_sum = [&](int row, int tok) {
    float sum = 0.f;
    for (int w = 0; w < warps; ++w) sum += s_sum[w][row][tok];
    return sum;
  };
  if constexpr (SPLIT) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // The CTA's sum over its warps into s_sum[0]; then each rank adds up its share of the
    // slab's outputs over the ranks' sums, in rank order.
    for (int i = threadIdx.x; i < kRows * kTokens; i += blockDim.x) {
      const int row = i % kRows, tok = i / kRows;
      s_sum[0][row][tok] = warps_sum(row, tok);
    }
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();  // release / acquire: every rank's sums are visible
    const int ranks = int(gridDim.x), rank = int(blockIdx.x);
    const int share = (kRows * kTokens + ranks - 1) / ranks;
    const int stop = min(kRows * kTokens, (rank + 1) * share);
    for (int i = rank * share + int(threadIdx.x); i < stop; i += int(blockDim.x)) {
      const int row = i % kRows, tok = i / kRows;  // consecutive features a token: wide stores
      const int64_t n = n0 + row;
      if (n >= N || tok >= M) continue;
      float sum = 0.f;
      for (int q = 0; q < ranks; ++q) sum += cluster.map_shared_rank(&s_sum[0][0][0], q)[row * (kTokens + 1) + tok];
      if (bias != nullptr) sum += to_float(bias[n]);
      out[int64_t(tok) * N + n] = from_float<T>(sum);
    }
    cluster.sync();  // no CTA leaves while another may still read its shared memory
#endif
  } else {
    for (int i = threadIdx.x; i < kRows * kTokens; i += blockDim.x) {
      const int row = i % kRows, tok = i / kRows;  // consecutive features a token: wide stores
      const int64_t n = n0 + row;
      if (n >= N || tok >= M) continue;
      float sum = warps_sum(row, tok);
      if (bias != nullptr) sum += to_float(bias[n]);
      out[int64_t(tok) * N + n] = from_float<T>(sum);
    }
  }
}

// Whether the tensor-core kernel takes this product (else the CUDA-core kernel does).
template <typename T> bool gemm_4bit_mma_fits(const T* A, const uint8_t* B, int64_t M, int64_t N, int64_t K) {
  return M >= 1 && M <= 64 && K % kMmaSubK == 0 && K < (int64_t(1) << 31) && N * K < (int64_t(1) << 35) &&
         aligned16(A) && aligned16(B);
}

// The CTAs of a cluster that each slab is split over (SPLIT): where the slabs are fewer than
// the SMs, the fewest up to kMmaMaxSplit that give every SM a CTA, each CTA keeping at least one
// round of sub-chunks a warp (`rounds` at 1); else none (1). Measured on an H100 (docs/4bit.md,
// benchmarks/ab_4bit_split.cu): two CTAs a slab gained 17-32% at 16 tokens and 2-17% at 32
// where 4096 rows make 128 slabs; where the slabs already give every SM one or more CTAs the
// split lost up to 41% (a last wave's fill alone misled at 64 tokens on 4096 rows), and three
// or four CTAs a cluster never won.
inline int gemm_4bit_mma_split(const void* split, int threads, int smem, int64_t slabs, int rounds) {
  const int sms = device_caps().sm_count;
  // (fewer slabs than SMs also keeps grid.y, the slabs, far below its limit of 65535)
  if (kMmaMaxSplit <= 1 || rounds < 2 || !device_caps().clusters() || slabs >= sms) return 1;
  int s = 2;
  while (s < kMmaMaxSplit && s < rounds && s * slabs < sms) ++s;
  return max_active_clusters(split, threads, s, smem) > 0 ? s : 1;
}

// One kernel shape over the N / (16 RT) slabs, split over clusters where that fills the GPU.
template <typename T, int MT, int RT, int U, bool AS, bool PS>
cudaError_t launch_gemm_4bit_mma_slabs(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                       const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                       int warps, int smem, cudaStream_t stream) {
  const int64_t slabs = (N + 16 * RT - 1) / (16 * RT);
  if (slabs > 0x7fffffff) return cudaErrorInvalidValue;
  const int threads = warps * 32, m = int(M);
  const auto plain = gemm_4bit_mma_kernel<T, MT, RT, U, AS, PS, kMmaRegWords, false>;
  if constexpr (kMmaMaxSplit > 1 && MT >= 2) {  // (one token tile: eight warps a CTA instead)
    const auto split = gemm_4bit_mma_kernel<T, MT, RT, U, AS, PS, kMmaRegWords, true>;
    const int s = gemm_4bit_mma_split((const void*)split, threads, smem, slabs, int(K / kMmaSubK) / (warps * U));
    if (s > 1)
      return launch_in_clusters(split, s, dim3(unsigned(s), unsigned(slabs)), threads, size_t(smem), stream, A, B,
                                code, scales, bias, out, m, N, K, log2_blocksize);
  }
  plain<<<int(slabs), threads, smem, stream>>>(A, B, code, scales, bias, out, m, N, K, log2_blocksize);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_gemm_4bit_mma(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                 const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                 cudaStream_t stream) {
  const bool post = log2_blocksize >= 6;  // a sub-chunk in one block
  // All of A in shared memory where it fits beside the static 22-26 KiB in the default 48 KiB
  // (a decode step's one or two rows; up to 16 tokens: more would not leave the registers the
  // staged fragments need).
  const size_t a_bytes = size_t(M) * size_t(K / 8 + 1) * 16;
  const bool a_smem = a_bytes <= 20 * 1024;
#define BNB_LAUNCH_AS(MT, RT, U, AS, PS, SMEM, WARPS)                                                          \
  return launch_gemm_4bit_mma_slabs<T, MT, RT, U, AS, PS>(A, B, code, scales, bias, out, M, N, K, log2_blocksize, \
                                                          WARPS, int(SMEM), stream)
#define BNB_LAUNCH(MT, RT, U, WARPS)                            \
  do {                                                          \
    if (a_smem && post) {                                       \
      BNB_LAUNCH_AS(MT, RT, U, true, true, a_bytes, WARPS);     \
    } else if (a_smem) {                                        \
      BNB_LAUNCH_AS(MT, RT, U, true, false, a_bytes, WARPS);    \
    } else if (post) {                                          \
      BNB_LAUNCH_AS(MT, RT, U, false, true, 0, WARPS);          \
    } else {                                                    \
      BNB_LAUNCH_AS(MT, RT, U, false, false, 0, WARPS);         \
    }                                                           \
  } while (0)
  // One token tile: the weight stream is everything; eight warps a CTA where four would leave
  // the GPU with too few loads in flight (fewer than about 16 warps an SM). More tokens: two
  // row tiles a warp halve the activation reads. At 32 tokens one k sub-chunk a round: 128
  // registers let four CTAs share an SM where four sub-chunks a round (254 registers) let two,
  // and a LLaMA MLP's 344 slabs of 4096 -> 11008 then run in one wave instead of 1.3 (H100,
  // bench_4bit.py: 0.0306 ms against 0.0364 for F.linear, where four sub-chunks took 0.045; the
  // other shapes within 3%). At 16 tokens two sub-chunks a round stay (one was 5-37% slower with
  // blocks of 64: docs/4bit.md). At 64 tokens one sub-chunk a round takes 179 registers already.
  if (M <= 8) {
    const int64_t ctas = (N + 15) / 16;
    const int warps = ctas * 4 < 12 * int64_t(device_caps().sm_count) ? 8 : 4;
    BNB_LAUNCH(1, 1, 4, warps);
  } else if (M <= 16) {
    BNB_LAUNCH(2, 2, 2, 4);
  } else if (M <= 32) {
    BNB_LAUNCH_AS(4, 2, 1, false, false, 0, 4);
  } else {
    BNB_LAUNCH_AS(8, 2, 1, false, false, 0, 4);
  }
#undef BNB_LAUNCH
#undef BNB_LAUNCH_AS
}

}  // namespace bnb::cuda
