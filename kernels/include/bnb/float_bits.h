// A float's bits as an unsigned int and back, the same on host and device (the one place the
// kernels' headers spell this out).
#pragma once
#include <cstdint>
#include <cstring>

#include "bnb/dtype.h"

namespace bnb {

BNB_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

BNB_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

}  // namespace bnb
