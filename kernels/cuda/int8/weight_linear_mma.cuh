// The pieces of the tensor-core kernels that apply an int8 weight to 16-bit activations
// (weight_linear_cluster.cuh, weight_linear_splitk.cu): the exact int8 -> fp16/bf16
// conversion with the mma.m16n8k16 of each type, the weight loads (zeros outside the
// matrix) and the staging of the activations.
//
// int8 weights become 16-bit exactly: fp16 by placing the byte in the mantissa of 1024
// (0x64XX) and subtracting 1152; bf16 from two numbers of the binade of 128 (below).
#pragma once
#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace bnb::cuda {

template <typename T> struct MmaOp;

template <> struct MmaOp<__half> {
  // Four int8 (one 32-bit word) -> two packed fp16 pairs, exactly.
  static __device__ __forceinline__ void convert(uint32_t w, uint32_t& lo, uint32_t& hi) {
    const uint32_t u = w ^ 0x80808080u;                      // x + 128, as unsigned bytes
    uint32_t a = __byte_perm(u, 0x64646464u, 0x4140);        // halves 1024 + u0, 1024 + u1
    uint32_t b = __byte_perm(u, 0x64646464u, 0x4342);        // halves 1024 + u2, 1024 + u3
    const uint32_t magic = 0x64806480u;                      // 1152 = 1024 + 128, twice
    asm("sub.f16x2 %0, %1, %2;" : "=r"(lo) : "r"(a), "r"(magic));
    asm("sub.f16x2 %0, %1, %2;" : "=r"(hi) : "r"(b), "r"(magic));
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <> struct MmaOp<__nv_bfloat16> {
  // Four int8 -> two packed bf16 pairs, exactly, without float32: a byte w = x (mod 256)
  // with low bits l = w & 0x7f and sign bit s (0 or 1) gives x = (128 + l) - (128 + 128 s).
  // Both terms are bf16 numbers built by a byte permute (0x43LL is 128 + l, 0x4300 or 0x4380
  // is 128 or 256), and their difference (|x| <= 128) is exact. (fma with -1 rather than
  // sub.bf16x2, which needs sm_90: the split-K kernel also runs on sm_80.)
  static __device__ __forceinline__ void convert(uint32_t w, uint32_t& lo, uint32_t& hi) {
    const uint32_t low = w & 0x7f7f7f7fu, sign = w & 0x80808080u;
    const uint32_t a = __byte_perm(low, 0x43434343u, 0x4140), b = __byte_perm(low, 0x43434343u, 0x4342);
    const uint32_t sa = __byte_perm(sign, 0x43434343u, 0x4140), sb = __byte_perm(sign, 0x43434343u, 0x4342);
    const uint32_t minus_one = 0xbf80bf80u;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(lo) : "r"(sa), "r"(minus_one), "r"(a));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(hi) : "r"(sb), "r"(minus_one), "r"(b));
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// 16 weight bytes of row n at k (zeros outside the matrix).
__device__ __forceinline__ uint4 load_weight16(const int8_t* __restrict__ CB, int64_t n, int64_t N, int64_t K,
                                               int64_t k, bool aligned) {
  if (n < N && aligned && k + 16 <= K) return __ldcs(reinterpret_cast<const uint4*>(CB + n * K + k));
  uint8_t b[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) b[i] = (n < N && k + i < K) ? uint8_t(CB[n * K + k + i]) : uint8_t(0);
  uint4 r;
  memcpy(&r, b, 16);
  return r;
}

// 16 bytes of a weight read once (8-bit codes here, packed 4-bit codes in gemm_4bit_stream.cuh):
// cached in L2 only, and the L2 fetches the whole 256-byte neighbourhood (the other lanes of the
// row ask for it at the same time).
__device__ __forceinline__ uint4 load_weight_stream(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ uint4 load_weight_cluster(const int8_t* __restrict__ CB, int64_t n, int64_t N, int64_t K,
                                                     int64_t k, bool aligned) {
  if (n < N && aligned && k + 16 <= K) return load_weight_stream(CB + n * K + k);
  return load_weight16(CB, n, N, K, k, false);  // edges: byte by byte, zeros outside
}

// One lane's 16 weight bytes (weight row g of the mma's 8 columns, k = k .. k + 16) against
// activation rows g and g + 8 staged at a_s (row stride `stride`), as four mma.m16n8k16 with
// the activations as the 16 x 16 operand. The reduction order inside an mma is free, so step
// s feeds k positions {2t, 2t+1, 2t+8, 2t+9} with the lane's bytes 4s..4s+3: no shuffle.
template <typename T>
__device__ __forceinline__ void mma_weight_bytes(float (&acc)[4], const uint4& w, const T* a_s, int64_t stride, int g,
                                                 int k) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const int kk = k + 4 * s;
    const uint2 top = *reinterpret_cast<const uint2*>(a_s + g * stride + kk);
    const uint2 bottom = *reinterpret_cast<const uint2*>(a_s + (g + 8) * stride + kk);
    // Registers: rows g / g+8 at positions (2t, 2t+1), then at (2t+8, 2t+9).
    const uint32_t a[4] = {top.x, bottom.x, top.y, bottom.y};
    uint32_t b0, b1;
    MmaOp<T>::convert(words[s], b0, b1);
    MmaOp<T>::mma(acc, a, b0, b1);
  }
}

// Stages A[0 .. M, k_begin .. k_begin + ks) in shared memory (row r at a_s + r * stride) for
// `tok` rows; rows past M and columns past K are zeros. With `aligned` (K % 4 == 0 and A on
// 8 bytes) cp.async puts every 8-byte piece in flight at once: one round trip to L2. No
// division per piece (rows outer, columns inner): 64-bit divisions cost more than the copy.
template <typename T>
__device__ __forceinline__ void stage_activations(T* a_s, const T* __restrict__ A, int64_t M, int64_t K,
                                                  int64_t k_begin, int ks, int64_t stride, int tok, bool aligned) {
  const int threads = int(blockDim.x);
  if (aligned) {
    for (int r = 0; r < tok; ++r) {
      const T* row = A + int64_t(r) * K + k_begin;
      const unsigned dst_row = unsigned(__cvta_generic_to_shared(a_s + r * stride));
      for (int c = int(threadIdx.x) * 4; c < ks; c += threads * 4) {
        const bool inside = r < M && k_begin + c < K;  // K % 4 == 0: a piece is all inside or all out
        const T* src = inside ? row + c : A;
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(dst_row + unsigned(c * sizeof(T))),
                     "l"(src), "r"(inside ? 8 : 0));
      }
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
  } else {
    uint16_t zero_bits = 0;
    T zero;
    memcpy(&zero, &zero_bits, 2);
    for (int r = 0; r < tok; ++r)
      for (int c = int(threadIdx.x); c < ks; c += threads)
        a_s[r * stride + c] = r < M && k_begin + c < K ? A[int64_t(r) * K + k_begin + c] : zero;
  }
}

}  // namespace bnb::cuda
