// The cluster kernel of int8_weight_linear (16-bit activations on sm_90) and its launcher;
// instantiated once per dtype (weight_linear_cluster_f16.cu, weight_linear_cluster_bf16.cu).
//
// What the 16-bit decode path runs on sm_90 and later: one launch, no workspace, the weight
// read at close to the copy bandwidth.
//
// Why: the split-K kernel writes float32 partial sums for every slice (8 MB for
// 16 x 8192 -> 8192, an eighth of the weight's bytes) and needs a second launch to add them;
// each of its blocks also stages as many bytes of A from L2 as it reads of the weight. Here
// the C blocks of a thread-block cluster (C <= 8) take the C slices of K of the same weight
// rows and add their partial sums through distributed shared memory, in rank order
// (deterministic): no global workspace, no second launch. Each block keeps its slice of A
// (all rows of the input, at most 32) in shared memory for its whole life and walks over
// weight tiles of 64 rows (16 a warp): while a tile's bytes are used, the next tile's are
// already requested into the same registers (each register is reloaded right after its
// last use), so the weight stream never stops for the reductions.
//
// Roles in the mma are swapped with respect to the split-K kernel: the weight is the 16 x 16
// operand (a warp owns 16 rows; lane (g, t) streams rows g and g + 8, 16 bytes at
// k = 64 j + 16 t of each 512-wide chunk), the activations the 16 x 8 one (8 tokens per
// mma). An mma then covers 256 weight bytes instead of 128, which halves the activation
// reads from shared memory per weight byte, and 8 tokens or fewer need one mma per step.
// The k order inside an mma is free: the lane's byte 4 s + i of its 16 feeds k position
// 2 t + (i & 1) + 8 (i >> 1) of step s, with the activations read at the same k (one 8-byte
// shared load per token group), so no byte is shuffled between lanes.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/device_caps.cuh"
#include "../common/launch.cuh"
#include "quantize_math.cuh"
#include "weight_linear.cuh"
#include "weight_linear_mma.cuh"

namespace bnb::cuda {

constexpr int kClusterWarps = 4;       // per block (8 measured slower: 69-71% of copy against 71-74%)
constexpr int kClusterMaxSlices = 8;   // portable cluster size
constexpr int kClusterChunk = 512;     // K columns per register load round (8 x 16 bytes a row)
constexpr int kClusterMaxTokens = 32;  // rows of A kept in shared memory

// Shared-memory layout of the activations: row r of the slice at r * (ks + 4) halves. The
// 8-byte pad puts the 8-byte reads of a half-warp (4 rows x 4 lanes) on 32 distinct banks.
__host__ __device__ constexpr int64_t cluster_a_stride(int64_t ks) { return ks + 4; }
// Partial sums of one tile: [tokens][rows + 4] floats (the pad spreads the stores of a
// warp's accumulators over the banks), two buffers.
__host__ __device__ constexpr int cluster_red_stride() { return kClusterWarps * 16 + 4; }

template <int kTokTiles, typename T>
__host__ __device__ constexpr int64_t cluster_smem_bytes(int64_t ks) {
  return int64_t(8 * kTokTiles) * cluster_a_stride(ks) * int64_t(sizeof(T)) +
         2 * int64_t(8 * kTokTiles) * cluster_red_stride() * int64_t(sizeof(float));
}

template <typename T, int kTokTiles>
// About 160 registers a thread: three blocks an SM.
__global__ void __launch_bounds__(kClusterWarps * 32, 1)
weight_linear_cluster_kernel(const T* __restrict__ A, const int8_t* __restrict__ CB, const float* __restrict__ SCB,
                             const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t ks, int64_t tiles,
                             T* __restrict__ out, bool weights_aligned, bool a_aligned) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int kThreads = kClusterWarps * 32;
  constexpr int kRows = kClusterWarps * 16;  // weight rows per tile
  constexpr int kTok = 8 * kTokTiles;        // activation rows staged (M <= kTok)
  constexpr int kRed = cluster_red_stride();
  extern __shared__ __align__(16) unsigned char cluster_smem[];
  const int64_t a_stride = cluster_a_stride(ks);
  T* a_s = reinterpret_cast<T*>(cluster_smem);
  float* red = reinterpret_cast<float*>(cluster_smem + kTok * a_stride * int64_t(sizeof(T)));

  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());
  const int slices = int(cluster.num_blocks());
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t k_begin = int64_t(rank) * ks;
  const int chunks = int(ks / kClusterChunk);
  const int64_t first = blockIdx.y, tile_step = gridDim.y;
  if (first >= tiles) return;  // the whole cluster shares blockIdx.y: all of it leaves
  const int64_t my_tiles = (tiles - first + tile_step - 1) / tile_step;
  const int64_t steps = my_tiles * chunks;

  // Step s = (tile first + (s / chunks) * tile_step, chunk s % chunks).
  uint4 w[2][8];
  {
    const int64_t row = first * kRows + warp * 16 + g;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      w[0][j] = load_weight_cluster(CB, row, N, K, k_begin + 64 * j + 16 * t, weights_aligned);
      w[1][j] = load_weight_cluster(CB, row + 8, N, K, k_begin + 64 * j + 16 * t, weights_aligned);
    }
  }

  stage_activations(a_s, A, M, K, k_begin, int(ks), a_stride, kTok, a_aligned);
  __syncthreads();

  float acc[kTokTiles][4];
#pragma unroll
  for (int q = 0; q < kTokTiles; ++q) acc[q][0] = acc[q][1] = acc[q][2] = acc[q][3] = 0.f;
  const int64_t valid = M * kRows;  // outputs of a tile (tokens x rows), split between the ranks
  const int64_t share = (valid + slices - 1) / slices;
  int parity = 0;

  // Step s works on chunk s % chunks of tile first + (s / chunks) * tile_step, both kept
  // as counters (a 64-bit division per step costs as much as a step's conversions).
  int chunk = -1;
  int64_t tile = first - tile_step;
  for (int64_t s = 0; s < steps; ++s) {
    if (++chunk == chunks) chunk = 0;
    if (chunk == 0) tile += tile_step;
    const bool has_next = s + 1 < steps;
    const int next_chunk = chunk + 1 == chunks ? 0 : chunk + 1;
    const int64_t next_row = (chunk + 1 == chunks ? tile + tile_step : tile) * kRows + warp * 16 + g;
    const int64_t next_k = k_begin + int64_t(next_chunk) * kClusterChunk + 16 * t;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const uint32_t top[4] = {w[0][j].x, w[0][j].y, w[0][j].z, w[0][j].w};
      const uint32_t bottom[4] = {w[1][j].x, w[1][j].y, w[1][j].z, w[1][j].w};
      if (has_next) {  // this register's last use is above: refill it with the next step's bytes
        w[0][j] = load_weight_cluster(CB, next_row, N, K, next_k + 64 * j, weights_aligned);
        w[1][j] = load_weight_cluster(CB, next_row + 8, N, K, next_k + 64 * j, weights_aligned);
      }
#pragma unroll
      for (int st = 0; st < 4; ++st) {
        uint32_t a[4];
        MmaOp<T>::convert(top[st], a[0], a[2]);     // row g: k (2t, 2t+1), (2t+8, 2t+9)
        MmaOp<T>::convert(bottom[st], a[1], a[3]);  // row g + 8
        const int64_t kk = int64_t(chunk) * kClusterChunk + 64 * j + 16 * t + 4 * st;
#pragma unroll
        for (int q = 0; q < kTokTiles; ++q) {
          const uint2 b = *reinterpret_cast<const uint2*>(a_s + (8 * q + g) * a_stride + kk);
          MmaOp<T>::mma(acc[q], a, b.x, b.y);
        }
      }
    }
    if (chunk + 1 < chunks) continue;

    // The tile is done: partial sums to shared memory (c0, c1: row g, tokens 2t, 2t + 1;
    // c2, c3: row g + 8), then every rank adds up its share of the tile over all ranks.
    float* rb = red + parity * kTok * kRed;
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int q = 0; q < kTokTiles; ++q) {
      const int tok = 8 * q + 2 * t;
      rb[tok * kRed + r0] = acc[q][0];
      rb[(tok + 1) * kRed + r0] = acc[q][1];
      rb[tok * kRed + r0 + 8] = acc[q][2];
      rb[(tok + 1) * kRed + r0 + 8] = acc[q][3];
      acc[q][0] = acc[q][1] = acc[q][2] = acc[q][3] = 0.f;
    }
    // Release / acquire: the partial sums of every rank are visible after this. The other
    // buffer was last read before the previous barrier, so writing it next time is safe.
    cluster.sync();
    for (int64_t e = int64_t(rank) * share + threadIdx.x; e < min(valid, (int64_t(rank) + 1) * share);
         e += kThreads) {
      const int tok = int(e / kRows), r = int(e % kRows);
      const int64_t n = tile * kRows + r;
      if (n >= N) continue;
      float part[kClusterMaxSlices];
#pragma unroll
      for (int q = 0; q < kClusterMaxSlices; ++q)
        part[q] = q < slices ? cluster.map_shared_rank(rb, q)[tok * kRed + r] : 0.f;
      float sum = 0.f;
#pragma unroll
      for (int q = 0; q < kClusterMaxSlices; ++q) sum += part[q];  // rank order: deterministic
      float v = __fmul_rn(sum, __fmul_rn(SCB[n], kInt8Inv127));
      if (bias) v = __fadd_rn(v, to_float(bias[n]));
      out[int64_t(tok) * N + n] = from_float<T>(v);
    }
    parity ^= 1;
  }
  cluster.sync();  // no block leaves while another may still read its shared memory
#endif
}

constexpr int64_t kClusterMaxSmem = 200 * 1024;  // of the 227 KB a block may have on an H100

// K slice of each block of a cluster: a multiple of the 512-wide chunk, at most 8 slices.
inline int64_t cluster_slice(int64_t K) {
  const int64_t chunks = (K + kClusterChunk - 1) / kClusterChunk;
  return ((chunks + kClusterMaxSlices - 1) / kClusterMaxSlices) * kClusterChunk;
}

template <typename T, int kTokTiles>
cudaError_t launch_cluster_tokens(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N,
                                  int64_t K, T* out, cudaStream_t stream) {
  const auto kernel = weight_linear_cluster_kernel<T, kTokTiles>;
  constexpr int kThreads = kClusterWarps * 32;
  const int64_t ks = cluster_slice(K);
  const int slices = int((K + ks - 1) / ks);
  const int64_t smem = cluster_smem_bytes<kTokTiles, T>(ks);
  const int64_t tiles = (N + kClusterWarps * 16 - 1) / (kClusterWarps * 16);
  cudaError_t e = allow_dynamic_smem((const void*)kernel, int(smem));  // above 48 KiB: only for large K
  if (e != cudaSuccess) return e;
  // As many clusters as fit on the device at once, each walking over an equal number of tiles.
  int clusters = max_active_clusters((const void*)kernel, kThreads, slices, int(smem));
  if (clusters <= 0) clusters = 1;
  const int64_t rounds = (tiles + clusters - 1) / clusters;
  const int64_t groups = (tiles + rounds - 1) / rounds;
  const bool weights_aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
  const bool a_aligned = K % 4 == 0 && (reinterpret_cast<uintptr_t>(A) & 7u) == 0;
  return launch_in_clusters(kernel, slices, dim3(unsigned(slices), unsigned(groups)), kThreads, size_t(smem), stream,
                            A, CB, SCB, bias, M, N, K, ks, tiles, out, weights_aligned, a_aligned);
}

template <typename T>
cudaError_t launch_weight_linear_cluster(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M,
                                         int64_t N, int64_t K, T* out, cudaStream_t stream) {
  // The fewest 8-token groups that cover M: shared memory and mmas scale with them.
  if (M <= 8) return launch_cluster_tokens<T, 1>(A, CB, SCB, bias, M, N, K, out, stream);
  if (M <= 16) return launch_cluster_tokens<T, 2>(A, CB, SCB, bias, M, N, K, out, stream);
  return launch_cluster_tokens<T, 4>(A, CB, SCB, bias, M, N, K, out, stream);
}

}  // namespace bnb::cuda
