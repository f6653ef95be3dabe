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

// Like TORCH_CHECK / TORCH_CHECK_TYPE (RuntimeError / TypeError in Python), with the message
// built as above.
#define BNB_CHECK(cond, ...)                                                                  \
  do {                                                                                        \
    if (C10_UNLIKELY(!(cond))) C10_THROW_ERROR(Error, ::bnb::ops::detail::message(__VA_ARGS__)); \
  } while (0)
#define BNB_CHECK_TYPE(cond, ...)                                                                 \
  do {                                                                                            \
    if (C10_UNLIKELY(!(cond))) C10_THROW_ERROR(TypeError, ::bnb::ops::detail::message(__VA_ARGS__)); \
  } while (0)

namespace bnb::ops {

inline DType kernel_dtype(c10::ScalarType t, const char* op, const char* arg) {
  switch (t) {
    case c10::ScalarType::Float: return DType::Float32;
    case c10::ScalarType::Half: return DType::Float16;
    case c10::ScalarType::BFloat16: return DType::BFloat16;
    default:
      BNB_CHECK_TYPE(false, op, ": ", arg, " must be float32, float16 or bfloat16, got ", t);
  }
}

inline void check_dtype(const at::Tensor& t, c10::ScalarType want, const char* op, const char* arg) {
  BNB_CHECK_TYPE(t.scalar_type() == want, op, ": ", arg, " must be ", want, ", got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* arg,
                              const char* ref_arg) {
  BNB_CHECK(t.device() == ref.device(), op, ": ", arg, " is on ", t.device(), " but ", ref_arg, " is on ",
              ref.device(), "; both must be on the same device");
}

// A quantization map: 256 float32 values on A's device.
inline void check_code(const at::Tensor& code, const at::Tensor& A, const char* op) {
  check_dtype(code, c10::ScalarType::Float, op, "code");
  BNB_CHECK(code.numel() == kCodeSize, op, ": code must hold 256 values (an 8-bit map), got ", code.numel());
  check_same_device(code, A, op, "code", "A");
}

inline void check_blocksize(int64_t blocksize, const char* op) {
  BNB_CHECK(is_supported_blocksize(blocksize), op,
              ": blocksize must be one of 64, 128, 256, 512, 1024, 2048, 4096, got ", blocksize);
}

inline void check_absmax(const at::Tensor& absmax, const at::Tensor& A, int64_t expected, const char* op) {
  check_dtype(absmax, c10::ScalarType::Float, op, "absmax");
  check_same_device(absmax, A, op, "absmax", "A");
  BNB_CHECK(absmax.numel() == expected, op, ": absmax must hold ", expected, " values for ", A.numel(),
              " elements, got ", absmax.numel());
}

}  // namespace bnb::ops
