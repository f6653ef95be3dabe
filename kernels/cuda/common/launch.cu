#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "device_caps.cuh"
#include "launch.cuh"

namespace bnb::cuda {

int persistent_grid(const void* kernel, int threads, int dynamic_smem) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, int, int>, int> cache;
  const DeviceCaps& caps = device_caps();
  if (caps.device < 0) return 1024;
  const auto key = std::make_tuple(caps.device, kernel, threads, dynamic_smem);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, dynamic_smem) != cudaSuccess)
    (void)cudaGetLastError();  // sized as one block an SM; the launch reports a real problem
  const int grid = std::max(1, caps.sm_count * std::max(1, per_sm));
  cache.emplace(key, grid);
  return grid;
}

int max_active_clusters(const void* kernel, int threads, int cluster, int dynamic_smem) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, int, int, int>, int> cache;
  const DeviceCaps& caps = device_caps();
  if (caps.device < 0) return 0;
  const auto key = std::make_tuple(caps.device, kernel, threads, cluster, dynamic_smem);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = unsigned(cluster);
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(cluster));
  config.blockDim = dim3(unsigned(threads));
  config.dynamicSmemBytes = size_t(dynamic_smem);
  config.attrs = &attr;
  config.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();  // a failed query is not the caller's error
    clusters = 0;
  }
  cache.emplace(key, clusters);
  return clusters;
}

cudaError_t allow_dynamic_smem(const void* kernel, int bytes) {
  if (bytes <= 0) return cudaSuccess;
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*>, int> allowed;
  const DeviceCaps& caps = device_caps();
  if (caps.device < 0) return cudaErrorInvalidDevice;
  const auto key = std::make_tuple(caps.device, kernel);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = allowed.find(key);
  if (it != allowed.end() && it->second >= bytes) return cudaSuccess;
  // The default 48 KiB holds the kernel's static shared memory and the dynamic bytes together.
  cudaFuncAttributes attributes;
  cudaError_t err = cudaFuncGetAttributes(&attributes, kernel);
  if (err != cudaSuccess) return err;
  if (attributes.sharedSizeBytes + size_t(bytes) > size_t(48 * 1024))
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (err != cudaSuccess) return err;
  allowed[key] = bytes;
  return cudaSuccess;
}

}  // namespace bnb::cuda
