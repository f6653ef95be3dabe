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
#include <cstdlib>
#include <map>
#include <mutex>
#include <string_view>
#include <tuple>
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/int8_cuda.h"
#include "int8_common.cuh"
#include "int8_mma.cuh"

namespace bnb::cuda {

namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int kMmaRowsPerBlock = kMmaWarps * 8;
constexpr int kMmaChunk = 512;
constexpr int kMmaRows = 16;                 // rows of A per mma
constexpr int kAStride = kMmaChunk + 4;      // halves per staged row (+8 bytes: bank spread)


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
  for (int64_t mt = blockIdx.y; mt < m_tiles; mt += gridDim.y) {
    const int64_t m0 = mt * kMmaRows;
    const int rows = int(M - m0 < kMmaRows ? M - m0 : int64_t(kMmaRows));
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
      stage_activations(a_s, A + m0 * K, rows, K, k0, kMmaChunk, kAStride, kMmaRows, a_aligned);
      __syncthreads();
#pragma unroll
      for (int j = 0; j < 8; ++j) mma_weight_bytes(acc, w[j], a_s, kAStride, g, 64 * j + 16 * t);
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

// Cluster version, what the 16-bit decode path runs on sm_90 and later: one launch, no
// workspace, the weight read at close to the copy bandwidth.
//
// Why: the split-K kernel above writes float32 partial sums for every slice (8 MB for
// 16 x 8192 -> 8192, an eighth of the weight's bytes) and needs a second launch to add them;
// each of its blocks also stages as many bytes of A from L2 as it reads of the weight. Here
// the C blocks of a thread-block cluster (C <= 8) take the C slices of K of the same weight
// rows and add their partial sums through distributed shared memory, in rank order
// (deterministic): no global workspace, no second launch. Each block keeps its slice of A
// (all rows of the input, at most 32) in shared memory for its whole life and walks over
// weight tiles of kWarps * 16 rows: while a tile's bytes are used, the next tile's are
// already requested into the same registers (each register is reloaded right after its
// last use), so the weight stream never stops for the reductions.
//
// Roles in the mma are swapped with respect to the kernels above: the weight is the 16 x 16
// operand (a warp owns 16 rows; lane (g, t) streams rows g and g + 8, 16 bytes at
// k = 64 j + 16 t of each 512-wide chunk), the activations the 16 x 8 one (8 tokens per
// mma). An mma then covers 256 weight bytes instead of 128, which halves the activation
// reads from shared memory per weight byte, and 8 tokens or fewer need one mma per step.
// The k order inside an mma is free: the lane's byte 4 s + i of its 16 feeds k position
// 2 t + (i & 1) + 8 (i >> 1) of step s, with the activations read at the same k (one 8-byte
// shared load per token group), so no byte is shuffled between lanes.
constexpr int kClusterMaxSlices = 8;   // portable cluster size
constexpr int kClusterChunk = 512;     // K columns per register load round (8 x 16 bytes a row)
constexpr int kClusterMaxTokens = 32;  // rows of A kept in shared memory


// Shared-memory layout of the activations: row r of the slice at r * (ks + 4) halves. The
// 8-byte pad puts the 8-byte reads of a half-warp (4 rows x 4 lanes) on 32 distinct banks.
__host__ __device__ constexpr int64_t cluster_a_stride(int64_t ks) { return ks + 4; }
// Partial sums of one tile: [tokens][rows + 4] floats (the pad spreads the stores of a
// warp's accumulators over the banks), two buffers.
template <int kWarps>
__host__ __device__ constexpr int cluster_red_stride() { return kWarps * 16 + 4; }

template <int kWarps, int kTokTiles, typename T>
__host__ __device__ constexpr int64_t cluster_smem_bytes(int64_t ks) {
  return int64_t(8 * kTokTiles) * cluster_a_stride(ks) * int64_t(sizeof(T)) +
         2 * int64_t(8 * kTokTiles) * cluster_red_stride<kWarps>() * int64_t(sizeof(float));
}

template <typename T, int kWarps, int kTokTiles>
// 8-warp blocks are capped at 128 registers (two blocks an SM, a few bytes spilled); 4-warp
// blocks take what they need (about 160: three blocks an SM).
__global__ void __launch_bounds__(kWarps * 32, kWarps == 8 ? 2 : 1)
weight_linear_cluster_kernel(const T* __restrict__ A, const int8_t* __restrict__ CB, const float* __restrict__ SCB,
                             const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t ks, int64_t tiles,
                             T* __restrict__ out, bool weights_aligned, bool a_aligned) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int kThreads = kWarps * 32;
  constexpr int kRows = kWarps * 16;      // weight rows per tile
  constexpr int kTok = 8 * kTokTiles;     // activation rows staged (M <= kTok)
  constexpr int kRed = cluster_red_stride<kWarps>();
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

// Which tensor-core kernel serves 16-bit activations (BNB_INT8_GEMV, read at each call so
// that one process can compare them): by default the cluster kernel where it applies (sm_90,
// at most 32 rows of A, K up to 8 slices of its shared-memory limit), else split-K with
// 512-wide slices; "cluster8" the cluster kernel with 8 warps a block, "splitk512" /
// "splitk1024" the split-K kernel, "staged" the one-slice kernel.
enum class Variant { Cluster4, Cluster8, Cluster4Wide, SplitK512, SplitK1024, Staged };

Variant requested_variant() {
  const char* v = std::getenv("BNB_INT8_GEMV");
  if (!v) return Variant::Cluster4;
  const std::string_view s(v);
  if (s == "cluster8") return Variant::Cluster8;
  if (s == "cluster-wide") return Variant::Cluster4Wide;
  if (s == "splitk512") return Variant::SplitK512;
  if (s == "splitk1024") return Variant::SplitK1024;
  if (s == "staged") return Variant::Staged;
  return Variant::Cluster4;
}

constexpr int kMaxDevices = 64;
constexpr int64_t kClusterMaxSmem = 200 * 1024;  // of the 227 KB a block may have on an H100

// Whether the current device runs clusters and the cluster kernel was compiled for it (a
// build without sm_90 code would run an empty body). Asked once per device.
bool cluster_supported() {
  static int cached[kMaxDevices] = {};  // 0 unknown, 1 yes, 2 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return false;
  if (cached[device] == 0) {
    int major = 0;
    cudaFuncAttributes fa{};
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                    major >= 9 &&
                    cudaFuncGetAttributes(&fa, weight_linear_cluster_kernel<__half, 4, 2>) == cudaSuccess &&
                    fa.ptxVersion >= 90;
    cached[device] = ok ? 1 : 2;
  }
  return cached[device] == 1;
}

// K slice of each block of a cluster: a multiple of the 512-wide chunk, at most 8 slices
// ("cluster-wide": at most 4, twice the chunks per reduction, to compare).
int64_t cluster_slice(int64_t K, bool wide = false) {
  const int64_t max_slices = wide ? kClusterMaxSlices / 2 : kClusterMaxSlices;
  const int64_t chunks = (K + kClusterChunk - 1) / kClusterChunk;
  return ((chunks + max_slices - 1) / max_slices) * kClusterChunk;
}

template <typename T, int kWarps, int kTokTiles>
cudaError_t launch_cluster_typed(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N,
                                 int64_t K, T* out, bool wide, cudaStream_t stream) {
  const auto kernel = weight_linear_cluster_kernel<T, kWarps, kTokTiles>;
  const int64_t ks = cluster_slice(K, wide);
  const int slices = int((K + ks - 1) / ks);
  const int64_t smem = cluster_smem_bytes<kWarps, kTokTiles, T>(ks);
  const int64_t tiles = (N + kWarps * 16 - 1) / (kWarps * 16);
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  if (smem > 48 * 1024) {  // above the default limit: opt in (cheap; only for large K)
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  cudaLaunchConfig_t cfg{};
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(slices);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.blockDim = dim3(kWarps * 32);
  cfg.dynamicSmemBytes = size_t(smem);
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  // As many clusters as fit on the device at once (asked once per device and shape of
  // launch), each walking over an equal number of tiles.
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int64_t>, int> resident;
  int clusters = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_tuple(device, slices, smem);
    auto it = resident.find(key);
    if (it == resident.end()) {
      cfg.gridDim = dim3(unsigned(slices), 1, 1);
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) clusters = 0;
      (void)cudaGetLastError();  // a failed query is not the caller's error
      it = resident.emplace(key, clusters).first;
    }
    clusters = it->second;
  }
  if (clusters <= 0) clusters = 1;
  const int64_t rounds = (tiles + clusters - 1) / clusters;
  const int64_t groups = (tiles + rounds - 1) / rounds;
  cfg.gridDim = dim3(unsigned(slices), unsigned(groups), 1);
  const bool weights_aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
  const bool a_aligned = K % 4 == 0 && (reinterpret_cast<uintptr_t>(A) & 7u) == 0;
  e = cudaLaunchKernelEx(&cfg, kernel, A, CB, SCB, bias, M, N, K, ks, tiles, out, weights_aligned, a_aligned);
  return e != cudaSuccess ? e : cudaGetLastError();
}

template <typename T, int kWarps>
cudaError_t launch_cluster_warps(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N,
                                 int64_t K, T* out, bool wide, cudaStream_t stream) {
  // The fewest 8-token groups that cover M: shared memory and mmas scale with them.
  if (M <= 8) return launch_cluster_typed<T, kWarps, 1>(A, CB, SCB, bias, M, N, K, out, wide, stream);
  if (M <= 16) return launch_cluster_typed<T, kWarps, 2>(A, CB, SCB, bias, M, N, K, out, wide, stream);
  return launch_cluster_typed<T, kWarps, 4>(A, CB, SCB, bias, M, N, K, out, wide, stream);
}

// Whether this call takes the cluster kernel.
bool cluster_applies(Variant v, int64_t M, int64_t N, int64_t K) {
  if (v != Variant::Cluster4 && v != Variant::Cluster8 && v != Variant::Cluster4Wide) return false;
  if (M < 1 || M > kClusterMaxTokens || N < 1 || K < 1 || N > (int64_t(1) << 40)) return false;
  const int64_t ks = cluster_slice(K, v == Variant::Cluster4Wide);
  const int tok_tiles = M <= 8 ? 1 : M <= 16 ? 2 : 4;
  const int64_t smem = int64_t(8 * tok_tiles) * cluster_a_stride(ks) * 2 +
                       2 * int64_t(8 * tok_tiles) * (v == Variant::Cluster8 ? cluster_red_stride<8>()
                                                                           : cluster_red_stride<4>()) * 4;
  if (smem > kClusterMaxSmem) return false;  // very large K: the split-K kernel
  const int64_t groups_max = (N + 63) / 64;
  return groups_max <= 0x7fffffff && cluster_supported();
}

int splitk_width(Variant v) { return v == Variant::SplitK1024 ? 1024 : kDefaultSplitK; }

int64_t splitk_slices(Variant v, int64_t K) { return (K + splitk_width(v) - 1) / splitk_width(v); }

template <typename T>
cudaError_t launch(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M, int64_t N, int64_t K,
                   T* out, float* workspace, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const Variant variant = requested_variant();
  if (cluster_applies(variant, M, N, K)) {
    const bool wide = variant == Variant::Cluster4Wide;
    return variant == Variant::Cluster8 ? launch_cluster_warps<T, 8>(A, CB, SCB, bias, M, N, K, out, false, stream)
                                        : launch_cluster_warps<T, 4>(A, CB, SCB, bias, M, N, K, out, wide, stream);
  }
  const bool weights_aligned = K % 16 == 0 && (reinterpret_cast<uintptr_t>(CB) & 15u) == 0;
  const bool a_aligned = K % 4 == 0 && (reinterpret_cast<uintptr_t>(A) & 7u) == 0;
  const int64_t blocks_n = (N + kMmaRowsPerBlock - 1) / kMmaRowsPerBlock;
  const int64_t m_tiles = (M + kMmaRows - 1) / kMmaRows;
  if (blocks_n > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(blocks_n), unsigned(m_tiles < 65535 ? m_tiles : 65535));
  if (variant != Variant::Staged && workspace != nullptr && K > 0) {
    const int64_t splits = splitk_slices(variant, K);
    if (splits > 65535 || m_tiles > 65535) return cudaErrorInvalidValue;
    const dim3 sgrid{unsigned(blocks_n), unsigned(splits), unsigned(m_tiles)};
    const bool a16 = K % 8 == 0 && (reinterpret_cast<uintptr_t>(A) & 15u) == 0;
    if (splitk_width(variant) == 512)
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
  if (dtype == DType::Float32 || !int8_weight_linear_mma_enabled() || M == 0 || N == 0 || K == 0) return 0;
  const Variant v = requested_variant();
  if (v == Variant::Staged || cluster_applies(v, M, N, K)) return 0;
  return splitk_slices(v, K) * M * N;
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
