// A decode-step 4-bit product (one token tile, M <= 8) fed by bulk copies, against the library's
// decode kernel (gemm_4bit_stream.cuh) on the same data: bf16, NF4, blocks of 64 with nested
// scales, weights cycled over 256 MiB so that they come from memory. The library's kernel keeps
// a warp's next round of weights in its registers, and its CTAs live a few rounds; here
// persistent CTAs of one producer warp and C consumer warps share a ring in shared memory: the
// producer copies a slot (16 rows x KC bytes, each row one bulk copy into a row padded to 64
// bytes past a multiple of 128, so that a warp's 16-byte reads of two rows fall in different
// banks) as soon as the consumers release it, and the consumers compute on the slots in order
// with the library's step-group math (gemm_4bit_stream.cuh: a lane's 16 bytes of rows g and
// g + 8, the 32-copy byte table, float32 partial sums scaled by the block, a block of 64 as two
// masked mma). A CTA takes slabs of 16 rows (blockIdx.x, + gridDim.x, ...), every chunk of K of
// a slab in turn; the consumers' sums of a slab meet in shared memory. Outputs must match the
// library kernel's within the rounding of a reordered float32 sum. On an sm_90 machine, from
// the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
//     -Ikernels -o /tmp/ab_4bit_bulk benchmarks/ab_4bit_bulk.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu && /tmp/ab_4bit_bulk
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_bf16.h>
#include "bulk_copy.h"
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_stream.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

constexpr int kMaxRing = 16;

// Bytes between two rows of a slot: KC rounded up to 128, plus 64.
__host__ __device__ inline int slot_row_bytes(int kc) { return (kc + 127) / 128 * 128 + 64; }

// SPLIT: blocks of 64 (two to a step-group's row). C consumer warps; KC bytes of each row a slot.
template <typename T, bool SPLIT, int C>
__global__ void __launch_bounds__((C + 1) * 32)
gemm_4bit_bulk_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                      const BlockScales scales, T* __restrict__ out, int M, int64_t N, int64_t K, int log2_blocksize,
                      int kc, int stages) {
  constexpr int kParts = SPLIT ? 2 : 1;
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ __align__(16) uint32_t s_pair[256 * 32];
  __shared__ float s_ncode[256];
  __shared__ float s_red[2][C][16][9];
  __shared__ __align__(8) uint64_t full[kMaxRing], empty[kMaxRing];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t row_bytes = K / 2;
  const int chunks = int((row_bytes + kc - 1) / kc);
  const int64_t slabs = (N + 15) / 16;
  const int rb = slot_row_bytes(kc), slot_bytes = 16 * rb;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) bar_init(&full[s], 1), bar_init(&empty[s], uint32_t(C));
    bars_initialized();
  }
  fill_code_pairs<T, 32>(s_pair, s_ncode, code, scales);
  __syncthreads();

  if (warp == 0) {  // the producer: one lane
    if (lane == 0) {
      int64_t i = 0;
      for (int64_t slab = blockIdx.x; slab < slabs; slab += gridDim.x) {
        for (int c = 0; c < chunks; ++c, ++i) {
          const int s = int(i % stages);
          const uint32_t round = uint32_t(i / stages);
          if (round > 0) bar_wait(&empty[s], (round - 1) & 1);
          const int bytes = int(min(int64_t(kc), row_bytes - int64_t(c) * kc));
          bar_arrive_expect(&full[s], uint32_t(16 * bytes));
          for (int r = 0; r < 16; ++r) {
            const int64_t row = min(slab * 16 + r, N - 1);
            bulk_copy(ring + int64_t(s) * slot_bytes + r * rb, B + row * row_bytes + int64_t(c) * kc, uint32_t(bytes),
                      &full[s]);
          }
        }
      }
    }
    return;
  }

  const int cw = warp - 1;  // consumer warp
  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane);
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  const uint32_t half_mask[2] = {t < 2 ? ~0u : 0u, t < 2 ? 0u : ~0u};
  const int shift = log2_blocksize - 6;
  const int groups_per_chunk = kc / (kStreamK / 2);  // step-groups (64 bytes a row) of a full slot
  const T* a_row = A + int64_t(min(g, M - 1)) * K + 32 * t;
  int64_t i = 0;
  int parity = 0;
  for (int64_t slab = blockIdx.x; slab < slabs; slab += gridDim.x, parity ^= 1) {
    const int64_t n0 = slab * 16;
    const int64_t scale_row = min(n0 + 8 * (t & 1) + g, N - 1);
    const int scale_at = int((scale_row * K) >> 6) + (SPLIT ? (t >> 1) : 0);
    float acc[4] = {};
    for (int c = 0; c < chunks; ++c, ++i) {
      const int s = int(i % stages);
      const int groups = int(min(int64_t(kc), row_bytes - int64_t(c) * kc)) / (kStreamK / 2);
      bar_wait(&full[s], uint32_t(i / stages) & 1);
      const uint8_t* slot = ring + int64_t(s) * slot_bytes;
      for (int q = cw; q < groups; q += C) {
        const int64_t group = int64_t(c) * groups_per_chunk + q;  // step-group of the row
        const ScaleParts sp = load_scale_parts(scales, (scale_at + 2 * int(group)) >> shift);
        uint4 a[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j] = __ldg(reinterpret_cast<const uint4*>(a_row + group * kStreamK) + j);
        const uint4 w0 = *reinterpret_cast<const uint4*>(slot + g * rb + q * 64 + 16 * t);
        const uint4 w1 = *reinterpret_cast<const uint4*>(slot + (g + 8) * rb + q * 64 + 16 * t);
        float mine = scale_of(scales, sp, s_ncode, offset);
        if (__any_sync(0xffffffffu, is_marked(mine))) {  // a block that held NaN or Inf (rare)
          unsigned held[2];
          const uint4 wv[2] = {w0, w1};
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool r = holds_reserved_code_4bit(wv[h].x) || holds_reserved_code_4bit(wv[h].y) ||
                           holds_reserved_code_4bit(wv[h].z) || holds_reserved_code_4bit(wv[h].w);
            held[h] = __ballot_sync(0xffffffffu, r);
          }
          const unsigned lanes = SPLIT ? (0x3u << (2 * (t >> 1))) : 0xFu;
          mine = block_scale_or_nan(mine, ((held[t & 1] >> (4 * g)) & lanes) != 0);
        }
        float scale[2][kParts];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int p = 0; p < kParts; ++p) scale[h][p] = __shfl_sync(0xffffffffu, mine, (lane & ~3) | (h + 2 * p));
        float part[kParts][4] = {};
#pragma unroll
        for (int st = 0; st < 8; ++st) {
          const uint32_t lw = word_of(w0, st / 2), hw = word_of(w1, st / 2);
          const int b = 2 * (st & 1);
          const uint32_t frag[4] = {code_pair32(table, lw, b), code_pair32(table, hw, b), code_pair32(table, lw, b + 1),
                                    code_pair32(table, hw, b + 1)};
          const uint32_t b0 = word_of(a[st / 2], 2 * (st & 1)), b1 = word_of(a[st / 2], 2 * (st & 1) + 1);
#pragma unroll
          for (int p = 0; p < kParts; ++p) {
            const uint32_t m = SPLIT ? half_mask[p] : ~0u;
            MmaOp<T>::mma(part[p], frag, b0 & m, b1 & m);
          }
        }
#pragma unroll
        for (int p = 0; p < kParts; ++p) {
          acc[0] = fmaf(scale[0][p], part[p][0], acc[0]);
          acc[1] = fmaf(scale[0][p], part[p][1], acc[1]);
          acc[2] = fmaf(scale[1][p], part[p][2], acc[2]);
          acc[3] = fmaf(scale[1][p], part[p][3], acc[3]);
        }
      }
      __syncwarp();
      if (lane == 0) bar_arrive(&empty[s]);  // this warp is done with the slot
    }
    // The slab's sums over the consumer warps (a barrier of the consumers alone; buffers
    // alternate by slab, so the next slab's writes never meet this one's reads).
    s_red[parity][cw][g][2 * t] = acc[0];
    s_red[parity][cw][g][2 * t + 1] = acc[1];
    s_red[parity][cw][g + 8][2 * t] = acc[2];
    s_red[parity][cw][g + 8][2 * t + 1] = acc[3];
    asm volatile("bar.sync 1, %0;" ::"r"(C * 32) : "memory");
    const int ct = int(threadIdx.x) - 32;
    if (ct < 16 * 8) {
      const int row = ct % 16, tok = ct / 16;
      const int64_t n = n0 + row;
      if (n < N && tok < M) {
        float sum = 0.f;
        for (int v = 0; v < C; ++v) sum += s_red[parity][v][row][tok];
        out[int64_t(tok) * N + n] = from_float<T>(sum);
      }
    }
  }
}

typedef void (*Kern)(const bf*, const uint8_t*, const float*, const BlockScales, bf*, int, int64_t, int64_t, int, int,
                     int);
struct Config { Kern kernel; int consumers, kc, stages, per_sm; const char* name; };

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "bulk copies")) return 0;
  const double copy = copy_bandwidth_gbs();
  printf("device: %s, %d SMs, copy %.0f GB/s\n", pr.name, pr.multiProcessorCount, copy);
  const Config configs[] = {
      {gemm_4bit_bulk_kernel<bf, true, 4>, 4, 512, 8, 1, "C4 KC512 S8 1/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 4>, 4, 1024, 8, 1, "C4 KC1024 S8 1/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 8>, 8, 1024, 8, 1, "C8 KC1024 S8 1/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 8>, 8, 2048, 4, 1, "C8 KC2048 S4 1/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 4>, 4, 512, 6, 2, "C4 KC512 S6 2/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 4>, 4, 1024, 4, 2, "C4 KC1024 S4 2/SM"},
      // More consumers an SM (on one H100, C8 1/SM beat C4 1/SM by 10-30%: the consumers' math,
      // not the stream, sets the time). Sixteen a CTA would not fit: the table and the sums'
      // buffers take 52.5 KiB of static shared memory, over its 48 KiB.
      {gemm_4bit_bulk_kernel<bf, true, 8>, 8, 512, 6, 2, "C8 KC512 S6 2/SM"},
      {gemm_4bit_bulk_kernel<bf, true, 12>, 12, 1024, 8, 1, "C12 KC1024 S8 1/SM"}};
  bool all_close = true;
  for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
    const DecodeShape& sh = kDecodeShapes[si];
    const Weights4bit wt(sh.N, sh.K, 8, unsigned(si + 1));
    const int64_t N = wt.N, K = wt.K;
    bf* dout;
    CK(cudaMalloc(&dout, size_t(N) * 8 * 2));
    const bf* dA = wt.A;
    const double weight_bytes = wt.bytes();
    for (const int M : {1, 8}) {
      std::vector<bf> ref(size_t(N) * M), got(ref.size());
      CK(launch_gemm_4bit_stream(dA, wt.weight(0), wt.code, wt.scales(0), (const bf*)nullptr, dout, M, N, K, 6, nullptr));
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(ref.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
      const float lib_ms = median_ms([&, n = 1]() mutable {  // (copy 0 was just read: in the L2)
        const int c = n++;
        launch_gemm_4bit_stream(dA, wt.weight(c), wt.code, wt.scales(c), (const bf*)nullptr, dout, M, N, K, 6, nullptr);
      });
      CK(cudaGetLastError());
      printf("M=%d %-12s library %.1fus (%.0f%% of copy)\n", M, sh.name, lib_ms * 1e3,
             100 * weight_bytes / (lib_ms * 1e6) / copy);
      for (const Config& cf : configs) {
        if (cf.stages > kMaxRing || cf.kc % 64 != 0) {
          printf("    %-20s: a ring of at most %d slots of whole 64-byte step-groups\n", cf.name, kMaxRing);
          return 1;
        }
        const int smem = cf.stages * 16 * slot_row_bytes(cf.kc);
        CK(cudaFuncSetAttribute(cf.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        const int grid = pr.multiProcessorCount * cf.per_sm;
        auto run = [&](int c) {
          cf.kernel<<<grid, 32 * (cf.consumers + 1), smem>>>(dA, wt.weight(c), wt.code, wt.scales(c), dout, M, N, K, 6,
                                                             cf.kc, cf.stages);
        };
        CK(cudaMemset(dout, 0xff, ref.size() * 2));
        run(0);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
        const bool close = first_far(got, ref) < 0;
        all_close &= close;
        const float ms = median_ms([&, n = 1]() mutable { run(n++); });
        CK(cudaGetLastError());
        printf("    %-20s %.1fus (%.0f%% of copy, %.2fx the library)%s\n", cf.name, ms * 1e3,
               100 * weight_bytes / (ms * 1e6) / copy, lib_ms / ms, close ? "" : " MISMATCH");
      }
    }
    cudaFree(dout);
  }
  printf("outputs close to the library's: %s\n", all_close ? "yes" : "NO");
  return all_close ? 0 : 2;
}
