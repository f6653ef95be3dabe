#include "weight_linear_cluster.cuh"

namespace bnb::cuda {

template cudaError_t launch_weight_linear_cluster<__nv_bfloat16>(const __nv_bfloat16*, const int8_t*, const float*,
                                                                 const __nv_bfloat16*, int64_t, int64_t, int64_t,
                                                                 __nv_bfloat16*, cudaStream_t);

}  // namespace bnb::cuda
