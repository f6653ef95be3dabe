// What every CUDA op needs around a launch: the tensor's device made current, its current
// stream (never a fixed one), and a launch failure turned into a Python error.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "checks.h"

namespace bnb::ops {

template <class Launch>
void launch_on(const at::Tensor& like, Launch&& launch) {
  const c10::cuda::CUDAGuard guard(like.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(like.get_device()).stream();
  const cudaError_t err = launch(stream);
  BNB_CHECK(err == cudaSuccess, "CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace bnb::ops
