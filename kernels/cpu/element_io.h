// Reads and writes one element of any supported dtype as float32 (CPU).
#pragma once
#include <type_traits>

#include "bnb/dtype.h"
#include "bnb/float16.h"

namespace bnb::cpu {

template <DType T> struct Element;
template <> struct Element<DType::Float32> {
  using storage = float;
  static float load(const storage* p, int64_t i) { return p[i]; }
  static void store(storage* p, int64_t i, float v) { p[i] = v; }
};
template <> struct Element<DType::Float16> {
  using storage = uint16_t;
  static float load(const storage* p, int64_t i) { return fp16_to_float(p[i]); }
  static void store(storage* p, int64_t i, float v) { p[i] = float_to_fp16(v); }
};
template <> struct Element<DType::BFloat16> {
  using storage = uint16_t;
  static float load(const storage* p, int64_t i) { return bf16_to_float(p[i]); }
  static void store(storage* p, int64_t i, float v) { p[i] = float_to_bf16(v); }
};

template <DType T> using DTypeTag = std::integral_constant<DType, T>;

// Calls f(DTypeTag<T>{}) for the runtime dtype, so the body is compiled once per dtype.
template <typename F> void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float32: f(DTypeTag<DType::Float32>{}); break;
    case DType::Float16: f(DTypeTag<DType::Float16>{}); break;
    case DType::BFloat16: f(DTypeTag<DType::BFloat16>{}); break;
  }
}

}  // namespace bnb::cpu
