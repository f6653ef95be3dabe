// gemm_4bit_tile (activations staged once a CTA, warps on different rows) against the
// library's product (launch_gemm_4bit_mma, its own tiling and split) and cuBLAS's bf16 GEMM on
// the dequantized weight (F.linear's stand-in), at 16-64 tokens on the decode shapes: bf16,
// NF4, blocks of 64 with nested scales, weights cycled over 256 MiB so that they come from
// memory. The tile kernel's output must match the library's within the rounding of a reordered
// float32 sum (|a - b| <= 2^-7 |b| + 2^-12 max|b|); at 16 tokens, where the library applies the
// scales to float32 partial sums and the tile kernel to weights rounded to bf16, within that
// rounding too (2^-9 max|b|: about seven of its standard deviations over K random terms). Each
// tiling (token tiles MT, row tiles RT a warp, warps W, sub-chunks S a stage; reg: code pairs by
// permutes, not the table) by the split rule and at 1, 2, 4 and 8 CTAs a cluster. On an sm_90
// machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
//     -Ikernels -o /tmp/ab_4bit_tile benchmarks/ab_4bit_tile.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu -lcublas && /tmp/ab_4bit_tile
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_bf16.h>
#if __has_include(<cublas_v2.h>)
#include <cublas_v2.h>
#define HAVE_CUBLAS 1
#else
#define HAVE_CUBLAS 0  // (a toolkit without cuBLAS: its column reads 0)
#endif
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_tile.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

// Median of 9 runs of 40 launches, us a launch; launch(i) takes the i-th copy of the weights.
template <typename Launch> static double time_us(Launch launch) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<double> t;
  for (int r = 0; r < 9; ++r) {
    cudaEventRecord(e0);
    for (int i = 0; i < 40; ++i) launch(i);
    cudaEventRecord(e1);
    CK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms * 1000.0 / 40);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[4];
}

static bool near(const std::vector<bf>& x, const std::vector<bf>& want, float of_most) {
  float most = 0.f;
  for (const bf& r : want) most = std::max(most, std::fabs(__bfloat162float(r)));
  for (size_t i = 0; i < want.size(); ++i) {
    const float a = __bfloat162float(x[i]), b = __bfloat162float(want[i]);
    if (!(std::fabs(a - b) <= 0x1p-7f * std::fabs(b) + of_most * most)) return false;
  }
  return true;
}

typedef cudaError_t (*Launch)(const bf*, const uint8_t*, const float*, const BlockScales&, const bf*, bf*, int64_t,
                              int64_t, int64_t, int, cudaStream_t, int);
struct Tiling { int most_tokens; Launch launch; const char* name; };

int main() {
  const Tiling tilings[] = {
      {32, launch_gemm_4bit_tile<bf, 4, 1, 8, 4>, "MT4 RT1 W8 S4"}, {32, launch_gemm_4bit_tile<bf, 4, 2, 8, 2>, "MT4 RT2 W8 S2"},
      {32, launch_gemm_4bit_tile<bf, 4, 1, 4, 4>, "MT4 RT1 W4 S4"}, {64, launch_gemm_4bit_tile<bf, 8, 1, 8, 4>, "MT8 RT1 W8 S4"},
      {64, launch_gemm_4bit_tile<bf, 8, 2, 8, 2>, "MT8 RT2 W8 S2"}, {64, launch_gemm_4bit_tile<bf, 8, 1, 4, 4>, "MT8 RT1 W4 S4"},
      {64, launch_gemm_4bit_tile<bf, 8, 2, 4, 2>, "MT8 RT2 W4 S2"},
      {32, launch_gemm_4bit_tile<bf, 4, 2, 8, 2, true>, "MT4 RT2 W8 S2 reg"},
      {64, launch_gemm_4bit_tile<bf, 8, 2, 8, 2, true>, "MT8 RT2 W8 S2 reg"},
      {64, launch_gemm_4bit_tile<bf, 8, 1, 8, 4, true>, "MT8 RT1 W8 S4 reg"}};
  const int tokens[] = {16, 17, 32, 48, 64};
  cudaDeviceProp pr;
  if (!sm90_device(pr, "the tile kernel's clusters")) return 0;
  printf("device: %s, %d SMs, copy %.0f GB/s\n", pr.name, pr.multiProcessorCount, copy_bandwidth_gbs());
#if HAVE_CUBLAS
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return 1;
#endif
  bool all_close = true;
  // Odd shapes first (rows not a multiple of a slab, K not of a stage, a bias, blocks of 64, 128
  // and 4096): every tiling at its rule and at 2 and 3 CTAs a cluster against the library's
  // product, outputs only.
  {
    const int64_t odd[][2] = {{130, 320}, {257, 4352}, {1000, 1088}, {40, 64}};
    int checked = 0, failed = 0;
    for (const auto& nk : odd) {
      const Weights4bit wt(nk[0], nk[1], 64, 7u, false);
      const int64_t N = wt.N, K = wt.K;
      std::vector<bf> hb(N);
      for (auto& b : hb) b = __float2bfloat16((rand() % 2001 - 1000) / 500.f);
      bf *db, *dout;
      CK(cudaMalloc(&db, N * 2));
      CK(cudaMalloc(&dout, N * 64 * 2));
      CK(cudaMemcpy(db, hb.data(), N * 2, cudaMemcpyHostToDevice));
      for (const int log2_bs : {6, 7, 12}) {
        for (const int M : {17, 33, 50, 64}) {
          std::vector<bf> ref(size_t(N) * M), got(ref.size());
          CK(launch_gemm_4bit_mma(wt.A, wt.weight(0), wt.code, wt.scales(0), db, dout, M, N, K, log2_bs, nullptr));
          CK(cudaDeviceSynchronize());
          CK(cudaMemcpy(ref.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
          for (const Tiling& tl : tilings) {
            if (M > tl.most_tokens) continue;
            for (int sp : {0, 2, 3}) {
              CK(cudaMemset(dout, 0xff, ref.size() * 2));
              if (tl.launch(wt.A, wt.weight(0), wt.code, wt.scales(0), db, dout, M, N, K, log2_bs, nullptr, sp) !=
                  cudaSuccess) {
                (void)cudaGetLastError();
                continue;
              }
              CK(cudaDeviceSynchronize());
              CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
              ++checked;
              if (!near(got, ref, 0x1p-12f)) {
                ++failed;
                printf("odd shape %lldx%lld, M=%d, blocks of %d, %s, split %d: MISMATCH\n", (long long)N,
                       (long long)K, M, 1 << log2_bs, tl.name, sp);
              }
            }
          }
        }
      }
      cudaFree(db), cudaFree(dout);
    }
    printf("odd shapes: %d products checked, %d mismatched\n", checked, failed);
    all_close &= failed == 0;
  }
  double log_lib = 0, log_tile = 0, log_best = 0, log_cublas = 0;
  int cases = 0;
  for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
    const DecodeShape& sh = kDecodeShapes[si];
    const Weights4bit wt(sh.N, sh.K, 64, unsigned(si + 1));
    const int64_t N = wt.N, K = wt.K;
    // cuBLAS's operand: random bf16 weights of the same shape (its time only), cycled as well.
    const int dense_copies = int(std::max<int64_t>(2, (int64_t(256) << 20) / (N * K * 2)));
    std::vector<bf> hdense(size_t(N) * K);
    for (auto& d : hdense) d = __float2bfloat16((rand() % 2001 - 1000) / 1000.f);
    bf *dout, *ddense;
    CK(cudaMalloc(&ddense, size_t(N) * K * 2 * dense_copies));
    for (int c = 0; c < dense_copies; ++c)
      CK(cudaMemcpy(ddense + size_t(c) * N * K, hdense.data(), size_t(N) * K * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&dout, size_t(N) * 64 * 2));
    const bf* dA = wt.A;
    for (const int M : tokens) {
      std::vector<bf> ref(size_t(N) * M), got(ref.size());
      CK(launch_gemm_4bit_mma(dA, wt.weight(0), wt.code, wt.scales(0), (const bf*)nullptr, dout, M, N, K, 6, nullptr));
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(ref.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
      const double t_lib = time_us([&](int i) {
        launch_gemm_4bit_mma(dA, wt.weight(i), wt.code, wt.scales(i), (const bf*)nullptr, dout, M, N, K, 6, nullptr);
      });
      double t_cublas = 0;
#if HAVE_CUBLAS
      const float one = 1.f, zero = 0.f;
      t_cublas = time_us([&](int i) {
        cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(N), M, int(K), &one, ddense + size_t(i % dense_copies) * N * K,
                     CUDA_R_16BF, int(K), dA, CUDA_R_16BF, int(K), &zero, dout, CUDA_R_16BF, int(N), CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
      });
#endif
      printf("M=%-2d %-12s cublas %.1fus  library %.1fus (%.2fx cublas)\n", M, sh.name, t_cublas, t_lib,
             t_cublas / t_lib);
      double t_rule = 1e30, best = 1e30;  // the best tiling by its rule; the best of all
      for (const Tiling& tl : tilings) {
        if (M > tl.most_tokens || (M <= 16 && tl.most_tokens > 32)) continue;
        printf("      %-18s", tl.name);
        for (int sp : {0, 1, 2, 4, 8}) {
          CK(cudaMemset(dout, 0xff, ref.size() * 2));
          const cudaError_t launched = tl.launch(dA, wt.weight(0), wt.code, wt.scales(0), (const bf*)nullptr, dout, M, N,
                                                 K, 6, nullptr, sp);
          if (launched != cudaSuccess) {  // (a cluster this device cannot hold)
            printf("  s%d n/a (%s)", sp, cudaGetErrorString(launched));
            (void)cudaGetLastError();
            continue;
          }
          CK(cudaDeviceSynchronize());
          CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
          const bool close = near(got, ref, M <= 16 ? 0x1p-9f : 0x1p-12f);
          all_close &= close;
          const double us = time_us([&](int i) {
            tl.launch(dA, wt.weight(i), wt.code, wt.scales(i), (const bf*)nullptr, dout, M, N, K, 6, nullptr, sp);
          });
          if (sp == 0) t_rule = std::min(t_rule, us);
          best = std::min(best, us);
          printf("  %s%d %.1fus%s", sp == 0 ? "rule" : "s", sp, us, close ? "" : " MISMATCH");
        }
        printf("\n");
      }
      printf("      best tiling by its rule %.1fus (%.2fx cublas)\n", t_rule, t_cublas / t_rule);
      if (M > 16 && t_cublas > 0) {
        log_lib += std::log(t_lib), log_tile += std::log(t_rule), log_best += std::log(best);
        log_cublas += std::log(t_cublas), ++cases;
      }
    }
    cudaFree(dout), cudaFree(ddense);
  }
  printf("outputs close to the library's: %s\n", all_close ? "yes" : "NO");
  printf("geomean over %d cases of 17-64 tokens: cublas %.2f us, library %.2f us, tile (rule) %.2f us, tile (best) %.2f us\n",
         cases, std::exp(log_cublas / cases), std::exp(log_lib / cases), std::exp(log_tile / cases),
         std::exp(log_best / cases));
#if HAVE_CUBLAS
  cublasDestroy(handle);
#endif
  return all_close ? 0 : 2;
}
