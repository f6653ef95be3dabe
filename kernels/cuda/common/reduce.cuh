// Reductions over the lanes of a warp and over a block, by butterfly shuffles (every lane
// gets the result). G is the width of the lane groups reduced (a power of two up to 32):
// consecutive lanes, halves first, in the order the kernels were tuned with.
#pragma once

namespace bnb::cuda {

template <int G = 32>
__device__ __forceinline__ float warp_max(float v) {
  static_assert(G >= 1 && G <= 32 && (G & (G - 1)) == 0, "a power of two up to a warp");
#pragma unroll
  for (int o = G / 2; o >= 1; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <int G = 32, typename V>
__device__ __forceinline__ V warp_sum(V v) {
  static_assert(G >= 1 && G <= 32 && (G & (G - 1)) == 0, "a power of two up to a warp");
#pragma unroll
  for (int o = G / 2; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Max over the block; every thread gets the result. `scratch` holds blockDim.x / 32 floats
// and may be reused right after (the first barrier protects the previous call's reads).
__device__ __forceinline__ float block_max(float v, float* scratch) {
  v = warp_max(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_max(v);
}

}  // namespace bnb::cuda
