// The staged 4-bit product (gemm_4bit_staged.cuh: 128 rows a CTA, activations and weight copied
// through shared memory stages, K split over clusters) against the library's tensor-core products
// at 1-64 tokens (launch_gemm_4bit_stream up to 8, launch_gemm_4bit_mma beyond, each with its own
// tiling and split), on the decode shapes: bf16, NF4,
// blocks of 64 with nested scales, weights cycled over 256 MiB so that they come from memory.
// Every output is checked against a float64 product of the same bytes on the host (the bound of
// tests/reference_4bit.py: 3u sum|a w| + u |ref| + K 2^-24 sum|a w|, u = 2^-8); each staged
// setting is timed at 1, 2, 4 and 8 CTAs a cluster and at the launcher's pick (`rule`). The last
// lines give the geometric means: the library, each setting at its rule, the best of each case.
// On an sm_90 machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include -Ikernels/cuda \
//     -Ikernels -o /tmp/ab_4bit_staged benchmarks/ab_4bit_staged.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu && /tmp/ab_4bit_staged
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include <cuda_bf16.h>
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_staged.cuh"
#include "fourbit/gemm_4bit_stream.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

typedef cudaError_t (*Launch)(const bf*, const uint8_t*, const float*, const BlockScales&, const bf*, bf*, int64_t,
                              int64_t, int64_t, int, int, cudaStream_t);
struct Setting { const char* name; int min_tokens, max_tokens; Launch launch; };
template <int MT, int STAGES, bool POST> Setting setting(const char* name) {
  return {name, MT == 1 ? 1 : MT * 4 + 1, MT * 8, launch_gemm_4bit_staged_as<bf, MT, STAGES, POST>};
}

// The float64 product of A's first `tokens` rows with the weight of copy 0, and sum |a w|.
static void reference(const Weights4bit& wt, int tokens, std::vector<double>& ref, std::vector<double>& mag) {
  const int64_t N = wt.N, K = wt.K;
  std::vector<uint8_t> w(wt.nbytes), q(wt.blocks);
  std::vector<float> amax(wt.groups), ncode(256);
  std::vector<bf> a(size_t(tokens) * K);
  float offset;
  CK(cudaMemcpy(w.data(), wt.w, w.size(), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(q.data(), wt.q, q.size(), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(amax.data(), wt.group_absmax, amax.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ncode.data(), wt.nested_code, 1024, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(&offset, wt.offset, 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(a.data(), wt.A, a.size() * 2, cudaMemcpyDeviceToHost));
  std::vector<double> a64(a.size());
  for (size_t i = 0; i < a.size(); ++i) a64[i] = __bfloat162float(a[i]);
  ref.assign(size_t(tokens) * N, 0.0);
  mag.assign(ref.size(), 0.0);
  auto rows = [&](int64_t n_begin, int64_t n_end) {
    std::vector<double> wrow(K);
    for (int64_t n = n_begin; n < n_end; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = n * K + k;
        const uint8_t byte = w[i / 2];
        const int nib = (i & 1) ? (byte & 15) : (byte >> 4);
        const int64_t b = i >> 6;
        const float scale = nested_scale_of(ncode[q[b]], amax[b >> 8], q[b], offset);
        wrow[k] = double(kNF4Code[nib]) * double(scale);
      }
      for (int tok = 0; tok < tokens; ++tok) {
        double s = 0, m = 0;
        const double* ar = a64.data() + size_t(tok) * K;
        for (int64_t k = 0; k < K; ++k) s += ar[k] * wrow[k], m += std::fabs(ar[k] * wrow[k]);
        ref[size_t(tok) * N + n] = s, mag[size_t(tok) * N + n] = m;
      }
    }
  };
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(rows, N * i / threads, N * (i + 1) / threads);
  for (auto& th : pool) th.join();
}

// Whether the first M tokens of `out` are within the bound of the float64 product.
static bool within_bound(const std::vector<bf>& out, const std::vector<double>& ref, const std::vector<double>& mag,
                         int M, int64_t N, int64_t K) {
  const double u = 0x1p-8;
  for (size_t i = 0; i < size_t(M) * N; ++i) {
    const double tol = 3 * u * mag[i] + u * std::fabs(ref[i]) + double(K) * 0x1p-24 * mag[i] + 1e-30;
    if (!(std::fabs(double(__bfloat162float(out[i])) - ref[i]) <= tol)) return false;
  }
  return true;
}

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "clusters")) return 0;
  printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
  const Setting settings[] = {setting<1, 6, true>("MT1 S6 post"), setting<2, 4, true>("MT2 S4 post"),
                              setting<2, 6, true>("MT2 S6 post"), setting<4, 4, true>("MT4 S4 post"), setting<4, 4, false>("MT4 S4"),
                              setting<4, 3, true>("MT4 S3 post"), setting<8, 3, true>("MT8 S3 post"),
                              setting<8, 3, false>("MT8 S3"), setting<8, 4, true>("MT8 S4 post")};
  constexpr int kSettings = sizeof(settings) / sizeof(settings[0]);
  const int token_counts[] = {1, 8, 16, 20, 32, 48, 64};
  bool all_ok = true;
  double log_lib = 0, log_best = 0, log_rule[kSettings] = {};
  int cases = 0, rule_cases[kSettings] = {};
  for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
    const DecodeShape& sh = kDecodeShapes[si];
    const Weights4bit wt(sh.N, sh.K, 64, unsigned(1000 + si));
    const int64_t N = wt.N, K = wt.K;
    std::vector<double> ref, mag;
    reference(wt, 64, ref, mag);
    bf* dout;
    CK(cudaMalloc(&dout, size_t(N) * 64 * 2));
    std::vector<bf> got(size_t(N) * 64);
    for (int M : token_counts) {
      // The time of one launch (us, median of nine runs of 40 over the copies) and its check.
      auto measure = [&](auto launch, bool& ok) {
        CK(cudaMemset(dout, 0xff, got.size() * 2));
        CK(launch(0));
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
        ok = within_bound(got, ref, mag, M, N, K);
        const float ms = median_ms([&] { for (int i = 0; i < 40; ++i) CK(launch(i)); }, 9);
        return ms * 1000 / 40;
      };
      bool ok;
      const double lib = measure([&](int c) {
        return M <= 8 ? launch_gemm_4bit_stream<bf>(wt.A, wt.weight(c), wt.code, wt.scales(c), nullptr, dout, M, N, K, 6, nullptr)
                      : launch_gemm_4bit_mma<bf>(wt.A, wt.weight(c), wt.code, wt.scales(c), nullptr, dout, M, N, K, 6, nullptr);
      }, ok);
      all_ok &= ok;
      printf("M=%-2d %-12s library %.1fus %.0fGB/s%s\n", M, sh.name, lib, wt.bytes() / lib / 1e3, ok ? "" : " FAR");
      double best = lib;
      for (int x = 0; x < kSettings; ++x) {
        const Setting& st = settings[x];
        if (M < st.min_tokens || M > st.max_tokens) continue;
        printf("      %-12s", st.name);
        for (int split : {1, 2, 4, 8, 0}) {
          const double us = measure([&](int c) {
            return st.launch(wt.A, wt.weight(c), wt.code, wt.scales(c), nullptr, dout, M, N, K, 6, split, nullptr);
          }, ok);
          all_ok &= ok;
          best = std::min(best, us);
          if (split == 0) log_rule[x] += std::log(us), ++rule_cases[x];
          char label[8];
          snprintf(label, sizeof(label), split ? "s%d" : "rule", split);
          printf("  %s %.1fus%s", label, us, ok ? "" : " FAR");
        }
        printf("\n");
      }
      log_lib += std::log(lib), log_best += std::log(best), ++cases;
    }
    cudaFree(dout);
  }
  printf("all outputs within the float64 bound: %s\n", all_ok ? "yes" : "NO");
  printf("geomean over %d cases: library %.2f us, best of each case %.2f us\n", cases, std::exp(log_lib / cases),
         std::exp(log_best / cases));
  for (int x = 0; x < kSettings; ++x)
    if (rule_cases[x]) printf("  %-12s at its rule: %.2f us over its %d cases\n", settings[x].name,
                              std::exp(log_rule[x] / rule_cases[x]), rule_cases[x]);
  return all_ok ? 0 : 2;
}
