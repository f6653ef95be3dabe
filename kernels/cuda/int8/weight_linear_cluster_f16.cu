#include "weight_linear_cluster.cuh"

namespace bnb::cuda {

template cudaError_t launch_weight_linear_cluster<__half>(const __half*, const int8_t*, const float*, const __half*, int64_t,
                                                      int64_t, int64_t, __half*, cudaStream_t);

}  // namespace bnb::cuda
