// Every schema of the bitsandbytes operator library, in one place. Backend files hold only
// kernels and their TORCH_LIBRARY_IMPL; Python registers the fake (meta) kernels.
#include <torch/library.h>

TORCH_LIBRARY(bitsandbytes, m) {
  // Block-wise 8-bit quantization: codes shaped like A, one float32 absmax per block.
  m.def("quantize_blockwise(Tensor A, Tensor code, int blocksize) -> (Tensor, Tensor)");
  m.def("dequantize_blockwise(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype) -> Tensor");
  // One absmax (a 0-dim float32 tensor) for the whole tensor.
  m.def("quantize(Tensor A, Tensor code) -> (Tensor, Tensor)");
  m.def("dequantize(Tensor A, Tensor absmax, Tensor code, ScalarType dtype) -> Tensor");
  // The nearest code of each raw value, no scaling.
  m.def("quantize_no_absmax(Tensor A, Tensor code) -> Tensor");
  m.def("dequantize_no_absmax(Tensor A, Tensor code, ScalarType dtype) -> Tensor");

  // Quantile estimation: float32 estimates of num_quantiles equidistant quantiles of A
  // between the probabilities offset and 1 - offset.
  m.def("estimate_quantiles(Tensor A, float offset, int num_quantiles) -> Tensor");
}
