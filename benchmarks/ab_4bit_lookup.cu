// The fused 4-bit products' two ways to turn codes into values, side by side on the same data:
// the 256-entry table of code pairs in shared memory (setting 0) and byte permutes from the 16
// values held in registers (code_planes.cuh) for part or all of a lane's words (settings 1-4 of
// the one-token kernel gemm_4bit_stream.cuh, 1-2 of gemm_4bit_mma.cuh). bf16, NF4, plain and
// nested scales, the decode shapes at 1, 8, 16, 32 and 64 tokens; weights cycle over copies
// (256 MiB) so that they come from memory. Every setting's output must equal setting 0's bit for
// bit (the same values reach the same mma); the last lines name each kernel's fastest setting
// by the geometric mean of its times. On a CUDA machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include \
//     -Ikernels/cuda -Ikernels -o /tmp/ab_4bit_lookup benchmarks/ab_4bit_lookup.cu && /tmp/ab_4bit_lookup [M]
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <functional>
#include <cstring>
#include <cmath>
#include <map>
#include <cuda_bf16.h>
#include "bnb/codes_4bit.h"
#include "harness_common.h"
#include "fourbit/gemm_4bit_stream.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

typedef void (*Kern)(const bf*, const uint8_t*, const float*, const BlockScales, const bf*, bf*, int, int64_t, int64_t, int);
struct Variant { int family, param; Kern k; int rows_per_cta; int threads; };

template <bool SPLIT, int J> Variant sv() { return {0, J, gemm_4bit_stream_kernel<bf, 1, SPLIT, kStreamRound, 1, J>, 16, kStreamWarps * 32}; }
template <int MT, int RT, int U, bool POST, int W, int WARPS> Variant mv() {
  return {1, W, gemm_4bit_mma_kernel<bf, MT, RT, U, false, POST, W>, 16 * RT, WARPS * 32}; }

int main(int argc, char** argv) {
  const int only_m = argc > 1 ? atoi(argv[1]) : 0;
  struct Shape { const char* name; int64_t N, K; };
  Shape shapes[] = {{"8192^2", 8192, 8192}, {"4096->11008", 11008, 4096}, {"11008->4096", 4096, 11008}, {"4096^2", 4096, 4096}};
  int dev; CK(cudaGetDevice(&dev)); cudaDeviceProp pr; CK(cudaGetDeviceProperties(&pr, dev));
  printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
  printf("copy bandwidth %.0f GB/s\n", copy_bandwidth_gbs());
  float* d_code; CK(cudaMalloc(&d_code, 64)); CK(cudaMemcpy(d_code, bnb::kNF4Code, 64, cudaMemcpyHostToDevice));
  std::vector<float> ncode(256); for (int i = 0; i < 256; ++i) ncode[i] = (i - 127.5f) / 127.5f;
  float* d_ncode; CK(cudaMalloc(&d_ncode, 1024)); CK(cudaMemcpy(d_ncode, ncode.data(), 1024, cudaMemcpyHostToDevice));
  srand(1);
  bool all_equal = true;
  std::map<std::pair<int, int>, double> logsum;
  std::map<std::pair<int, int>, int> count;
  struct Case { int M; int bs_log; bool nested; std::vector<Variant> v; };
  std::vector<Case> cases = {
    {1, 6, false, {sv<true, 0>(), sv<true, 1>(), sv<true, 2>(), sv<true, 3>(), sv<true, 4>()}},
    {1, 6, true, {sv<true, 0>(), sv<true, 2>(), sv<true, 4>()}},
    {1, 7, false, {sv<false, 0>(), sv<false, 2>(), sv<false, 4>()}},
    {8, 6, true, {sv<true, 0>(), sv<true, 2>(), sv<true, 4>()}},
    {16, 6, true, {mv<2, 2, 2, true, 0, 4>(), mv<2, 2, 2, true, 1, 4>(), mv<2, 2, 2, true, 2, 4>()}},
    {32, 6, true, {mv<4, 2, 4, false, 0, 4>(), mv<4, 2, 4, false, 1, 4>(), mv<4, 2, 4, false, 2, 4>()}},
    {64, 6, true, {mv<8, 1, 2, false, 0, 4>(), mv<8, 1, 2, false, 1, 4>(), mv<8, 1, 2, false, 2, 4>()}},
  };
  for (auto& cs : cases) {
    if (only_m && cs.M != only_m) continue;
    const int M = cs.M, bs_log = cs.bs_log; const bool nested = cs.nested;
    for (auto& sh : shapes) {
      const int64_t N = sh.N, K = sh.K, nbytes = N * K / 2, blocks = N * K >> bs_log;
      const int copies = std::max<int64_t>(2, (int64_t(256) << 20) / nbytes);
      std::vector<uint8_t> hw(nbytes); for (auto& b : hw) b = rand() & 0xff;
      std::vector<float> habs(blocks); for (auto& a : habs) a = 0.5f + (rand() % 1000) / 1000.f;
      std::vector<uint8_t> hq(blocks); for (auto& q : hq) q = rand() % 255;
      const int64_t groups = (blocks + 255) / 256;
      std::vector<float> hna(groups); for (auto& a : hna) a = 0.5f + (rand() % 1000) / 1000.f;
      float hoff = 0.9f;
      std::vector<bf> hA(M * K); for (auto& a : hA) a = __float2bfloat16((rand() % 2001 - 1000) / 1000.f);
      uint8_t* dW; CK(cudaMalloc(&dW, nbytes * copies));
      for (int c = 0; c < copies; ++c) CK(cudaMemcpy(dW + c * nbytes, hw.data(), nbytes, cudaMemcpyHostToDevice));
      float *dabs, *dna, *doff; uint8_t* dq;
      CK(cudaMalloc(&dabs, blocks * 4 * copies)); CK(cudaMalloc(&dq, blocks * copies)); CK(cudaMalloc(&dna, groups * 4)); CK(cudaMalloc(&doff, 4));
      for (int c = 0; c < copies; ++c) { CK(cudaMemcpy(dabs + c * blocks, habs.data(), blocks * 4, cudaMemcpyHostToDevice));
                                         CK(cudaMemcpy(dq + c * blocks, hq.data(), blocks, cudaMemcpyHostToDevice)); }
      CK(cudaMemcpy(dna, hna.data(), groups * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(doff, &hoff, 4, cudaMemcpyHostToDevice));
      bf *dA, *dout; CK(cudaMalloc(&dA, M * K * 2)); CK(cudaMalloc(&dout, N * M * 2));
      CK(cudaMemcpy(dA, hA.data(), M * K * 2, cudaMemcpyHostToDevice));
      auto scales_of = [&](int c) {
        BlockScales s;
        if (nested) { s.nested = dq + c * blocks; s.nested_code = d_ncode; s.nested_absmax = dna; s.offset = doff; s.log2_nested_blocksize = 8; }
        else s.absmax = dabs + c * blocks;
        return s; };
      std::vector<bf> ref(N * M), got(N * M);
      cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
      printf("M=%-2d %-12s bs %d %s:", M, sh.name, 1 << bs_log, nested ? "nested" : "plain ");
      for (size_t v = 0; v < cs.v.size(); ++v) {
        const Variant& var = cs.v[v];
        const int grid = int((N + var.rows_per_cta - 1) / var.rows_per_cta);
        var.k<<<grid, var.threads>>>(dA, dW, d_code, scales_of(0), nullptr, dout, M, N, K, bs_log);
        CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(v == 0 ? ref.data() : got.data(), dout, N * M * 2, cudaMemcpyDeviceToHost));
        const bool eq = v == 0 || memcmp(ref.data(), got.data(), N * M * 2) == 0;
        all_equal &= eq;
        std::vector<float> t;
        for (int r = 0; r < 9; ++r) {
          cudaEventRecord(e0);
          for (int i = 0; i < 40; ++i) { const int c = i % copies;
            var.k<<<grid, var.threads>>>(dA, dW + c * nbytes, d_code, scales_of(c), nullptr, dout, M, N, K, bs_log); }
          cudaEventRecord(e1); CK(cudaEventSynchronize(e1)); float ms; cudaEventElapsedTime(&ms, e0, e1); t.push_back(ms * 1000 / 40);
        }
        std::sort(t.begin(), t.end());
        const double bytes = nbytes + (nested ? blocks : blocks * 4.0);
        logsum[{var.family, var.param}] += std::log(t[4]);
        count[{var.family, var.param}] += 1;
        printf("  v%zu %.1fus %.0fGB/s%s", v, t[4], bytes / t[4] / 1e3, eq ? "" : " MISMATCH");
      }
      printf("\n");
      cudaFree(dW); cudaFree(dabs); cudaFree(dq); cudaFree(dna); cudaFree(doff); cudaFree(dA); cudaFree(dout);
    }
  }
  printf("results equal across variants: %s\n", all_equal ? "yes" : "NO");
  // The best setting of each kernel: geometric mean over the cases every setting ran.
  for (int f = 0; f < 2; ++f) {
    int most = 0;
    for (auto& [k, n] : count) if (k.first == f) most = std::max(most, n);
    int best = 0; double best_t = 1e30;
    for (auto& [k, n] : count) {
      if (k.first != f || n != most) continue;
      const double gm = std::exp(logsum[k] / n);
      printf("family %d setting %d: geomean %.2f us over %d\n", f, k.second, gm, n);
      if (gm < best_t) { best_t = gm; best = k.second; }
    }
    if (most) printf("BEST_%s=%d\n", f == 0 ? "STREAM" : "MMA", best);
  }
  if (!all_equal) return 2;
  return 0;
}
