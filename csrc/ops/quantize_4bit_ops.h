// The 4-bit ops (NF4, FP4), written once over a backend (CPU or CUDA): checks, contiguity and
// output allocation here, arithmetic in kernels/. Block sizes are checked against kFormat4bit
// (bnb/dtype.h); packed codes may be stored in any of kPackedStorage's dtypes (the same bytes
// viewed as that type, as FSDP needs for sharding them with the rest of a model).
#pragma once
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/string_view.h>

#include <array>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "bnb/block_scales.h"
#include "bnb/codes_4bit.h"
#include "checks.h"

namespace bnb::ops {

namespace fourbit_detail {

inline QuantType4bit parse_quant_type(c10::string_view name, const char* op) {
  if (name == "nf4") return QuantType4bit::NF4;
  if (name == "fp4") return QuantType4bit::FP4;
  BNB_CHECK_VALUE(false, op, ": quant_type must be nf4 or fp4, got '", std::string(name), "'");
}

inline constexpr std::array<c10::ScalarType, 5> kPackedStorage = {
    c10::ScalarType::Byte, c10::ScalarType::Char, c10::ScalarType::Half, c10::ScalarType::BFloat16,
    c10::ScalarType::Float};

inline void check_storage(c10::ScalarType t, const char* op, const char* arg) {
  bool ok = false;
  for (auto s : kPackedStorage) ok = ok || s == t;
  BNB_CHECK_TYPE(ok, op, ": ", arg, " must be uint8, int8, float16, bfloat16 or float32, got ", t);
}

// The value table the ops dequantize with, on `like`'s device, made once per device. FP4's
// code 8 is -0.0 here: the sign bit is set, and dequantized checkpoints hold -0.0 there.
inline at::Tensor code_table(QuantType4bit type, const at::Tensor& like) {
  static std::mutex mutex;
  static std::vector<std::tuple<int, c10::Device, at::Tensor>> tables;
  const std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [t, device, table] : tables)
    if (t == int(type) && device == like.device()) return table;
  at::Tensor host = at::empty({16}, at::TensorOptions().dtype(at::kFloat));
  std::memcpy(host.mutable_data_ptr<float>(), code_4bit(type), 16 * sizeof(float));
  if (type == QuantType4bit::FP4) host.mutable_data_ptr<float>()[8] = -0.0f;
  at::Tensor table = host.to(like.device());
  tables.emplace_back(int(type), like.device(), table);
  return table;
}

// The bytes of a packed tensor (any storage dtype), and a check that they are n codes: their
// ceil(n / 2) bytes, padded at most to whole 8-byte words (quantize_4bit pads to whole storage
// elements, and a tensor stored in a wide dtype may be passed as a view of narrower ones). More
// would be another tensor's codes read with this state's shape.
inline int64_t packed_bytes(const at::Tensor& A, int64_t n, const char* op, const char* arg) {
  check_storage(A.scalar_type(), op, arg);
  const int64_t bytes = A.numel() * int64_t(A.element_size()), need = packed_bytes_4bit(n);
  BNB_CHECK_VALUE(bytes >= need && bytes <= (need + 7) / 8 * 8, op, ": ", arg, " holds ", bytes,
                  " bytes of packed codes but ", n, " values are ", need, " bytes");
  return bytes;
}

inline void check_block_absmax(const at::Tensor& absmax, const at::Tensor& A, int64_t n, int64_t blocksize,
                               const char* op) {
  check_dtype(absmax, c10::ScalarType::Float, op, "absmax");
  check_same_device(absmax, A, op, "absmax", "A");
  BNB_CHECK_VALUE(absmax.numel() == num_blocks(n, blocksize), op, ": absmax must hold ", num_blocks(n, blocksize),
                  " values (one per block of ", blocksize, " of the ", n, " values), got ", absmax.numel());
}

inline int64_t product(c10::IntArrayRef shape, const char* op) {
  int64_t n = 1;
  for (int64_t d : shape) {
    BNB_CHECK_VALUE(d >= 0, op, ": shape must not have negative sizes, got ", shape);
    n *= d;
  }
  return n;
}

}  // namespace fourbit_detail

template <class Backend>
std::tuple<at::Tensor, at::Tensor> quantize_4bit(const at::Tensor& A, int64_t blocksize,
                                                 c10::string_view quant_type, c10::ScalarType quant_storage) {
  using namespace fourbit_detail;
  constexpr const char* op = "quantize_4bit";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_blocksize(blocksize, kFormat4bit, op);
  const QuantType4bit type = parse_quant_type(quant_type, op);
  check_storage(quant_storage, op, "quant_storage");
  const int64_t n = A.numel(), bytes = packed_bytes_4bit(n);
  const int64_t item = int64_t(c10::elementSize(quant_storage));
  const int64_t rows = (bytes + item - 1) / item;
  // Bytes past the last code (a storage wider than a byte) are zero, never left uninitialised.
  at::Tensor out = rows * item > bytes ? at::zeros({rows, 1}, A.options().dtype(quant_storage))
                                       : at::empty({rows, 1}, A.options().dtype(quant_storage));
  at::Tensor absmax = at::empty({num_blocks(n, blocksize)}, A.options().dtype(at::kFloat));
  if (n == 0) return {out, absmax};
  const at::Tensor a = A.contiguous();
  Backend::launch(A, Backend::quantize_4bit, dt, a.const_data_ptr(), type,
                  static_cast<uint8_t*>(out.mutable_data_ptr()), absmax.mutable_data_ptr<float>(), n, blocksize);
  return {out, absmax};
}

namespace fourbit_detail {

// What dequantizing the n = product(shape) packed codes of A to dtype checks first.
struct DequantizeTarget {
  DType dtype;
  int64_t n;
};
inline DequantizeTarget check_dequantize(const at::Tensor& A, int64_t blocksize, c10::IntArrayRef shape,
                                         c10::ScalarType dtype, const char* op) {
  const DType dt = kernel_dtype(dtype, op, "dtype");
  check_blocksize(blocksize, kFormat4bit, op);
  const int64_t n = product(shape, op);
  packed_bytes(A, n, op, "A");
  return {dt, n};
}

// The checked codes of A dequantized with a code table (16 float32 values on A's device) and
// scales checked against the n values and blocksize by the caller.
template <class Backend>
at::Tensor launch_dequantize(const at::Tensor& A, const BlockScales& scales, const at::Tensor& code,
                             int64_t blocksize, c10::IntArrayRef shape, c10::ScalarType dtype,
                             const DequantizeTarget& target) {
  at::Tensor out = at::empty(shape, A.options().dtype(dtype));
  if (target.n == 0) return out;
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  Backend::launch(A, Backend::dequantize_4bit, target.dtype, static_cast<const uint8_t*>(a.const_data_ptr()),
                  c.const_data_ptr<float>(), scales, out.mutable_data_ptr(), target.n, blocksize);
  return out;
}

// dequantize_4bit with given scales (plain or nested, checked by the caller: linear_4bit's).
template <class Backend>
at::Tensor dequantize_with_scales(const at::Tensor& A, const BlockScales& scales, const at::Tensor& code,
                                  int64_t blocksize, c10::IntArrayRef shape, c10::ScalarType dtype, const char* op) {
  return launch_dequantize<Backend>(A, scales, code, blocksize, shape, dtype,
                                    check_dequantize(A, blocksize, shape, dtype, op));
}

// dequantize_4bit with a given code table and a plain float32 absmax.
template <class Backend>
at::Tensor dequantize_with_code(const at::Tensor& A, const at::Tensor& absmax, const at::Tensor& code,
                                int64_t blocksize, c10::IntArrayRef shape, c10::ScalarType dtype, const char* op) {
  const DequantizeTarget target = check_dequantize(A, blocksize, shape, dtype, op);
  check_block_absmax(absmax, A, target.n, blocksize, op);
  const at::Tensor m = absmax.contiguous();
  return launch_dequantize<Backend>(A, BlockScales::plain(m.const_data_ptr<float>()), code, blocksize, shape, dtype,
                                    target);
}

}  // namespace fourbit_detail

template <class Backend>
at::Tensor dequantize_4bit(const at::Tensor& A, const at::Tensor& absmax, int64_t blocksize,
                           c10::string_view quant_type, c10::IntArrayRef shape, c10::ScalarType dtype) {
  using namespace fourbit_detail;
  constexpr const char* op = "dequantize_4bit";
  kernel_dtype(dtype, op, "dtype");
  check_blocksize(blocksize, kFormat4bit, op);
  const QuantType4bit type = parse_quant_type(quant_type, op);
  return dequantize_with_code<Backend>(A, absmax, code_table(type, A), blocksize, shape, dtype, op);
}

namespace fourbit_detail {

// What gemv_4bit and linear_4bit check alike: A [..., K] against a packed weight of shapeB =
// [N, K] on A's device, its block size and code table. Returns the product's shape.
struct ProductShape {
  int64_t M, N, K;
  std::vector<int64_t> out;  // A's shape with N last
};

inline ProductShape check_product(const at::Tensor& A, const at::Tensor& B, c10::IntArrayRef shapeB,
                                  const at::Tensor& code, int64_t blocksize, const char* op) {
  BNB_CHECK_VALUE(A.dim() >= 1, op, ": A must have at least one dimension ([..., K]), got a scalar");
  BNB_CHECK_VALUE(shapeB.size() == 2, op, ": shapeB must be the weight's shape [N, K], got ", shapeB);
  const int64_t N = shapeB[0], K = shapeB[1];
  BNB_CHECK_VALUE(N >= 0 && K >= 0, op, ": shapeB must not have negative sizes, got ", shapeB);
  BNB_CHECK_VALUE(A.size(-1) == K, op, ": A's last dimension (", A.size(-1), ") must equal the weight's K (", K,
                  ")");
  check_blocksize(blocksize, kFormat4bit, op);
  check_same_device(B, A, op, "B", "A");
  packed_bytes(B, N * K, op, "B");
  check_code(code, kFormat4bit, A, op, "code", "A");
  ProductShape shape{1, N, K, std::vector<int64_t>(A.sizes().begin(), A.sizes().end())};
  shape.out.back() = N;
  for (size_t d = 0; d + 1 < shape.out.size(); ++d) shape.M *= shape.out[d];  // rows of A (K may be 0)
  return shape;
}

// The fused kernel into a new tensor (the caller has handled empty products). bias may be null.
template <class Backend>
at::Tensor fused_product(const at::Tensor& A, const at::Tensor& B, const at::Tensor& code, const BlockScales& scales,
                         const void* bias, const ProductShape& shape, int64_t blocksize, const char* op) {
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  at::Tensor out = at::empty(shape.out, A.options());
  const at::Tensor a = A.contiguous(), b = B.contiguous(), c = code.contiguous();
  Backend::launch(A, Backend::gemv_4bit, dt, a.const_data_ptr(), static_cast<const uint8_t*>(b.const_data_ptr()),
                  c.const_data_ptr<float>(), scales, bias, out.mutable_data_ptr(), shape.M, shape.N, shape.K,
                  blocksize);
  return out;
}

}  // namespace fourbit_detail

template <class Backend>
at::Tensor gemv_4bit(const at::Tensor& A, const at::Tensor& B, c10::IntArrayRef shapeB, const at::Tensor& absmax,
                     const at::Tensor& code, int64_t blocksize) {
  using namespace fourbit_detail;
  constexpr const char* op = "gemv_4bit";
  kernel_dtype(A.scalar_type(), op, "A");
  const ProductShape shape = check_product(A, B, shapeB, code, blocksize, op);
  check_block_absmax(absmax, A, shape.N * shape.K, blocksize, op);
  if (shape.M == 0 || shape.N == 0 || shape.K == 0) return at::zeros(shape.out, A.options());  // a sum over nothing
  const at::Tensor m = absmax.contiguous();
  return fused_product<Backend>(A, B, code, BlockScales::plain(m.const_data_ptr<float>()), nullptr, shape,
                                blocksize, op);
}

template <class Backend>
void dequantize_4bit_out(const at::Tensor& A, const at::Tensor& absmax, int64_t blocksize, c10::string_view quant_type,
                         c10::IntArrayRef shape, c10::ScalarType dtype, at::Tensor& out) {
  copy_to_out(dequantize_4bit<Backend>(A, absmax, blocksize, quant_type, shape, dtype), out, "dequantize_4bit.out");
}

template <class Backend>
void gemv_4bit_out(const at::Tensor& A, const at::Tensor& B, c10::IntArrayRef shapeB, const at::Tensor& absmax,
                   const at::Tensor& code, int64_t blocksize, at::Tensor& out) {
  copy_to_out(gemv_4bit<Backend>(A, B, shapeB, absmax, code, blocksize), out, "gemv_4bit.out");
}

}  // namespace bnb::ops
