// Element types the kernels read and write, and the block sizes they accept.
// Kept free of torch so that kernels/ builds and tests on its own.
#pragma once
#include <cstdint>

// A function shared by the CPU and CUDA kernels: compiled for host and device under nvcc,
// a plain inline function elsewhere.
#if defined(__CUDACC__)
#define BNB_HD __host__ __device__ __forceinline__
#else
#define BNB_HD inline
#endif

namespace bnb {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "unknown";
}

inline int dtype_size(DType t) { return t == DType::Float32 ? 4 : 2; }

// Block-wise quantization works on powers of two from 64 to 4096.
inline bool is_supported_blocksize(int64_t blocksize) {
  return blocksize >= 64 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0;
}

inline int64_t num_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }

// A quantization map always has 256 float32 entries, sorted ascending.
constexpr int kCodeSize = 256;

}  // namespace bnb
