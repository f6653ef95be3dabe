// The 8-bit block-wise quantize kernel with its nearest-code lookup in 8-byte entries (the
// library's) and in 4-byte entries (kQuantizeEntry32, bnb/code_buckets.h), side by side on
// the same data: 2^28 values of float32, float16 and bfloat16, blocks of 64, 256 and 4096, the
// signed dynamic map. Both settings' codes and absmax must be equal byte for byte; times are
// medians of single launches, also as a fraction of the copy bandwidth (cudaMemcpy, measured
// here) for the bytes the kernel must move (input read, codes and absmax written). The last
// lines give each setting's geometric mean over the 16-bit cases. On a CUDA machine, from the
// repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include \
//     -Ikernels/cuda -Ikernels -o /tmp/ab_quantize_lookup benchmarks/ab_quantize_lookup.cu \
//     kernels/cuda/common/launch.cu kernels/cuda/common/device_caps.cu && /tmp/ab_quantize_lookup
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "harness_common.h"
#include "quantize/blockwise.cuh"
using namespace bnb;
using namespace bnb::cuda;

typedef void (*Kern)(const void*, const float*, uint8_t*, float*, int64_t);

struct Case {
  const char* dtype;
  int elem;  // bytes of an input value
  int block;
  Kern kernel[2];  // 8-byte, 4-byte entries
};

template <typename T, int B>
Case make_case(const char* dtype) {
  return {dtype, int(sizeof(T)), B,
          {reinterpret_cast<Kern>(quantize_blockwise_kernel<T, B, false>),
           reinterpret_cast<Kern>(quantize_blockwise_kernel<T, B, true>)}};
}

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int64_t n = int64_t(1) << 28;
  const double copy_gbs = copy_bandwidth_gbs();
  printf("%s, %d SMs, copy %.0f GB/s\n", prop.name, prop.multiProcessorCount, copy_gbs);

  const std::vector<float> map = dynamic_map(true, 7, 8);
  float* d_code;
  CK(cudaMalloc(&d_code, 1024));
  CK(cudaMemcpy(d_code, map.data(), 1024, cudaMemcpyHostToDevice));
  void* d_in;
  uint8_t *d_out[2];
  float* d_absmax[2];
  CK(cudaMalloc(&d_in, size_t(n) * 4));
  for (int v = 0; v < 2; ++v) {
    CK(cudaMalloc(&d_out[v], size_t(n)));
    CK(cudaMalloc(&d_absmax[v], size_t(n / 64) * 4));
  }
  // Random input: normal-like values (a sum of uniforms) with a few large ones, as weights and
  // optimizer states look; filled once as float32 and read as the case's dtype.
  std::vector<float> host(n);
  uint32_t xs = 2463534242u;
  auto next = [&]() { xs ^= xs << 13, xs ^= xs >> 17, xs ^= xs << 5; return xs; };
  for (int64_t i = 0; i < n; ++i) {
    const float u = ((next() >> 8) + (next() >> 8) + (next() >> 8)) * 0x1p-24f - 1.5f;
    host[i] = (next() & 1023) == 0 ? u * 40.f : u;
  }

  const Case cases[] = {make_case<float, 64>("float32"),          make_case<float, 256>("float32"),
                        make_case<float, 4096>("float32"),        make_case<__half, 64>("float16"),
                        make_case<__half, 256>("float16"),        make_case<__half, 4096>("float16"),
                        make_case<__nv_bfloat16, 64>("bfloat16"), make_case<__nv_bfloat16, 256>("bfloat16"),
                        make_case<__nv_bfloat16, 4096>("bfloat16")};
  const char* names[2] = {"8-byte", "4-byte"};
  const int smem[2] = {quantize_lookup_bytes<false>(), quantize_lookup_bytes<true>()};
  double logsum[2] = {0, 0};
  int count16 = 0;
  bool all_equal = true;
  std::vector<uint8_t> codes[2];
  std::vector<float> maxima[2];
  const char* filled = "";
  for (const Case& cs : cases) {
    if (strcmp(filled, cs.dtype) != 0) {  // the input in this dtype
      std::vector<uint8_t> bytes(size_t(n) * cs.elem);
      for (int64_t i = 0; i < n; ++i) {
        if (cs.elem == 4) {
          memcpy(&bytes[4 * i], &host[i], 4);
        } else if (strcmp(cs.dtype, "float16") == 0) {
          const __half h = __float2half(host[i]);
          memcpy(&bytes[2 * i], &h, 2);
        } else {
          const __nv_bfloat16 h = __float2bfloat16(host[i]);
          memcpy(&bytes[2 * i], &h, 2);
        }
      }
      CK(cudaMemcpy(d_in, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
      filled = cs.dtype;
    }
    const int64_t blocks = (n + cs.block - 1) / cs.block;
    const double bytes = double(n) * cs.elem + double(n) + double(blocks) * 4;
    printf("%-9s blocks of %-5d", cs.dtype, cs.block);
    float ms[2];
    for (int v = 0; v < 2; ++v) {
      CK(allow_dynamic_smem((const void*)cs.kernel[v], smem[v]));
      const int grid = int(std::min<int64_t>(n / 1024, persistent_grid((const void*)cs.kernel[v], kThreads, smem[v])));
      CK(cudaMemset(d_out[v], 0, size_t(n)));
      cs.kernel[v]<<<grid, kThreads, smem[v]>>>(d_in, d_code, d_out[v], d_absmax[v], n);
      CK(cudaGetLastError());
      CK(cudaDeviceSynchronize());
      codes[v].resize(n);
      maxima[v].resize(blocks);
      CK(cudaMemcpy(codes[v].data(), d_out[v], size_t(n), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(maxima[v].data(), d_absmax[v], size_t(blocks) * 4, cudaMemcpyDeviceToHost));
      ms[v] = median_ms([&] { cs.kernel[v]<<<grid, kThreads, smem[v]>>>(d_in, d_code, d_out[v], d_absmax[v], n); });
    }
    const bool equal = codes[0] == codes[1] && memcmp(maxima[0].data(), maxima[1].data(), size_t(blocks) * 4) == 0;
    all_equal &= equal;
    for (int v = 0; v < 2; ++v) {
      printf("  %s %.3f ms %3.0f%% of copy", names[v], ms[v], 100.0 * bytes / (ms[v] * 1e6) / copy_gbs);
      if (cs.elem == 2) logsum[v] += std::log(ms[v]);
    }
    if (cs.elem == 2) ++count16;
    printf("%s\n", equal ? "" : "  MISMATCH");
  }
  printf("codes and absmax equal across settings: %s\n", all_equal ? "yes" : "NO");
  for (int v = 0; v < 2; ++v)
    printf("%s entries: geomean %.4f ms over %d 16-bit cases\n", names[v], std::exp(logsum[v] / count16), count16);
  return all_equal ? 0 : 2;
}
