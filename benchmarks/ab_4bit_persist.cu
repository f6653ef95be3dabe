// The decode-step product (gemm_4bit_stream.cuh, M <= 8) with persistent CTAs, against the
// library's kernel on the same data. The library's CTA takes one 16-row slab and lives a few
// rounds (8192^2: four rounds a warp), so every CTA pays its own start: the code table's fill
// and barrier, and its first round of weight loads with nothing else in flight. Here a grid of
// as many CTAs as fit at once takes the slabs in turn: the table is filled once a CTA, each
// warp loads the next slab's first round while it computes the current slab's last, and the
// partial sums get their own shared memory (the table stays). With A_SMEM the activations are
// also staged once a CTA in shared memory (rows padded by 16 bytes, 16-byte words of each row
// swizzled so that a quarter-warp's four loads meet four bank groups), where the library's warps
// load them from the L1 each step-group (46% of those loads missed it at one token, Nsight
// Compute, 8192^2, H100). Each warp's sums run in the library's order, so outputs must equal
// the library's bit for bit; the HALVES settings (below) within float32 summation order. bf16,
// NF4, blocks of 64, nested scales, the decode shapes at 1, 4 and 8 tokens, weights cycled over
// 256 MiB so that they come from memory. On an sm_90 machine,
// from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
//     -Ikernels -o /tmp/ab_4bit_persist benchmarks/ab_4bit_persist.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu && /tmp/ab_4bit_persist
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include <cuda_bf16.h>
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_stream.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

// 16-byte word j of activation row `row` in shared memory: rows of K / 8 + 1 words; bit 1 of j
// flipped where bit 3 is set, so that lanes t = 0..3 (words 4t + q) fall in four bank groups.
__device__ __forceinline__ int a_word(int row, int row_words, int j) { return row * row_words + (j ^ ((j >> 2) & 2)); }

// HALVES (blocks of 64, with SPLIT): a lane's 16 bytes of a row are two 8-byte loads, its 16 k
// of each of the step-group's two blocks (bytes 8t and 32 + 8t), so that steps 0-3 hold the
// first block's weights and 4-7 the second's: one mma a step on unmasked activations, where the
// library's 16-byte load holds 32 k of one block a lane and each step takes two mma on masked
// activations (32 masks and 8 mma a step-group fewer, two loads a row more). Its sums are the same
// products in another order: outputs within float32 summation order of the library's.
template <typename T, bool SPLIT, bool A_SMEM, bool HALVES = false, int U = kStreamRound>
__global__ void __launch_bounds__(kStreamWarps * 32, 2)
gemm_4bit_persist_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                         const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int M, int64_t N,
                         int64_t K, int log2_blocksize) {
  static_assert(!HALVES || SPLIT, "halves are the two blocks of 64 of a step-group");
  constexpr int kTokens = 8, kParts = SPLIT ? 2 : 1;
  __shared__ __align__(16) uint32_t s_pair[256 * 32];
  __shared__ float s_ncode[256];
  __shared__ float s_sum[kStreamWarps][16][kTokens + 1];
  extern __shared__ uint4 s_a[];  // A_SMEM: [M][K / 8 + 1]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t slabs = (N + 15) / 16;
  const int shift = log2_blocksize - 6;
  const int groups = int(K / kStreamK), stride = kStreamWarps * U;
  const int row_words = int(K / 8) + 1;

  // Where a slab's rows and scales are read (rows past N repeat the last one, as in the library).
  struct Rows { const uint8_t* w[2]; int scale_at; };
  auto rows_of = [&](int64_t slab) {
    Rows r;
    const int64_t n0 = slab * 16;
#pragma unroll
    for (int h = 0; h < 2; ++h) r.w[h] = B + min(n0 + 8 * h + g, N - 1) * (K / 2) + (HALVES ? 8 : 16) * t;
    const int64_t scale_row = min(n0 + 8 * (t & 1) + g, N - 1);
    r.scale_at = int((scale_row * K) >> 6) + (SPLIT ? (t >> 1) : 0);
    return r;
  };
  auto load_round = [&](const Rows& r, uint4 (&w)[U][2], ScaleParts (&sp)[U], int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + u < groups) {
#pragma unroll
        for (int h = 0; h < 2; ++h) w[u][h] = load_step_group<HALVES>(r.w[h] + int64_t(c0 + u) * (kStreamK / 2));
        sp[u] = load_scale_parts(scales, (r.scale_at + 2 * (c0 + u)) >> shift);
      } else {
        sp[u] = {0.f, 0u};
      }
    }
  };

  static_assert(kStreamRegWords == 0, "the library's kernel takes every code pair from the table");
  int64_t slab = blockIdx.x;
  Rows rows = rows_of(slab);
  uint4 w[U][2];
  ScaleParts sp[U];
  if (warp * U < groups) load_round(rows, w, sp, warp * U);  // in flight while the tables fill

  fill_code_pairs<T, 32>(s_pair, s_ncode, code, scales);
  if constexpr (A_SMEM) {
    const int kv = int(K / 8), words = M * kv;
    const uint4* src = reinterpret_cast<const uint4*>(A);
    for (int i = threadIdx.x; i < words; i += blockDim.x) s_a[a_word(i / kv, row_words, i % kv)] = __ldg(src + i);
  }
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  __syncthreads();

  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane);
  const int tok = min(g, M - 1);
  const uint32_t half_mask[2] = {t < 2 ? ~0u : 0u, t < 2 ? 0u : ~0u};

  for (; slab < slabs; slab += gridDim.x) {
    const int64_t next = slab + gridDim.x;
    const Rows next_rows = rows_of(next < slabs ? next : slab);
    // The next slab's first round, loaded during this slab's last and taken up only after its
    // sums are stored (a copy of registers still being loaded would wait for them there).
    uint4 first[U][2];
    ScaleParts first_sp[U];
    float acc[4] = {};
    for (int c0 = warp * U; c0 < groups; c0 += stride) {
      const bool more = c0 + stride < groups;
      uint4 wn[U][2];
      ScaleParts spn[U];
      if (more) load_round(rows, wn, spn, c0 + stride);
      else if (next < slabs) load_round(next_rows, first, first_sp, warp * U);

      float mine[U];
      bool marked = false;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        mine[u] = scale_of(scales, sp[u], s_ncode, offset);
        marked |= is_marked(mine[u]);
      }
      if (__any_sync(0xffffffffu, marked)) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          bool group;
          if constexpr (HALVES) {
            group = halves_hold_reserved(w[u], g, t);
          } else {  // as the library's kernel: the quad's lanes of the scale's half (SPLIT) or all
            unsigned held[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const uint4 v = w[u][h];
              held[h] = __ballot_sync(0xffffffffu, holds_reserved_code_4bit(v.x) || holds_reserved_code_4bit(v.y) ||
                                                       holds_reserved_code_4bit(v.z) || holds_reserved_code_4bit(v.w));
            }
            group = ((held[t & 1] >> (4 * g)) & (SPLIT ? (0x3u << (2 * (t >> 1))) : 0xFu)) != 0;
          }
          mine[u] = block_scale_or_nan(mine[u], group);
        }
      }

#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c0 + u >= groups) break;
        float scale[2][kParts];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int p = 0; p < kParts; ++p) scale[h][p] = __shfl_sync(0xffffffffu, mine[u], (lane & ~3) | (h + 2 * p));
        uint4 a[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          // The lane's activations: 32 consecutive (the library's), or HALVES 16 of each block
          // (word q: block q / 2, at 16-byte word 8 (q / 2) + 2t + q % 2 of the step-group).
          const int word = (HALVES ? 2 : 4) * t + step_group_a_word<HALVES>(q);
          a[q] = A_SMEM ? s_a[a_word(tok, row_words, 16 * (c0 + u) + word)]
                        : __ldg(reinterpret_cast<const uint4*>(A + int64_t(tok) * K + int64_t(c0 + u) * kStreamK) + word);
        }
        float part[kParts][4] = {};
#pragma unroll
        for (int s = 0; s < 8; ++s) {
          const uint32_t lw = word_of(w[u][0], s / 2), hw = word_of(w[u][1], s / 2);
          const int i = 2 * (s & 1);
          uint32_t frag[4];
          frag[0] = code_pair32(table, lw, i);
          frag[1] = code_pair32(table, hw, i);
          frag[2] = code_pair32(table, lw, i + 1);
          frag[3] = code_pair32(table, hw, i + 1);
          const uint32_t b0 = word_of(a[s / 2], 2 * (s & 1)), b1 = word_of(a[s / 2], 2 * (s & 1) + 1);
          if constexpr (HALVES) {
            MmaOp<T>::mma(part[s / 4], frag, b0, b1);
          } else {
#pragma unroll
            for (int p = 0; p < kParts; ++p) {
              const uint32_t m = SPLIT ? half_mask[p] : ~0u;
              MmaOp<T>::mma(part[p], frag, b0 & m, b1 & m);
            }
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
      if (more) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          w[u][0] = wn[u][0];
          w[u][1] = wn[u][1];
          sp[u] = spn[u];
        }
      }
    }

    // The warps' sums meet in their own shared memory, in the library's order.
    s_sum[warp][g][2 * t] = acc[0];
    s_sum[warp][g][2 * t + 1] = acc[1];
    s_sum[warp][g + 8][2 * t] = acc[2];
    s_sum[warp][g + 8][2 * t + 1] = acc[3];
    __syncthreads();
    const int64_t n0 = slab * 16;
    for (int i = threadIdx.x; i < 16 * kTokens; i += blockDim.x) {
      const int row = i % 16, k = i / 16;
      const int64_t n = n0 + row;
      if (n >= N || k >= M) continue;
      float sum = 0.f;
#pragma unroll
      for (int v = 0; v < kStreamWarps; ++v) sum += s_sum[v][row][k];
      if (bias != nullptr) sum += to_float(bias[n]);
      out[int64_t(k) * N + n] = from_float<T>(sum);
    }
    __syncthreads();  // the sums are read before the next slab writes them
    if (next < slabs && warp * U < groups) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        w[u][0] = first[u][0];
        w[u][1] = first[u][1];
        sp[u] = first_sp[u];
      }
    }
    rows = next_rows;
  }
}

typedef void (*Kern)(const bf*, const uint8_t*, const float*, const BlockScales, const bf*, bf*, int, int64_t, int64_t,
                     int);

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "these kernels")) return 0;
  const double copy = copy_bandwidth_gbs();
  printf("device: %s, %d SMs, copy %.0f GB/s\n", pr.name, pr.multiProcessorCount, copy);
  // The persistent kernel is held to two CTAs an SM (at most 128 registers a thread); the
  // library's kernel so held too, a slab a CTA, separates that from the persistence.
  // `per_sm`: CTAs an SM in the persistent grid (0: as many as fit; 1: one, so that every CTA
  // takes several slabs even where the slabs are about two an SM). `exact`: outputs must equal
  // the library's bit for bit (else within float32 summation order: the halves' other order).
  struct Setting { const char* name; Kern k; bool a_smem, persistent; int per_sm; bool exact; };
  const Setting settings[] = {
      {"library, 2 an SM", gemm_4bit_stream_kernel<bf, 1, true, kStreamRound, 2, 0>, false, false, 0, true},
      {"library, halves", gemm_4bit_stream_kernel<bf, 1, true, kStreamRound, 1, 0, true>, false, false, 0, false},
      {"persistent", gemm_4bit_persist_kernel<bf, true, false>, false, true, 0, true},
      {"persistent, 1 an SM", gemm_4bit_persist_kernel<bf, true, false>, false, true, 1, true},
      {"persistent, A in smem", gemm_4bit_persist_kernel<bf, true, true>, true, true, 0, true},
      {"persistent, halves", gemm_4bit_persist_kernel<bf, true, false, true>, false, true, 0, false},
      {"persistent, halves, A in smem", gemm_4bit_persist_kernel<bf, true, true, true>, true, true, 0, false}};
  constexpr int kSettings = sizeof(settings) / sizeof(settings[0]);
  bool all_equal = true;
  double log_lib = 0, log_set[kSettings] = {};
  int cases = 0;
  for (int M : {1, 4, 8}) {
    for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
      const DecodeShape& sh = kDecodeShapes[si];
      const Weights4bit wt(sh.N, sh.K, M, unsigned(64 * si + M));
      const int64_t N = wt.N, K = wt.K, slabs = (N + 15) / 16;
      bf* dout;
      CK(cudaMalloc(&dout, size_t(N) * M * 2));
      std::vector<bf> ref(size_t(N) * M), got(ref.size());
      auto time_us = [&](auto launch) {
        std::vector<float> t;
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0), cudaEventCreate(&e1);
        for (int r = 0; r < 9; ++r) {
          cudaEventRecord(e0);
          for (int i = 0; i < 40; ++i) launch(i);
          cudaEventRecord(e1);
          CK(cudaEventSynchronize(e1));
          float ms;
          cudaEventElapsedTime(&ms, e0, e1);
          t.push_back(ms * 1000 / 40);
        }
        cudaEventDestroy(e0), cudaEventDestroy(e1);
        std::sort(t.begin(), t.end());
        return double(t[4]);
      };
      auto library = [&](int c) {
        CK(launch_gemm_4bit_stream<bf>(wt.A, wt.weight(c), wt.code, wt.scales(c), nullptr, dout, M, N, K, 6, nullptr));
      };
      library(0);
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(ref.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
      const double t_lib = time_us(library);
      printf("M=%d %-12s library %.1fus (%.0f%% of copy)", M, sh.name, t_lib, 100 * wt.bytes() / t_lib / 1e3 / copy);
      log_lib += std::log(t_lib);
      for (int v = 0; v < kSettings; ++v) {
        const Setting& st = settings[v];
        const int smem = st.a_smem ? int(size_t(M) * size_t(K / 8 + 1) * 16) : 0;
        CK(allow_dynamic_smem((const void*)st.k, smem));
        int per_sm = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, st.k, kStreamWarps * 32, smem));
        if (st.per_sm > 0) per_sm = std::min(per_sm, st.per_sm);
        const int grid = int(st.persistent ? std::min<int64_t>(slabs, int64_t(per_sm) * pr.multiProcessorCount) : slabs);
        auto launch = [&](int c) {
          st.k<<<grid, kStreamWarps * 32, smem>>>(wt.A, wt.weight(c), wt.code, wt.scales(c), nullptr, dout, M, N, K, 6);
          CK(cudaGetLastError());  // (as the library's launcher returns it)
        };
        CK(cudaMemset(dout, 0xff, ref.size() * 2));  // NaN: an unwritten output fails the check
        launch(0);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
        const bool equal = std::memcmp(got.data(), ref.data(), ref.size() * 2) == 0;
        const bool close = first_far(got, ref) < 0;
        all_equal &= st.exact ? equal : close;
        const double us = time_us(launch);
        log_set[v] += std::log(us);
        printf("  | %s (%d an SM, %.1f slabs a CTA) %.1fus %.2fx%s", st.name, per_sm, double(slabs) / grid, us,
               t_lib / us,
               equal ? "" : !close ? " MISMATCH" : st.exact ? " (close, not equal: MISMATCH)" : " (close)");
      }
      printf("\n");
      ++cases;
      cudaFree(dout);
    }
  }
  printf("outputs equal to the library's (bit for bit; the halves within summation order): %s\n",
         all_equal ? "yes" : "NO");
  printf("geomean over %d cases: library %.2f us", cases, std::exp(log_lib / cases));
  for (int v = 0; v < kSettings; ++v) printf(", %s %.2f us", settings[v].name, std::exp(log_set[v] / cases));
  printf("\n");
  return all_equal ? 0 : 2;
}
