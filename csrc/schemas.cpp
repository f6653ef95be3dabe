// Every schema of the bitsandbytes operator library, in one place. cpu/ and
// cuda/*_registration.cpp hold only the devices' TORCH_LIBRARY_IMPL; autograd_kernels.cpp the
// Autograd kernels; Python registers the fake (meta) kernels beside the wrappers that call the
// ops (bitsandbytes/functional/).
#include <torch/library.h>

TORCH_LIBRARY(bitsandbytes, m) {
  // Block-wise 8-bit quantization: codes shaped like A, one float32 absmax per block.
  m.def("quantize_blockwise(Tensor A, Tensor code, int blocksize) -> (Tensor, Tensor)");
  m.def("dequantize_blockwise(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype) -> Tensor");
  m.def("dequantize_blockwise.out(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype, "
        "Tensor! out) -> ()");
  // One absmax (a 0-dim float32 tensor) for the whole tensor.
  m.def("quantize(Tensor A, Tensor code) -> (Tensor, Tensor)");
  m.def("dequantize(Tensor A, Tensor absmax, Tensor code, ScalarType dtype) -> Tensor");
  // The nearest code of each raw value, no scaling.
  m.def("quantize_no_absmax(Tensor A, Tensor code) -> Tensor");
  m.def("dequantize_no_absmax(Tensor A, Tensor code, ScalarType dtype) -> Tensor");

  // 4-bit (NF4 / FP4): two codes a byte, the first value in the high nibble, one float32 absmax
  // per block; the packed bytes ([ceil(ceil(n/2) / itemsize), 1]) viewed as quant_storage.
  m.def("quantize_4bit(Tensor A, int blocksize, str quant_type, ScalarType quant_storage) -> (Tensor, Tensor)");
  m.def("dequantize_4bit(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype) "
        "-> Tensor");
  m.def("dequantize_4bit.out(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype, "
        "Tensor! out) -> ()");
  // A[..., K] @ dequant(B)^T for the packed weight B of shape shapeB = [N, K] and its table `code`,
  // the weight dequantized in registers: [..., N] in A's dtype.
  m.def("gemv_4bit(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize) -> Tensor");
  m.def("gemv_4bit.out(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize, Tensor! out) "
        "-> ()");
  // A @ dequant(B)^T (+ bias) with the weight's scales as stored: absmax float32, or uint8 codes
  // with nested_code, nested_absmax and the one-value nested_offset (compress_statistics). Picks the fused kernel or
  // dequantize + linear by the rows of A.
  m.def("linear_4bit(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize, "
        "Tensor? bias=None, Tensor? nested_code=None, Tensor? nested_absmax=None, Tensor? nested_offset=None, "
        "int nested_blocksize=256) -> Tensor");

  // Quantile estimation: float32 estimates of num_quantiles equidistant quantiles of A
  // between the probabilities offset and 1 - offset.
  m.def("estimate_quantiles(Tensor A, float offset, int num_quantiles) -> Tensor");

  // One optimizer step of a group of tensors that share dtype and state kind (float32 or uint8
  // state), updated in place in one launch. algorithm: adam, momentum, rmsprop, adagrad, lion,
  // ademamix (state1 holds its fast and slow EMAs stacked, [2, *shape], and absmax1 [2, blocks];
  // beta3 and alpha are this step's, after their schedules).
  // gnorm_scale: one clipping factor per tensor, read on the device. The op keeps its own
  // scratch (the device table of tensor pointers, per-tensor statistics) between steps of the
  // same tensors; the caller passes only the step.
  m.def("optimizer_update(str algorithm, Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] state1, "
        "Tensor(c!)[] state2, Tensor(d!)[] absmax1, Tensor(e!)[] absmax2, Tensor? qmap1, Tensor? qmap2, "
        "Tensor? gnorm_scale, float lr, float beta1, float beta2, float beta3, float alpha, float eps, "
        "float weight_decay, "
        "bool decoupled_weight_decay, float bias_correction1, float bias_correction2, float dampening, "
        "bool nesterov, int step, float max_unorm, bool block_wise) -> ()");
  // Optimizer state in CUDA unified memory: zeros of `size` and `dtype` on like's GPU, and
  // asynchronous migrations of managed tensors to their GPU or to host memory (no-ops for
  // other memory).
  m.def("paged_zeros(Tensor like, int[] size, ScalarType dtype) -> Tensor");
  m.def("prefetch_to_device(Tensor(a!)[] tensors) -> ()");
  m.def("prefetch_to_host(Tensor(a!)[] tensors) -> ()");
  // [total, free, reserved, peak_reserved] bytes of on_device's GPU: the driver's total and free
  // memory, and what torch's caching allocator holds there now and has held at most. What a
  // paged optimizer reads before each step to decide whether its state may have been evicted.
  m.def("cuda_memory_numbers(Tensor on_device) -> int[]");
}

// LLM.int8(): row-wise int8 quantization with outlier columns, int8 GEMM, dequantization. The
// schemas of ops the reference library also has are its own (names, defaults, overloads), so
// that code and backends written against it find them; ops of our own follow.
TORCH_LIBRARY_FRAGMENT(bitsandbytes, m) {
  // (int8 A shaped like A, float32 row_stats[rows], int64 outlier column indices or None without a
  // threshold); threshold > 0 finds the columns holding any |value| >= threshold and zeroes them
  // in the int8 output.
  m.def("int8_vectorwise_quant(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor?)");
  // float32 A * row_stats / 127.
  m.def("int8_vectorwise_dequant(Tensor A, Tensor stats) -> Tensor");
  // (out_row, out_col, row_stats, col_stats, outlier columns): row- and column-wise at once.
  m.def("int8_double_quant(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor, Tensor, Tensor?)");
  // int32 A[..., K] x B[N, K]^T.
  m.def("int8_linear_matmul(Tensor A, Tensor B) -> Tensor");
  m.def("int8_linear_matmul.out(Tensor A, Tensor B, Tensor! out) -> ()");
  // A_int32 * row_stats * col_stats / 127^2 + bias, in `dtype` (default float16).
  m.def("int8_mm_dequant(Tensor A, Tensor row_stats, Tensor col_stats, ScalarType? dtype=None, Tensor? bias=None) "
        "-> Tensor");
  // int8_linear_matmul then int8_mm_dequant (a composite of the two).
  m.def("int8_scaled_mm(Tensor A, Tensor B, Tensor row_stats, Tensor col_stats, Tensor? bias=None, "
        "ScalarType? dtype=None) -> Tensor");
  // int8_vectorwise_quant with the outlier columns listed on the device: (int8 A, row_stats,
  // int32 outlier_list[cols + 1] = [count, ascending column indices, zeros...]).
  m.def("int8_vectorwise_quant_outliers(Tensor A, float threshold) -> (Tensor, Tensor, Tensor)");
  // int8_mm_dequant + sum over the listed columns c of X[m, c] * W[n, c], the count read on the
  // device; W is 16-bit (`dtype`) or int8 (scaled by col_stats / 127).
  m.def("int8_mm_dequant_outliers(Tensor A, Tensor row_stats, Tensor col_stats, Tensor? bias, Tensor X, Tensor W, "
        "Tensor outlier_list, ScalarType dtype) -> Tensor");
  // A[..., K] x (CB * SCB / 127)^T + bias in A's dtype: the weight-streaming path for few rows.
  m.def("int8_weight_linear(Tensor A, Tensor CB, Tensor SCB, Tensor? bias) -> Tensor");
}
