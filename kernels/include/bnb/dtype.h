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

// The element types a quantization kernel reads and writes, in the order error messages
// list them.
constexpr DType kFloatDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};

// A code format: the bits of one code, the entries of its map (2^bits, float32, sorted
// ascending) and the block sizes block-wise quantization accepts (the powers of two from
// min_blocksize to max_blocksize). Every check of a map or a block size reads these, so a
// new format is one more constant, not new rules.
struct QuantFormat {
  const char* name;
  int bits;
  int map_size;
  int64_t min_blocksize;
  int64_t max_blocksize;
};

// 8-bit codes: the dynamic, linear, fp8 and quantile maps; blocks of 64..4096 (the CUDA
// kernels give each block at least one warp-wide step of 64 values).
constexpr QuantFormat kFormat8bit{"8-bit", 8, 256, 64, 4096};
// 4-bit codes (NF4, FP4), two a byte: 16-entry maps; blocks of 32..4096.
constexpr QuantFormat kFormat4bit{"4-bit", 4, 16, 32, 4096};

constexpr bool is_supported_blocksize(const QuantFormat& format, int64_t blocksize) {
  return blocksize >= format.min_blocksize && blocksize <= format.max_blocksize && (blocksize & (blocksize - 1)) == 0;
}

// The 8-bit block sizes (what the 8-bit kernels are built for).
constexpr bool is_supported_blocksize(int64_t blocksize) { return is_supported_blocksize(kFormat8bit, blocksize); }

inline int64_t num_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }

// The largest K of an int8 GEMM: a sum of K products of int8 values (each at most 2^14 in
// magnitude) fits in int32 for K <= 2^17 - 1.
constexpr int64_t kInt8MaxK = (int64_t(1) << 17) - 1;

// The entries of the map the 8-bit kernels read (float32, sorted ascending).
constexpr int kCodeSize = kFormat8bit.map_size;

}  // namespace bnb
