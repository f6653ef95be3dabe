// What the standalone A/B harnesses (benchmarks/ab_*.cu) share: the median time of a launch,
// the copy bandwidth they report fractions of, and the dynamic map.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime_api.h>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA %s line %d\n", cudaGetErrorString(e), __LINE__); exit(1); } } while (0)

// The median of `reps` timings of launch() alone, milliseconds (CUDA events around each).
template <typename Launch>
float median_ms(Launch launch, int reps = 15) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(e0);
    launch();
    cudaEventRecord(e1);
    CK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[reps / 2];
}

// The current device's properties, or false (after saying so) where it is older than sm_90,
// which the harnesses' clusters and bulk copies need; `what` names what needs it.
inline bool sm90_device(cudaDeviceProp& pr, const char* what) {
  int dev;
  CK(cudaGetDevice(&dev));
  CK(cudaGetDeviceProperties(&pr, dev));
  if (pr.major >= 9) return true;
  printf("%s: %s need sm_90\n", pr.name, what);
  return false;
}

// Copy bandwidth: a 1 GiB device-to-device copy, bytes read + written over its median time.
inline double copy_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  const float ms = median_ms([&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 13);
  cudaFree(a), cudaFree(b);
  return 2.0 * bytes / (ms * 1e6);
}

// The dynamic tree map (bitsandbytes.functional.create_dynamic_map rebuilt in float64: the
// settings a harness compares are compared with each other, not with the library's map, so
// the last bit of a value does not matter here).
static std::vector<float> dynamic_map(bool is_signed, int max_exp, int total_bits) {
  const int value_bits = total_bits - 1;
  std::vector<double> v;
  for (int e = 0; e < max_exp; ++e) {
    const int frac = e + value_bits - max_exp + (is_signed ? 0 : 1);
    const int count = (1 << frac);
    const double scale = std::pow(10.0, -(max_exp - 1) + e);
    for (int i = 0; i < count; ++i) {
      const double lo = 0.1 + 0.9 * i / count, hi = 0.1 + 0.9 * (i + 1) / count;
      v.push_back(scale * (lo + hi) / 2);
      if (is_signed) v.push_back(-scale * (lo + hi) / 2);
    }
  }
  v.push_back(0.0);
  v.push_back(1.0);
  while (v.size() < size_t(1) << total_bits) v.push_back(0.0);
  std::sort(v.begin(), v.end());
  return std::vector<float>(v.begin(), v.end());
}
