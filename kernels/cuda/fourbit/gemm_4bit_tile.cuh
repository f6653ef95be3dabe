// The fused 4-bit product for 17-64 tokens, with the activations staged once a CTA: out[M, N] =
// A[M, K] @ dequant(W)[N, K]^T (+ bias), fp16 and bf16, on the checkpoint's own layout.
//
// gemm_4bit_mma.cuh splits a slab's K over its warps, so that every warp reads its own part of
// A through the L2: at 64 tokens each 16 or 32 rows of W read all of A (8192^2: 512 MiB of
// activations for 32 MiB of weights), and the L2, not the weights, sets the time. Here the
// WARPS warps of a CTA take different rows (16 RT each: 128 rows at 8 warps of RT 1) over the
// same K, and the CTA copies A into shared memory once for all of them, a stage of SUBS
// sub-chunks of 64 k at a time by cp.async, double-buffered: the next stage's activations and
// weights are in flight while the warps compute on the current one. A slab's K is split over
// a thread-block cluster (sm_90) where that fills the GPU better, the ranks' sums added
// through distributed shared memory in rank order (deterministic).
//
// Fragments, lookups and scales are gemm_4bit_mma's (its header says how a lane's 16 k map
// to the mma's k slots): the byte table in shared memory, or (REG) byte permutes of the code
// planes in registers (code_planes.cuh: no lookups, whose shared-memory reads beside the
// activations' may bound this kernel), and each fragment register multiplied by its block's
// scale rounded to the dtype (any blocksize), so a weight is rounded as dequantize_4bit writes it.
#pragma once
#include <cstdint>
#include <cooperative_groups.h>

#include "gemm_4bit_mma.cuh"

namespace bnb::cuda {

constexpr int kTileMaxWarps = 8;  // most warps of a CTA, each on its own rows
constexpr int kTileMaxSplit = 8;  // most CTAs a cluster (the portable limit)

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int PENDING> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(PENDING) : "memory");
}

// Shared memory a CTA asks for at launch: two stages of M padded rows of A, or, after the K
// loop, the sums of its rows (whichever is larger).
template <int SUBS> __host__ __device__ int gemm_4bit_tile_stage_vecs(int M) { return M * (SUBS * kMmaSubK / 8 + 1); }
template <int MT, int RT, int WARPS, int SUBS> int gemm_4bit_tile_smem(int M) {
  const int stages = 2 * gemm_4bit_tile_stage_vecs<SUBS>(M) * 16, sums = 16 * RT * WARPS * (MT * 8 + 1) * 4;
  return stages > sums ? stages : sums;
}

// MT token tiles of 8 (M <= 8 MT); RT row tiles of 16 a warp; WARPS warps; SUBS sub-chunks a
// stage; REG: code pairs from the planes. Grid: (ranks, slabs), ranks the CTAs of a cluster
// along x (1: no cluster) that split the slab's K.
template <typename T, int MT, int RT, int WARPS, int SUBS, bool REG = false>
__global__ void __launch_bounds__(WARPS * 32)
gemm_4bit_tile_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                      const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M, int64_t N,
                      int64_t K, int log2_blocksize) {
  static_assert(WARPS <= kTileMaxWarps, "CTA size");
  constexpr int kTokens = MT * 8, kRows = 16 * RT * WARPS;
  constexpr int kRowVecs = SUBS * kMmaSubK / 8 + 1;  // uint4 a padded row of a stage
  extern __shared__ uint4 s_dyn[];
  __shared__ __align__(16) uint32_t s_pair[256 * 16];
  __shared__ float s_ncode[256];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t slab0 = int64_t(blockIdx.y) * kRows;
  const int64_t n0 = slab0 + warp * 16 * RT;
  const uint8_t* w_row[RT][2];
  int first[RT][2];  // the lane's scale index of the row, in units of 16 weights (as gemm_4bit_mma's)
#pragma unroll
  for (int r = 0; r < RT; ++r) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = min(n0 + 16 * r + 8 * h + g, N - 1);
      w_row[r][h] = B + row * (K / 2) + 8 * t;
      first[r][h] = int((row * K) >> 4) + t;
    }
  }
  // This CTA's sub-chunks [sub_begin, sub_end): whole stages but the row's last.
  const int ranks = int(gridDim.x), rank = int(blockIdx.x);
  const int subs_all = int(K / kMmaSubK);
  const int per = ((subs_all + ranks - 1) / ranks + SUBS - 1) / SUBS * SUBS;
  const int sub_begin = min(subs_all, rank * per), sub_end = min(subs_all, sub_begin + per);
  const int stages = (sub_end - sub_begin + SUBS - 1) / SUBS;
  const int stage_vecs = gemm_4bit_tile_stage_vecs<SUBS>(M);
  const uint32_t s_base = uint32_t(__cvta_generic_to_shared(s_dyn));

  // Stage j's activations into buffer j & 1 (M rows; the tokens past M read row M - 1).
  auto issue_stage = [&](int j) {
    const int s0 = sub_begin + j * SUBS, n = min(SUBS, sub_end - s0);
    const int vecs_row = n * (kMmaSubK / 8), vecs = M * vecs_row;
    const uint32_t dst0 = s_base + uint32_t((j & 1) * stage_vecs) * 16u;
    for (int i = threadIdx.x; i < vecs; i += blockDim.x) {
      const int tok = i / vecs_row, v = i - tok * vecs_row;
      cp_async16(dst0 + uint32_t(tok * kRowVecs + v) * 16u, A + int64_t(tok) * K + int64_t(s0) * kMmaSubK + 8 * v);
    }
    cp_async_commit();
  };
  // Stage j's weights and scales for the warp's rows; sub-chunks past the end are not loaded.
  auto load_weights = [&](uint2 (&w)[SUBS][RT][2], ScaleParts (&sp)[SUBS][RT][2], int j) {
    const int s0 = sub_begin + j * SUBS;
#pragma unroll
    for (int u = 0; u < SUBS; ++u) {
#pragma unroll
      for (int r = 0; r < RT; ++r) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if (s0 + u < sub_end) {
            w[u][r][h] = load_weight_stream8(w_row[r][h] + int64_t(s0 + u) * (kMmaSubK / 2));
            sp[u][r][h] = load_scale_parts(scales, (first[r][h] + (s0 + u) * (kMmaSubK / 16)) >> (log2_blocksize - 4));
          } else {
            sp[u][r][h] = {0.f, 0u};
          }
        }
      }
    }
  };

  uint2 w[SUBS][RT][2];
  ScaleParts sp[SUBS][RT][2];
  if (stages > 0) {
    issue_stage(0);
    load_weights(w, sp, 0);
  }
  fill_code_pairs<T, 16, !REG>(s_pair, s_ncode, code, scales);
  const CodePlanes planes = REG ? code_planes<T>(code) : CodePlanes{};
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane & 15);
  int a_at[MT];  // the lane's first activation of each token tile in a stage, uint4 index
#pragma unroll
  for (int nt = 0; nt < MT; ++nt) a_at[nt] = min(nt * 8 + g, M - 1) * kRowVecs + 2 * t;

  float acc[RT][MT][4] = {};
  for (int j = 0; j < stages; ++j) {
    uint2 wn[SUBS][RT][2];
    ScaleParts spn[SUBS][RT][2];
    const bool more = j + 1 < stages;
    if (more) {
      issue_stage(j + 1);
      load_weights(wn, spn, j + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // stage j (and, the first time, the tables) visible to every warp
    const uint4* stage = s_dyn + (j & 1) * stage_vecs;
    const int s0 = sub_begin + j * SUBS;
#pragma unroll
    for (int u = 0; u < SUBS; ++u) {
      if (s0 + u >= sub_end) break;
      uint32_t frag[RT][4][4];
#pragma unroll
      for (int r = 0; r < RT; ++r) {
        const uint2 lo = w[u][r][0], hi = w[u][r][1];
        weight_fragments<REG ? 2 : 0>(frag[r], table, planes, lo, hi);
        scale_fragments<T>(frag[r], lane_scale(scale_of(scales, sp[u][r][0], s_ncode, offset), lo),
                           lane_scale(scale_of(scales, sp[u][r][1], s_ncode, offset), hi));
      }
#pragma unroll
      for (int nt = 0; nt < MT; ++nt) {
        uint32_t a[8];
#pragma unroll
        for (int q = 0; q < 2; ++q) {
          const uint4 v = stage[a_at[nt] + u * (kMmaSubK / 8) + q];
          a[4 * q] = v.x, a[4 * q + 1] = v.y, a[4 * q + 2] = v.z, a[4 * q + 3] = v.w;
        }
#pragma unroll
        for (int r = 0; r < RT; ++r)
#pragma unroll
          for (int s = 0; s < 4; ++s) MmaOp<T>::mma(acc[r][nt], frag[r][s], a[2 * s], a[2 * s + 1]);
      }
    }
    __syncthreads();  // every warp is done with buffer j & 1 before stage j + 2 fills it
    if (more) {
#pragma unroll
      for (int u = 0; u < SUBS; ++u)
#pragma unroll
        for (int r = 0; r < RT; ++r)
#pragma unroll
          for (int h = 0; h < 2; ++h) w[u][r][h] = wn[u][r][h], sp[u][r][h] = spn[u][r][h];
    }
  }

  // The CTA's sums, [kRows][kTokens + 1] in the stages' place (every stage is consumed: the
  // loop's last barrier; with no stage, the buffers were never used). c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8.
  using SumRows = float[kTokens + 1];
  SumRows* const s_sum = reinterpret_cast<SumRows*>(s_dyn);
#pragma unroll
  for (int r = 0; r < RT; ++r) {
    const int row = warp * 16 * RT + 16 * r + g;
#pragma unroll
    for (int nt = 0; nt < MT; ++nt) {
      s_sum[row][nt * 8 + 2 * t] = acc[r][nt][0];
      s_sum[row][nt * 8 + 2 * t + 1] = acc[r][nt][1];
      s_sum[row + 8][nt * 8 + 2 * t] = acc[r][nt][2];
      s_sum[row + 8][nt * 8 + 2 * t + 1] = acc[r][nt][3];
    }
  }
  if (ranks == 1) {
    __syncthreads();
    for (int i = threadIdx.x; i < kRows * kTokens; i += blockDim.x) {
      const int row = i % kRows, tok = i / kRows;  // consecutive features a token: wide stores
      const int64_t n = slab0 + row;
      if (n >= N || tok >= M) continue;
      float sum = s_sum[row][tok];
      if (bias != nullptr) sum += to_float(bias[n]);
      out[int64_t(tok) * N + n] = from_float<T>(sum);
    }
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // release / acquire: every rank's sums are visible
  const int share = (kRows * kTokens + ranks - 1) / ranks;
  const int stop = min(kRows * kTokens, (rank + 1) * share);
  for (int i = rank * share + int(threadIdx.x); i < stop; i += int(blockDim.x)) {
    const int row = i % kRows, tok = i / kRows;
    const int64_t n = slab0 + row;
    if (n >= N || tok >= M) continue;
    float sum = 0.f;
    for (int q = 0; q < ranks; ++q) sum += cluster.map_shared_rank(&s_sum[0][0], q)[row * (kTokens + 1) + tok];
    if (bias != nullptr) sum += to_float(bias[n]);
    out[int64_t(tok) * N + n] = from_float<T>(sum);
  }
  cluster.sync();  // no CTA leaves while another may still read its shared memory
#endif
}

// The CTAs of a cluster each slab's K is split over: of 1..kTileMaxSplit (every rank at least
// one stage of `subs_a_stage` sub-chunks, as the kernel deals them), the one whose CTAs best
// fill whole waves of `per_sm` CTAs an SM; the fewest of equals.
inline int gemm_4bit_tile_split(int64_t slabs, int subs, int subs_a_stage, int per_sm) {
  const int64_t slots = int64_t(device_caps().sm_count) * (per_sm > 0 ? per_sm : 1);
  const int most = device_caps().clusters() ? kTileMaxSplit : 1;
  int best = 1;
  double best_fill = 0.0;
  for (int s = 1; s <= most; ++s) {
    const int per = ((subs + s - 1) / s + subs_a_stage - 1) / subs_a_stage * subs_a_stage;
    if (s > 1 && (s - 1) * per >= subs) continue;  // the last rank would have nothing
    const int64_t ctas = slabs * s, waves = (ctas + slots - 1) / slots;
    const double fill = double(ctas) / double(waves * slots);
    if (fill > best_fill + 1e-9) best = s, best_fill = fill;
  }
  return best;
}

// One tiling over the N / (16 RT WARPS) slabs; `split` 0: the rule above, else that many CTAs
// a cluster.
template <typename T, int MT, int RT, int WARPS, int SUBS, bool REG = false>
cudaError_t launch_gemm_4bit_tile(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                                  const T* bias, T* out, int64_t M, int64_t N, int64_t K, int log2_blocksize,
                                  cudaStream_t stream, int split = 0) {
  if (M < 1 || M > 8 * MT || split > kTileMaxSplit) return cudaErrorInvalidValue;
  const auto kernel = gemm_4bit_tile_kernel<T, MT, RT, WARPS, SUBS, REG>;
  const int smem = gemm_4bit_tile_smem<MT, RT, WARPS, SUBS>(int(M)), threads = WARPS * 32;
  cudaError_t err = allow_dynamic_smem((const void*)kernel, smem);
  if (err != cudaSuccess) return err;
  const int64_t slabs = (N + 16 * RT * WARPS - 1) / (16 * RT * WARPS);
  if (slabs > 65535) return cudaErrorInvalidValue;
  if (split <= 0) {
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, size_t(smem));
    if (err != cudaSuccess) return err;
    split = gemm_4bit_tile_split(slabs, int(K / kMmaSubK), SUBS, per_sm);
    if (split > 1 && max_active_clusters((const void*)kernel, threads, split, smem) <= 0) split = 1;
  } else if (split > 1 && (!device_caps().clusters() ||
                            max_active_clusters((const void*)kernel, threads, split, smem) <= 0)) {
    return cudaErrorInvalidConfiguration;  // a cluster asked for that this device cannot run
  }
  const dim3 grid{unsigned(split), unsigned(slabs)};
  if (split > 1)
    return launch_in_clusters(kernel, split, grid, threads, size_t(smem), stream, A, B, code, scales, bias, out,
                              int(M), N, K, log2_blocksize);
  kernel<<<grid, threads, smem, stream>>>(A, B, code, scales, bias, out, int(M), N, K, log2_blocksize);
  return cudaGetLastError();
}

}  // namespace bnb::cuda
