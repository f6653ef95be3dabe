// gemm_4bit_mma with each slab of rows split over a thread-block cluster (SPLIT, sm_90) against
// the kernel without: the same data (bf16, NF4, blocks of 64 with nested scales), the decode
// shapes at 16, 32 and 64 tokens, weights cycled over 256 MiB so that they come from memory.
// Each split's output must match the unsplit kernel's within the rounding of a reordered float32
// sum (|a - b| <= 2^-7 |b| + 2^-12 max|b|); the row `rule` is what gemm_4bit_mma_split picks (up
// to kMmaMaxSplit CTAs a cluster); rows marked alt are tilings the launcher does not use, each
// checked against the library tiling's output the same way. The last lines give the geometric
// mean of the unsplit kernel, of the rule's choice and of the best split a case (library tilings
// only). On an sm_90 machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
//     -Ikernels -o /tmp/ab_4bit_split benchmarks/ab_4bit_split.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu && /tmp/ab_4bit_split
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include <cuda_bf16.h>
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_mma.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

typedef void (*Kern)(const bf*, const uint8_t*, const float*, const BlockScales, const bf*, bf*, int, int64_t, int64_t, int);
// A kernel shape: the library's for M tokens (launch_gemm_4bit_mma: with these blocks of 64,
// POST up to 16 tokens), or another tiling of the same kernel measured beside it (`alt`: only
// unsplit and two a cluster, outside the geomean). An alt shape that rounds otherwise than the
// library's (POST: each weight exact in float32, else rounded to bf16) is checked against its own
// unsplit output only.
struct Config { int M; Kern plain, split; int rows, threads, u; const char* name; bool alt, post; };

template <int MT, int RT, int U, bool POST> Config config(int M, const char* name, bool alt = false) {
  return {M, gemm_4bit_mma_kernel<bf, MT, RT, U, false, POST, 0, false>,
          gemm_4bit_mma_kernel<bf, MT, RT, U, false, POST, 0, true>, 16 * RT, 128, U, name, alt, POST};
}

static void launch(const Config& c, int split, const bf* A, const uint8_t* W, const float* code, const BlockScales& sc,
                   bf* out, int M, int64_t N, int64_t K) {
  const int64_t slabs = (N + c.rows - 1) / c.rows;
  if (split <= 1) {
    c.plain<<<int(slabs), c.threads>>>(A, W, code, sc, nullptr, out, M, N, K, 6);
    return;
  }
  CK(launch_in_clusters(c.split, split, dim3(unsigned(split), unsigned(slabs)), c.threads, 0, nullptr, A, W, code, sc,
                        (const bf*)nullptr, out, M, N, K, 6));
}

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "clusters")) return 0;
  printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
  // Other settings: 16 tokens one sub-chunk a round (with and without POST: without it, one was
  // faster here than the library's two, and slower in the library with it), 32 tokens four
  // (the library's until one measured faster: 254 registers against 128) and one with POST.
  const Config configs[] = {config<2, 2, 2, true>(16, "MT2 RT2 U2 post"), config<4, 2, 1, false>(32, "MT4 RT2 U1"),
                            config<8, 2, 1, false>(64, "MT8 RT2 U1"),
                            config<2, 2, 1, true>(16, "MT2 RT2 U1 post", true),
                            config<2, 2, 1, false>(16, "MT2 RT2 U1", true),
                            config<4, 2, 4, false>(32, "MT4 RT2 U4", true),
                            config<4, 2, 1, true>(32, "MT4 RT2 U1 post", true)};
  const std::vector<int> all_splits = {1, 2, 3, 4}, alt_splits = {1, 2};
  std::map<std::pair<int, int>, std::vector<bf>> library_out;  // (M, shape): the library shape's unsplit output
  std::map<int, bool> library_post;                             // M: whether the library's shape is POST
  bool all_close = true;
  double log_plain = 0, log_rule = 0, log_best = 0;
  int cases = 0;
  for (const Config& cf : configs) {
    for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
      const DecodeShape& sh = kDecodeShapes[si];
      const int M = cf.M;
      const Weights4bit wt(sh.N, sh.K, M, unsigned(64 * si + M));  // the same data for every tiling of a case
      const int64_t N = wt.N, K = wt.K;
      bf* dout;
      CK(cudaMalloc(&dout, size_t(N) * M * 2));
      const int64_t slabs = (N + cf.rows - 1) / cf.rows;
      const int rule = gemm_4bit_mma_split((const void*)cf.split, cf.threads, 0, slabs, int(K / kMmaSubK) / (4 * cf.u));
      std::vector<bf> ref(size_t(N) * M), got(ref.size());
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      printf("M=%-2d %-12s %s%s rule %d:", M, sh.name, cf.name, cf.alt ? " (alt)" : "", rule);
      double best = 1e30, t_plain = 0, t_rule = 0;
      for (int sp : cf.alt ? alt_splits : all_splits) {
        launch(cf, sp, wt.A, wt.weight(0), wt.code, wt.scales(0), dout, M, N, K);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(sp == 1 ? ref.data() : got.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
        // Each split against its shape's unsplit output; an alt shape's unsplit one against the
        // library shape's where both round alike (another order of the same float32 sums).
        auto near = [](const std::vector<bf>& x, const std::vector<bf>& want) { return first_far(x, want) < 0; };
        bool close = true;
        if (sp > 1) close = near(got, ref);
        else if (cf.alt && library_post.at(M) == cf.post) close = near(ref, library_out.at({M, si}));
        else if (!cf.alt) library_out[{M, si}] = ref, library_post[M] = cf.post;
        all_close &= close;
        std::vector<float> t;
        for (int r = 0; r < 9; ++r) {
          cudaEventRecord(e0);
          for (int i = 0; i < 40; ++i) launch(cf, sp, wt.A, wt.weight(i), wt.code, wt.scales(i), dout, M, N, K);
          cudaEventRecord(e1);
          CK(cudaEventSynchronize(e1));
          float ms;
          cudaEventElapsedTime(&ms, e0, e1);
          t.push_back(ms * 1000 / 40);
        }
        std::sort(t.begin(), t.end());
        const double us = t[4];
        if (sp == 1) t_plain = us;
        if (sp == rule) t_rule = us;
        best = std::min(best, us);
        printf("  s%d %.1fus %.0fGB/s%s", sp, us, wt.bytes() / us / 1e3, close ? "" : " MISMATCH");
      }
      printf("\n");
      if (!cf.alt) log_plain += std::log(t_plain), log_rule += std::log(t_rule), log_best += std::log(best), ++cases;
      cudaFree(dout);
    }
  }
  printf("outputs close across splits: %s\n", all_close ? "yes" : "NO");
  printf("geomean over the library's %d cases: unsplit %.2f us, rule %.2f us, best split %.2f us\n", cases,
         std::exp(log_plain / cases), std::exp(log_rule / cases), std::exp(log_best / cases));
  return all_close ? 0 : 2;
}
