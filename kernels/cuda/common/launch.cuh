// Launch sizing that every kernel family needs, cached per device and kernel because the
// occupancy queries cost more host time than a launch: persistent grids, how many thread-
// block clusters fit at once, and the opt-in to more than 48 KiB of dynamic shared memory.
#pragma once
#include <cuda_runtime_api.h>

namespace bnb::cuda {

// Resident blocks per multiprocessor times multiprocessors, for persistent grids (1024 when
// there is no usable device).
int persistent_grid(const void* kernel, int threads, int dynamic_smem);

// How many clusters of `cluster` blocks of `kernel` the current device holds at once; 0
// when none fit or the query failed (the caller then launches without clusters or with one).
int max_active_clusters(const void* kernel, int threads, int cluster, int dynamic_smem);

// Lets `kernel` use `bytes` of dynamic shared memory on the current device: asks for more than
// the default only where its static shared memory and `bytes` together pass 48 KiB; a lookup
// once a kernel has been allowed as much.
cudaError_t allow_dynamic_smem(const void* kernel, int bytes);

// Launches `kernel` on `grid` in thread-block clusters of `cluster` blocks along x (sm_90), and
// reports the launch's error.
template <typename... Params, typename... Args>
cudaError_t launch_in_clusters(void (*kernel)(Params...), int cluster, dim3 grid, int threads, size_t smem,
                               cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(cluster);
  attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(unsigned(threads));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, args...);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace bnb::cuda
