// The fused 4-bit product for 17-64 tokens on tensor cores, out[M, N] = A[M, K] @ dequant(W)[N, K]^T
// (+ bias), with the activations and the weight staged through shared memory.
//
// gemm_4bit_mma.cuh gives each CTA 32 rows with its K split over its four warps, and each warp
// loads its activation fragments through the L1 just before its mma: at 32-64 tokens every CTA
// reads all of A from the L2 (4096^2 at 64 tokens: 128 CTAs x 512 KiB for 8 MiB of weights), and
// with two CTAs an SM the warps mostly wait on those loads. Here a CTA takes 128 rows (four warps
// of 32, the same fragments, lookups and scaling as gemm_4bit_mma) over the same K: one stage of
// 128 k of A (all tokens) and of the 128 rows' packed weight is copied to shared memory by
// cp.async, STAGES - 1 stages ahead of the one computed, and all four warps read A's fragments
// from there. A is read from the L2 a quarter as often, and the loads in flight an SM are the
// stages ahead (two CTAs: about 50-100 KiB), not a round of registers.
//
// Rows of 128 make few CTAs (4096 rows: 32), so each slab's K is split over a thread-block
// cluster of S CTAs (sm_90), whose float32 sums meet through distributed shared memory in rank
// order (deterministic, as in gemm_4bit_mma's SPLIT).
//
// Not yet taken by the library's dispatch (gemv_4bit.cuh): benchmarks/ab_4bit_staged.cu measures
// it against the library's products and a float64 reference first (docs/4bit.md).
//
// Shared memory a stage: A as [tokens][128 k] bf16 rows padded by 16 bytes (a lane group's
// fragment reads meet no bank twice), W as [128 rows][64 bytes] with the two 32-byte halves of a
// row swapped on every other pair of rows (a half-warp's 8-byte reads of four rows fall in 32
// distinct banks).
#pragma once
#include <cstdint>
#include <cooperative_groups.h>

#include "gemm_4bit_mma.cuh"

namespace bnb::cuda {

constexpr int kStagedWarps = 4;               // warps of a CTA, each its own 32 rows
constexpr int kStagedRows = kStagedWarps * 32;  // rows of a CTA (two row tiles of 16 a warp)
constexpr int kStageK = 128;                  // k of a stage: two sub-chunks of kMmaSubK
constexpr int kStageARow = 2 * kStageK + 16;  // bytes of a token's row of a stage's A (padded)
constexpr int kStageWRow = kStageK / 2;       // bytes of a weight row of a stage

// Bytes of a stage's shared memory for `tokens` tokens.
constexpr int staged_stage_bytes(int tokens) { return tokens * kStageARow + kStagedRows * kStageWRow; }

// 16 bytes from global to shared memory, not through the L1; `bytes` 0 fills zeros (a chunk
// past the end of K or a token past M).
// WIDE: the L2 fetches the whole 256-byte segment (a weight row's next stages, read once).
template <bool WIDE = false>
__device__ __forceinline__ void copy16_async(uint32_t dst, const void* src, int bytes) {
  if constexpr (WIDE)
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
  else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ uint2 load_shared8(uint32_t at) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "r"(at));
  return v;
}
__device__ __forceinline__ uint4 load_shared16(uint32_t at) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(at));
  return v;
}
// Where 16-byte chunk c (0..3) of weight row `row` of a stage lies (the swap of halves above).
__device__ __forceinline__ int staged_w_offset(int row, int c) { return row * kStageWRow + 16 * (c ^ (row & 2)); }

// MT token tiles of 8 (M <= 8 MT); STAGES stages of shared memory; POST as in gemm_4bit_mma
// (blocks of 64 or more: scales applied to each sub-chunk's partial sums); SPLIT: slab blockIdx.y
// shared by the cluster of gridDim.x CTAs along x, rank blockIdx.x its slice of K.
template <typename T, int MT, int STAGES, bool POST, bool SPLIT>
__global__ void __launch_bounds__(kStagedWarps * 32)
gemm_4bit_staged_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                        const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M, int64_t N,
                        int64_t K, int log2_blocksize) {
  static_assert(STAGES >= 2, "one stage computed while the next arrives");
  constexpr int kTokens = MT * 8, kRT = 2, kSubs = kStageK / kMmaSubK;
  constexpr int kStageBytes = staged_stage_bytes(kTokens), kABytes = kTokens * kStageARow;
  static_assert(kStagedRows * (kTokens + 1) * 4 <= STAGES * kStageBytes, "the sums fit the stages' memory");
  static_assert(kABytes % 64 == 0, "a weight row's halves swap by an xor of 32 on its offset");
  extern __shared__ __align__(16) uint8_t s_stage[];  // [STAGES][A | W]; after the loop the sums
  __shared__ __align__(16) uint32_t s_pair[256 * 16];
  __shared__ float s_ncode[256];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t n0 = int64_t(SPLIT ? blockIdx.y : blockIdx.x) * kStagedRows;
  // This CTA's sub-chunks [sub_begin, sub_end) (K < 2^31: the launcher's rule).
  const int subs = int(K / kMmaSubK);
  int sub_begin = 0, sub_end = subs;
  if constexpr (SPLIT) {  // as even as whole sub-chunks allow
    sub_begin = int(int64_t(subs) * blockIdx.x / gridDim.x);
    sub_end = int(int64_t(subs) * (blockIdx.x + 1) / gridDim.x);
  }
  const int stages = (sub_end - sub_begin + kSubs - 1) / kSubs;
  const uint32_t smem = uint32_t(__cvta_generic_to_shared(s_stage));

  // Stage st's copies: A's [tokens][128 k] and the rows' [128][64 bytes], zeros past K's end
  // (and for tokens past M); rows past N repeat the last one (their sums are never written).
  auto issue_stage = [&](int st) {
    const uint32_t base = smem + uint32_t((st % STAGES) * kStageBytes);
    const int64_t k0 = int64_t(sub_begin + st * kSubs) * kMmaSubK, k_end = int64_t(sub_end) * kMmaSubK;
#pragma unroll
    for (int j = 0; j < kTokens * 16 / (kStagedWarps * 32); ++j) {
      const int i = int(threadIdx.x) + j * kStagedWarps * 32, tok = i / 16, c = i % 16;
      const int64_t k = k0 + 8 * c;
      const bool ok = tok < M && k < k_end;
      copy16_async(base + uint32_t(tok * kStageARow + 16 * c), ok ? A + int64_t(tok) * K + k : A, ok ? 16 : 0);
    }
#pragma unroll
    for (int j = 0; j < kStagedRows * 4 / (kStagedWarps * 32); ++j) {
      const int i = int(threadIdx.x) + j * kStagedWarps * 32, row = i / 4, c = i % 4;
      const int64_t r = min(n0 + row, N - 1);
      const bool ok = k0 + 32 * c < k_end;
      copy16_async<true>(base + uint32_t(kABytes + staged_w_offset(row, c)), ok ? B + r * (K / 2) + k0 / 2 + 16 * c : B,
                   ok ? 16 : 0);
    }
  };
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < stages) issue_stage(st);
    copy_async_commit();  // (an empty group past the end keeps the waits' count)
  }

  // Where the lane's scale of row h * 8 + g of tile r is read, in units of 16 weights, from the
  // tensor's start; its block is that >> (log2_blocksize - 4).
  int first[kRT][2];
#pragma unroll
  for (int r = 0; r < kRT; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = min(n0 + 32 * warp + 16 * r + 8 * h + g, N - 1);
      first[r][h] = int((row * K) >> 4) + (POST ? 0 : t);
    }
  auto load_scales = [&](ScaleParts (&sp)[kSubs][kRT][2], int st) {
#pragma unroll
    for (int u = 0; u < kSubs; ++u) {
      const int c = sub_begin + st * kSubs + u;
#pragma unroll
      for (int r = 0; r < kRT; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          sp[u][r][h] = c < sub_end ? load_scale_parts(scales, (first[r][h] + c * (kMmaSubK / 16)) >> (log2_blocksize - 4))
                                    : ScaleParts{0.f, 0u};  // never used: a code inside the table
    }
  };
  ScaleParts sp[kSubs][kRT][2];
  if (stages > 0) load_scales(sp, 0);

  fill_code_pairs<T, 16>(s_pair, s_ncode, code, scales);
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  // This lane's copy of the byte table (entry b of copy c at word 16 b + c).
  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane & 15);
  // The lane's reads within a stage: its rows' 8 bytes of sub-chunk u at chunk 2u + t / 2, byte
  // 8 (t & 1); its tokens' 32 bytes of sub-chunk u at byte 128 u + 32 t.
  int w_at[kRT][2];
#pragma unroll
  for (int r = 0; r < kRT; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) w_at[r][h] = kABytes + staged_w_offset(32 * warp + 16 * r + 8 * h + g, t >> 1) + 8 * (t & 1);
  const int a_at = g * kStageARow + 32 * t;

  float acc[kRT][MT][4] = {};
  for (int st = 0; st < stages; ++st) {
    copy_async_wait<STAGES - 2>();
    __syncthreads();  // stage st is in for every thread; every warp is done with stage st - 1
    if (st + STAGES - 1 < stages) issue_stage(st + STAGES - 1);  // into stage st - 1's place
    copy_async_commit();
    ScaleParts spn[kSubs][kRT][2];
    if (st + 1 < stages) load_scales(spn, st + 1);

    const uint32_t base = smem + uint32_t((st % STAGES) * kStageBytes);
#pragma unroll
    for (int u = 0; u < kSubs; ++u) {
      if (sub_begin + st * kSubs + u >= sub_end) break;
      uint2 w[kRT][2];
      float m[kRT][2];
      bool marked = false;
#pragma unroll
      for (int r = 0; r < kRT; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Chunk 2u + t / 2 is chunk t / 2 with bit 1 set for u = 1: the swap is an xor of 32 u.
          w[r][h] = load_shared8(base + uint32_t(w_at[r][h] ^ (32 * u)));
          m[r][h] = scale_of(scales, sp[u][r][h], s_ncode, offset);
          marked |= is_marked(m[r][h]);
        }
      if constexpr (POST) {
        if (__any_sync(0xffffffffu, marked)) {  // a block that held NaN or Inf (rare)
#pragma unroll
          for (int r = 0; r < kRT; ++r)
#pragma unroll
            for (int h = 0; h < 2; ++h) m[r][h] = group_scale_or_nan(m[r][h], w[r][h], lane);
        }
      }
      uint32_t frag[kRT][4][4];
#pragma unroll
      for (int r = 0; r < kRT; ++r) {
        weight_fragments<0>(frag[r], table, CodePlanes{}, w[r][0], w[r][1]);
        if constexpr (!POST) scale_fragments<T>(frag[r], lane_scale(m[r][0], w[r][0]), lane_scale(m[r][1], w[r][1]));
      }
#pragma unroll
      for (int nt = 0; nt < MT; ++nt) {
        if (nt * 8 >= M) break;  // a tile of tokens past M only (17 or 33 tokens: most of the last)
        uint32_t a[8];
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const uint4 v = load_shared16(base + uint32_t(a_at + nt * 8 * kStageARow + 128 * u + 16 * q));
          a[4 * q] = v.x, a[4 * q + 1] = v.y, a[4 * q + 2] = v.z, a[4 * q + 3] = v.w;
        }
#pragma unroll
        for (int r = 0; r < kRT; ++r) {
          if constexpr (POST) {
            float part[4] = {};
#pragma unroll
            for (int s = 0; s < 4; ++s) MmaOp<T>::mma(part, frag[r][s], a[2 * s], a[2 * s + 1]);
            acc[r][nt][0] = fmaf(m[r][0], part[0], acc[r][nt][0]);
            acc[r][nt][1] = fmaf(m[r][0], part[1], acc[r][nt][1]);
            acc[r][nt][2] = fmaf(m[r][1], part[2], acc[r][nt][2]);
            acc[r][nt][3] = fmaf(m[r][1], part[3], acc[r][nt][3]);
          } else {
#pragma unroll
            for (int s = 0; s < 4; ++s) MmaOp<T>::mma(acc[r][nt], frag[r][s], a[2 * s], a[2 * s + 1]);
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kSubs; ++u)
#pragma unroll
      for (int r = 0; r < kRT; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) sp[u][r][h] = spn[u][r][h];
  }

  // The sums take the stages' place: [rows][tokens + 1] float32 (c0, c1: row g, tokens 2t and
  // 2t + 1 of the tile; c2, c3: row g + 8).
  copy_async_wait<0>();
  __syncthreads();
  float (*s_sum)[kTokens + 1] = reinterpret_cast<float (*)[kTokens + 1]>(s_stage);
#pragma unroll
  for (int r = 0; r < kRT; ++r) {
    const int row = 32 * warp + 16 * r + g;
#pragma unroll
    for (int nt = 0; nt < MT; ++nt) {
      s_sum[row][nt * 8 + 2 * t] = acc[r][nt][0];
      s_sum[row][nt * 8 + 2 * t + 1] = acc[r][nt][1];
      s_sum[row + 8][nt * 8 + 2 * t] = acc[r][nt][2];
      s_sum[row + 8][nt * 8 + 2 * t + 1] = acc[r][nt][3];
    }
  }
  int ranks = 1, rank = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  if constexpr (SPLIT) {
    ranks = int(gridDim.x), rank = int(blockIdx.x);
    cg::this_cluster().sync();  // release / acquire: every rank's sums are visible
  } else {
    __syncthreads();
  }
#else
  __syncthreads();
#endif
  // Each rank writes its share of the slab's outputs (of the M tokens), summed over the ranks in
  // rank order; consecutive threads take consecutive features of a token (wide stores).
  const int outputs = kStagedRows * min(M, kTokens), share = (outputs + ranks - 1) / ranks;
  const int stop = min(outputs, (rank + 1) * share);
  for (int i = rank * share + int(threadIdx.x); i < stop; i += int(blockDim.x)) {
    const int row = i % kStagedRows, tok = i / kStagedRows;
    const int64_t n = n0 + row;
    if (n >= N || tok >= M) continue;
    float sum = 0.f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (SPLIT) {
      for (int q = 0; q < ranks; ++q) sum += cg::this_cluster().map_shared_rank(&s_sum[0][0], q)[row * (kTokens + 1) + tok];
    } else {
      sum = s_sum[row][tok];
    }
#else
    sum = s_sum[row][tok];
#endif
    if (bias != nullptr) sum += to_float(bias[n]);
    out[int64_t(tok) * N + n] = from_float<T>(sum);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (SPLIT) cg::this_cluster().sync();  // no CTA leaves while another may read its sums
#endif
}

// Clusters of how many CTAs split each slab's K: the most of 1, 2, 4 and 8 for which every
// slab's cluster is resident at once (one wave) and each CTA keeps two or more stages.
inline int gemm_4bit_staged_split(const void* split, int smem, int64_t slabs, int64_t K) {
  if (!device_caps().clusters()) return 1;
  int s = 1;
  for (int c = 2; c <= 8; c *= 2) {
    if (K / (int64_t(c) * kStageK) < 2 || max_active_clusters(split, kStagedWarps * 32, c, smem) < slabs) break;
    s = c;
  }
  return s;
}

// One kernel shape: its split by gemm_4bit_staged_split, or `split` where that is positive
// (the A/B harness's sweep).
template <typename T, int MT, int STAGES, bool POST>
cudaError_t launch_gemm_4bit_staged_as(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                       const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                       int split, cudaStream_t stream) {
  const int64_t slabs = (N + kStagedRows - 1) / kStagedRows;
  if (slabs > 65535) return cudaErrorInvalidValue;  // grid.y of the split launch
  constexpr int smem = STAGES * staged_stage_bytes(MT * 8);
  const auto plain = gemm_4bit_staged_kernel<T, MT, STAGES, POST, false>;
  const auto clustered = gemm_4bit_staged_kernel<T, MT, STAGES, POST, true>;
  cudaError_t err = allow_dynamic_smem((const void*)clustered, smem);
  if (err != cudaSuccess) return err;
  if (split <= 0) split = gemm_4bit_staged_split((const void*)clustered, smem, slabs, K);
  if (split > 1)
    return launch_in_clusters(clustered, split, dim3(unsigned(split), unsigned(slabs)), kStagedWarps * 32,
                              size_t(smem), stream, A, B, code, scales, bias, out, int(M), N, K, log2_blocksize);
  if ((err = allow_dynamic_smem((const void*)plain, smem)) != cudaSuccess) return err;
  plain<<<unsigned(slabs), kStagedWarps * 32, smem, stream>>>(A, B, code, scales, bias, out, int(M), N, K,
                                                              log2_blocksize);
  return cudaGetLastError();
}

// Whether the staged kernel takes this product: 17-64 tokens on a GPU with clusters (without
// them 128 rows a CTA leave most SMs idle), in the tensor-core kernels' bounds.
template <typename T> bool gemm_4bit_staged_fits(const T* A, const uint8_t* B, int64_t M, int64_t N, int64_t K) {
  return M > 16 && gemm_4bit_mma_fits(A, B, M, N, K) && (N + kStagedRows - 1) / kStagedRows <= 65535 &&
         device_caps().clusters();
}

// 17-32 tokens: four token tiles, four stages; 33-64: eight, three stages (two CTAs an SM).
// POST for blocks of 64 or more (each sub-chunk in one block).
template <typename T>
cudaError_t launch_gemm_4bit_staged(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                    const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                    cudaStream_t stream) {
  const bool post = log2_blocksize >= 6;
  if (M <= 32)
    return post ? launch_gemm_4bit_staged_as<T, 4, 4, true>(A, B, code, scales, bias, out, M, N, K, log2_blocksize, 0, stream)
                : launch_gemm_4bit_staged_as<T, 4, 4, false>(A, B, code, scales, bias, out, M, N, K, log2_blocksize, 0, stream);
  return post ? launch_gemm_4bit_staged_as<T, 8, 3, true>(A, B, code, scales, bias, out, M, N, K, log2_blocksize, 0, stream)
              : launch_gemm_4bit_staged_as<T, 8, 3, false>(A, B, code, scales, bias, out, M, N, K, log2_blocksize, 0, stream);
}

}  // namespace bnb::cuda
