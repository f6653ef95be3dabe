// Argument checks shared by every op: each failure names the op, the argument and what was
// expected, so a user can fix the call without reading our source.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>
#include <type_traits>

#include "bnb/dtype.h"

namespace bnb::ops::detail {

// Error messages are built by plain string concatenation (std::to_string for numbers), never
// through iostreams: on installations where this extension and torch were built by different
// C++ toolchains, formatting a number through an ostream (as TORCH_CHECK's message builder
// does) crashed the process instead of raising the error.
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline void append(std::string& s, T v) { s += std::to_string(v); }
inline void append(std::string& s, double v) { s += std::to_string(v); }
inline void append(std::string& s, c10::ScalarType t) { s += c10::toString(t); }
inline void append(std::string& s, const c10::Device& d) { s += d.str(); }
inline void append(std::string& s, c10::IntArrayRef v) {
  s += "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  s += "]";
}

template <typename... Args>
std::string message(const Args&... args) {
  std::string s;
  (append(s, args), ...);
  return s;
}

}  // namespace bnb::ops::detail

// The exception a bad argument raises is chosen here, once for every op:
//   BNB_CHECK_VALUE  a bad value: shape, size, block size, map size, device, contiguity,
//                    range (ValueError in Python);
//   BNB_CHECK_TYPE   a bad dtype (TypeError in Python).
// Both name the op and the argument. BNB_CHECK (RuntimeError) is for what is not the caller's
// argument, such as a broken internal invariant; argument checks do not use it.
#define BNB_CHECK_VALUE(cond, ...)                                                                   \
  do {                                                                                               \
    if (C10_UNLIKELY(!(cond))) C10_THROW_ERROR(ValueError, ::bnb::ops::detail::message(__VA_ARGS__)); \
  } while (0)
#define BNB_CHECK_TYPE(cond, ...)                                                                 \
  do {                                                                                            \
    if (C10_UNLIKELY(!(cond))) C10_THROW_ERROR(TypeError, ::bnb::ops::detail::message(__VA_ARGS__)); \
  } while (0)
#define BNB_CHECK(cond, ...)                                                                  \
  do {                                                                                        \
    if (C10_UNLIKELY(!(cond))) C10_THROW_ERROR(Error, ::bnb::ops::detail::message(__VA_ARGS__)); \
  } while (0)

namespace bnb::ops {

namespace detail {

// "float32, float16 or bfloat16", from the one list of kernel dtypes.
inline std::string float_dtype_list() {
  std::string s;
  constexpr size_t n = sizeof(kFloatDTypes) / sizeof(kFloatDTypes[0]);
  for (size_t i = 0; i < n; ++i) {
    if (i) s += i + 1 == n ? " or " : ", ";
    s += dtype_name(kFloatDTypes[i]);
  }
  return s;
}

// "64, 128, ..., 4096": the block sizes of a format.
inline std::string blocksize_list(const QuantFormat& format) {
  std::string s;
  for (int64_t b = format.min_blocksize; b <= format.max_blocksize; b *= 2) s += (s.empty() ? "" : ", ") + std::to_string(b);
  return s;
}

}  // namespace detail

inline DType kernel_dtype(c10::ScalarType t, const char* op, const char* arg) {
  switch (t) {
    case c10::ScalarType::Float: return DType::Float32;
    case c10::ScalarType::Half: return DType::Float16;
    case c10::ScalarType::BFloat16: return DType::BFloat16;
    default:
      BNB_CHECK_TYPE(false, op, ": ", arg, " must be ", detail::float_dtype_list(), ", got ", t);
  }
}

inline void check_dtype(const at::Tensor& t, c10::ScalarType want, const char* op, const char* arg) {
  BNB_CHECK_TYPE(t.scalar_type() == want, op, ": ", arg, " must be ", want, ", got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* arg,
                              const char* ref_arg) {
  BNB_CHECK_VALUE(t.device() == ref.device(), op, ": ", arg, " is on ", t.device(), " but ", ref_arg, " is on ",
                  ref.device(), "; both must be on the same device");
}

// For tensors an op updates in place (a copy would drop the update).
inline void check_contiguous(const at::Tensor& t, const char* op, const char* arg) {
  BNB_CHECK_VALUE(t.is_contiguous(), op, ": ", arg, " must be contiguous (it is updated in place)");
}

// A quantization map of `format`: map_size float32 values on the device of `like`.
inline void check_code(const at::Tensor& code, const QuantFormat& format, const at::Tensor& like, const char* op,
                       const char* arg = "code", const char* like_arg = "A") {
  check_dtype(code, c10::ScalarType::Float, op, arg);
  BNB_CHECK_VALUE(code.numel() == format.map_size, op, ": ", arg, " must hold ", format.map_size,
                  " values (one per ", format.name, " code), got ", code.numel());
  check_same_device(code, like, op, arg, like_arg);
}

inline void check_blocksize(int64_t blocksize, const QuantFormat& format, const char* op) {
  BNB_CHECK_VALUE(is_supported_blocksize(format, blocksize), op, ": blocksize must be one of ",
                  detail::blocksize_list(format), " for ", format.name, " codes, got ", blocksize);
}

// The block size of an 8-bit block-wise op on `like`'s device: any positive one on the CPU,
// whose kernels take blocks of any length (as the reference library's CPU path does), the
// format's powers of two elsewhere.
inline void check_blocksize_on(const at::Tensor& like, int64_t blocksize, const QuantFormat& format, const char* op) {
  if (like.is_cpu()) {
    BNB_CHECK_VALUE(blocksize > 0, op, ": blocksize must be a positive number of values, got ", blocksize);
    return;
  }
  check_blocksize(blocksize, format, op);
}

// The `.out` overloads (the reference library's schemas): the op's result copied into `out`,
// which must have its shape, dtype and device.
inline void copy_to_out(const at::Tensor& result, at::Tensor& out, const char* op) {
  BNB_CHECK_VALUE(out.sizes() == result.sizes(), op, ": out must have shape ", result.sizes(), ", got ", out.sizes());
  BNB_CHECK_TYPE(out.scalar_type() == result.scalar_type(), op, ": out must be ", result.scalar_type(), ", got ",
                 out.scalar_type());
  BNB_CHECK_VALUE(out.device() == result.device(), op, ": out must be on ", result.device(), ", got ", out.device());
  out.copy_(result);
}

inline void check_absmax(const at::Tensor& absmax, const at::Tensor& A, int64_t expected, const char* op) {
  check_dtype(absmax, c10::ScalarType::Float, op, "absmax");
  check_same_device(absmax, A, op, "absmax", "A");
  BNB_CHECK_VALUE(absmax.numel() == expected, op, ": absmax must hold ", expected, " values for ", A.numel(),
                  " elements, got ", absmax.numel());
}

}  // namespace bnb::ops
