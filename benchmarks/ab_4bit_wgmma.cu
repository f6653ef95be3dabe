// A 4-bit product for 17-64 tokens on Hopper's warpgroup MMA, against the library's product
// (launch_gemm_4bit_mma) and its outputs on the same data: bf16, NF4, blocks of 64 with nested
// scales, the decode shapes, weights cycled over 256 MiB so that they come from memory.
//
// Why: at 32-64 tokens `gemm_4bit_mma` is bound by the activations, not the weights. Each of its
// warps loads its own fragments of A (8 KiB a 64-k sub-chunk at 64 tokens, for 1 KiB of
// weights), so every 32 rows of W read all of A through the L2 and the load units. Here the
// product is computed transposed, out^T[N, M] = W[N, K] A[M, K]^T, by `wgmma.mma_async`
// m64nNk16 with N the tokens (32 or 64): the weight tile is the register operand (each warp's
// 16 rows, dequantized exactly as gemm_4bit_mma does it: weight_fragments, then scale_fragments,
// weights rounded to bf16 as dequantize_4bit writes them), and the activations are the
// shared-memory operand, read by the tensor cores of all four warps of the warpgroup from one
// copy. A CTA is one warpgroup on 64 rows; it stages SUBS sub-chunks of 64 k of A at a time,
// double-buffered (the next stage's activations in registers while the tensor cores work), in
// the canonical no-swizzle K-major layout: core matrices of 8 tokens x 16 bytes, the two of a
// k16 step 128 bytes apart (the descriptor's leading byte offset), token groups 256 apart (its
// stride byte offset). The weights' k order is gemm_4bit_mma's (a lane's 8 bytes are 16
// consecutive k; step s takes k 16t + 4s .. + 3 of lane t), so the staging copy puts each
// activation word where that order wants it: the word of k 16w + 4s + 2h (+1) goes to step s,
// k half h, word w of its token's row. K is split over gridDim.x CTAs (SPLIT ranks) whose
// float32 sums meet by atomics in a zeroed buffer, converted by a second kernel; unsplit, a CTA
// writes its outputs itself. Outputs must match the library's within the rounding of a
// reordered float32 sum (above 16 tokens the library also rounds scaled weights to bf16).
// Needs sm_90a (wgmma). On such a machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -gencode arch=compute_90a,code=sm_90a \
//     -Ikernels/include -Ikernels/cuda -Ikernels -o /tmp/ab_4bit_wgmma benchmarks/ab_4bit_wgmma.cu \
//     kernels/cuda/common/launch.cu kernels/cuda/common/device_caps.cu && /tmp/ab_4bit_wgmma
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_bf16.h>
#include "harness_4bit.h"
#include "fourbit/gemm_4bit_mma.cuh"
#include "fourbit/gemm_4bit_stream.cuh"  // word_of
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

// The warpgroup MMA with the weight tile in registers (4 words a lane, mma.m16n8k16's A layout
// for the warp's 16 rows) and the activations by descriptor; d accumulates (scale-d 1). The
// accumulator of chunk j (8 tokens) is d[4j..4j+3]: (row g, token 8j + 2t), (g, 8j + 2t + 1),
// (g + 8, 8j + 2t), (g + 8, 8j + 2t + 1) of the warp's 16 rows.
__device__ __forceinline__ void wgmma_bf16_n32(float (&d)[16], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
      "}, {%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wgmma_bf16_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
      "}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
template <int NT>
__device__ __forceinline__ void wgmma_bf16(float (&d)[NT / 2], const uint32_t (&a)[4], uint64_t desc) {
  static_assert(NT == 32 || NT == 64, "the token tiles measured");
  if constexpr (NT == 32) wgmma_bf16_n32(d, a, desc);
  else wgmma_bf16_n64(d, a, desc);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Until at most PENDING of this warpgroup's committed groups are still running.
template <int PENDING> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(PENDING) : "memory");
}
// Generic-proxy writes of shared memory (the staging stores) made visible to the tensor cores.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// A shared-memory matrix descriptor, no swizzle: start address, leading (K) and stride (N)
// byte offsets between core matrices, each in units of 16 bytes.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFFu) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32);
}

constexpr int kWgSubBytes(int nt) { return nt * 128; }  // one sub-chunk (64 k) of NT tokens

// Where the staging copy puts word i (0..3) of the uint4 v (0..7: k 8v .. 8v + 7) of a token's
// sub-chunk: step s = 2 (v % 2) + i / 2, k half h = i % 2, word w = v / 2 of the token's row.
template <int NT>
__device__ __forceinline__ int staged_offset(int tok, int v, int i) {
  const int s = 2 * (v & 1) + (i >> 1), h = i & 1, w = v >> 1;
  return s * (NT * 32) + ((tok >> 3) * 2 + h) * 128 + (tok & 7) * 16 + w * 4;
}

// PIPE: two sets of weight fragments, so that a sub-chunk's dequantization overlaps the
// previous sub-chunk's MMAs (wait for all but the last group; all at the end of a stage, before
// its buffer can be refilled); else every sub-chunk waits for its own MMAs. DEPTH: sub-chunks of
// weights a lane holds in registers, the current one first; each sub-chunk asks for the one DEPTH
// ahead (a warp's 512 bytes a sub-chunk: at one or two ahead, four CTAs of four warps an SM keep
// too few bytes in flight for the bandwidth).
template <int NT, int SUBS, bool PIPE, int DEPTH>
__global__ void __launch_bounds__(128)
gemm_4bit_wg_kernel(const bf* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                    const BlockScales scales, float* __restrict__ partial, bf* __restrict__ out, int M, int64_t N,
                    int64_t K, int log2_blocksize) {
  constexpr int kItems = NT * SUBS * 2 / 128;  // staging items a thread has a stage (below)
  static_assert(NT * SUBS * 2 % 128 == 0, "whole items a thread");
  constexpr int kStage = SUBS * kWgSubBytes(NT);
  extern __shared__ __align__(128) uint8_t s_b[];  // two stages
  __shared__ __align__(16) uint32_t s_pair[256 * 16];
  __shared__ float s_ncode[256];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t n0 = int64_t(blockIdx.y) * 64 + 16 * warp;
  const int64_t r_lo = min(n0 + g, N - 1), r_hi = min(n0 + g + 8, N - 1);
  const uint8_t* w_lo = B + r_lo * (K / 2) + 8 * t;
  const uint8_t* w_hi = B + r_hi * (K / 2) + 8 * t;
  const int first_lo = int((r_lo * K) >> 4) + t, first_hi = int((r_hi * K) >> 4) + t;
  const int subs = int(K / kMmaSubK), per = (subs + int(gridDim.x) - 1) / int(gridDim.x);
  const int sub_begin = min(subs, int(blockIdx.x) * per), sub_end = min(subs, sub_begin + per);

  // A stage's activations: loaded to registers, then stored in the staged layout (zeros past M
  // and past this rank's sub-chunks). A thread's share is kItems items; an item is the half of a
  // token's sub-chunk of parity p (its uint4 q = p, p + 2, p + 4, p + 6), which fills whole
  // 16-byte rows of the staged layout (steps 2p and 2p + 1, both k halves): four 16-byte stores
  // an item. Tokens vary fastest over the lanes, so that eight lanes' stores of a row fall in
  // eight distinct 16-byte bank groups.
  auto item_of = [&](int j, int& tok, int& sub, int& p) {
    const int i = int(threadIdx.x) + 128 * j;
    tok = i % NT, p = (i / NT) & 1, sub = i / (2 * NT);
  };
  auto load_stage = [&](uint4 (&v)[kItems][4], int c0) {
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      int tok, sub, p;
      item_of(j, tok, sub, p);
      const bool live = tok < M && c0 + sub < sub_end;
      const uint4* src = reinterpret_cast<const uint4*>(A + int64_t(live ? tok : 0) * K +
                                                        int64_t(live ? c0 + sub : 0) * kMmaSubK);
#pragma unroll
      for (int w = 0; w < 4; ++w) v[j][w] = live ? __ldg(src + p + 2 * w) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto store_stage = [&](const uint4 (&v)[kItems][4], int buf) {
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      int tok, sub, p;
      item_of(j, tok, sub, p);
      uint8_t* base = s_b + buf * kStage + sub * kWgSubBytes(NT);
#pragma unroll
      for (int x = 0; x < 4; ++x)  // the row of step 2p + x / 2, k half x % 2: word x of each uint4
        *reinterpret_cast<uint4*>(base + staged_offset<NT>(tok, p, x)) =
            make_uint4(word_of(v[j][0], x), word_of(v[j][1], x), word_of(v[j][2], x), word_of(v[j][3], x));
    }
  };

  // The lane's weights and scales of DEPTH sub-chunks in registers, the current one first: a
  // queue shifted by one a sub-chunk (unrolled: the shifts are register renames).
  struct SubWeights { uint2 lo, hi; ScaleParts sp_lo, sp_hi; };
  SubWeights queue[DEPTH];
  auto load_weights = [&](SubWeights& q, int c) {
    q.lo = load_weight_stream8(w_lo + int64_t(c) * (kMmaSubK / 2));
    q.hi = load_weight_stream8(w_hi + int64_t(c) * (kMmaSubK / 2));
    q.sp_lo = load_scale_parts(scales, (first_lo + c * (kMmaSubK / 16)) >> (log2_blocksize - 4));
    q.sp_hi = load_scale_parts(scales, (first_hi + c * (kMmaSubK / 16)) >> (log2_blocksize - 4));
  };
#pragma unroll
  for (int i = 0; i < DEPTH; ++i) {
    queue[i] = {{0u, 0u}, {0u, 0u}, {0.f, 0u}, {0.f, 0u}};
    if (sub_begin + i < sub_end) load_weights(queue[i], sub_begin + i);
  }
  uint4 staged[kItems][4];
  load_stage(staged, sub_begin);
  fill_code_pairs<bf, 16>(s_pair, s_ncode, code, scales);
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  const uint32_t table = uint32_t(__cvta_generic_to_shared(s_pair)) + 4u * uint32_t(lane & 15);
  const uint32_t b_base = uint32_t(__cvta_generic_to_shared(s_b));

  float acc[NT / 2] = {};
  uint32_t frag[PIPE ? 2 : 1][4][4];
  int buf = 0;
  for (int c0 = sub_begin; c0 < sub_end; c0 += SUBS, buf ^= 1) {
    store_stage(staged, buf);
    fence_proxy_async();
    __syncthreads();  // the stage is in place (and, double-buffered, nobody reads the other one)
    if (c0 + SUBS < sub_end) load_stage(staged, c0 + SUBS);  // in flight while this one computes
#pragma unroll
    for (int sub = 0; sub < SUBS; ++sub) {
      const int c = c0 + sub;
      if (c >= sub_end) break;
      const uint2 cl = queue[0].lo, ch = queue[0].hi;
      const float m_lo = scale_of(scales, queue[0].sp_lo, s_ncode, offset);
      const float m_hi = scale_of(scales, queue[0].sp_hi, s_ncode, offset);
#pragma unroll
      for (int i = 0; i + 1 < DEPTH; ++i) queue[i] = queue[i + 1];
      if (c + DEPTH < sub_end) load_weights(queue[DEPTH - 1], c + DEPTH);
      uint32_t (&f)[4][4] = frag[PIPE ? (sub & 1) : 0];
      weight_fragments<0>(f, table, CodePlanes{}, cl, ch);
      scale_fragments<bf>(f, lane_scale(m_lo, cl), lane_scale(m_hi, ch));
      wgmma_fence();
#pragma unroll
      for (int s = 0; s < 4; ++s)
        wgmma_bf16<NT>(acc, f[s], smem_desc(b_base + buf * kStage + sub * kWgSubBytes(NT) + s * NT * 32, 128, 256));
      wgmma_commit();
      // The registers of a fragment set (and acc, for any code but the next MMA) are the tensor
      // cores' until its group is waited for.
      wgmma_wait<PIPE ? 1 : 0>();
    }
    if constexpr (PIPE) wgmma_wait<0>();
  }
  // This CTA's sums: its own outputs (one rank) or its part of them (atomics into `partial`).
#pragma unroll
  for (int j = 0; j < NT / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t n = n0 + g + 8 * (e >> 1);
      const int tok = 8 * j + 2 * t + (e & 1);
      if (n >= N || tok >= M) continue;
      if (gridDim.x == 1) out[int64_t(tok) * N + n] = __float2bfloat16(acc[4 * j + e]);
      else atomicAdd(partial + int64_t(tok) * N + n, acc[4 * j + e]);
    }
  }
}

__global__ void finish_kernel(const float* __restrict__ partial, bf* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(partial[i]);
}

struct Variant {
  int nt, subs;
  void (*kernel)(const bf*, const uint8_t*, const float*, const BlockScales, float*, bf*, int, int64_t, int64_t, int);
  const char* name;
};
template <int NT, int SUBS, bool PIPE = false, int DEPTH = 2> Variant variant(const char* name) {
  return {NT, SUBS, gemm_4bit_wg_kernel<NT, SUBS, PIPE, DEPTH>, name};
}

static void launch_wg(const Variant& v, int split, const Weights4bit& wt, int c, float* partial, bf* out, int M) {
  const int64_t slabs = (wt.N + 63) / 64;
  const int smem = 2 * v.subs * v.nt * 128;
  if (split > 1) CK(cudaMemsetAsync(partial, 0, size_t(M) * wt.N * 4));
  v.kernel<<<dim3(unsigned(split), unsigned(slabs)), 128, smem>>>(wt.A, wt.weight(c), wt.code, wt.scales(c), partial,
                                                                   out, M, wt.N, wt.K, 6);
  if (split > 1) finish_kernel<<<264, 256>>>(partial, out, int64_t(M) * wt.N);
}

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "warpgroup MMA")) return 0;
  printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
  const Variant variants[] = {variant<32, 2>("N32 S2"),        variant<32, 4>("N32 S4"),
                              variant<32, 2, true>("N32 S2 pipe"), variant<64, 1>("N64 S1"),
                              variant<64, 2>("N64 S2"),        variant<64, 2, true>("N64 S2 pipe"),
                              variant<32, 2, true, 4>("N32 S2 pipe D4"), variant<64, 2, true, 4>("N64 S2 pipe D4")};
  for (const Variant& v : variants)
    CK(cudaFuncSetAttribute(v.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * v.subs * v.nt * 128));
  bool all_close = true;
  double log_lib = 0, log_best = 0;
  int cases = 0;
  for (const int M : {17, 32, 48, 64}) {
    for (int si = 0; si < int(sizeof(kDecodeShapes) / sizeof(kDecodeShapes[0])); ++si) {
      const DecodeShape& sh = kDecodeShapes[si];
      const Weights4bit wt(sh.N, sh.K, M, unsigned(97 * si + M));
      const int64_t N = wt.N, K = wt.K;
      bf* dout;
      float* partial;
      CK(cudaMalloc(&dout, size_t(N) * M * 2));
      CK(cudaMalloc(&partial, size_t(N) * M * 4));
      std::vector<bf> ref(size_t(N) * M), got(ref.size());
      CK(launch_gemm_4bit_mma<bf>(wt.A, wt.weight(0), wt.code, wt.scales(0), nullptr, dout, M, N, K, 6, nullptr));
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(ref.data(), dout, ref.size() * 2, cudaMemcpyDeviceToHost));
      int cyc = 0;
      const double lib = 1e3 * median_ms([&] {
        for (int i = 0; i < 40; ++i)
          CK(launch_gemm_4bit_mma<bf>(wt.A, wt.weight(cyc + i), wt.code, wt.scales(cyc + i), nullptr, dout, M, N, K, 6,
                                      nullptr));
        cyc += 40;
      }, 9) / 40;
      printf("M=%-2d %-12s library %.1fus\n", M, sh.name, lib);
      double best = 1e30;
      for (const Variant& v : variants) {
        if (M > v.nt) continue;
        printf("      %-15s", v.name);
        for (const int split : {1, 2, 4, 8}) {
          // NaN first (bf16 0xFFFF): an output the kernel leaves unwritten cannot pass on the
          // library's (or the previous variant's) value left in dout.
          CK(cudaMemset(dout, 0xFF, size_t(N) * M * 2));
          launch_wg(v, split, wt, 0, partial, dout, M);
          CK(cudaGetLastError());
          CK(cudaDeviceSynchronize());
          CK(cudaMemcpy(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost));
          const int64_t far = first_far(got, ref);
          const bool close = far < 0;
          if (!close)
            printf(" [token %lld row %lld: %g, library %g]", (long long)(far / N), (long long)(far % N),
                   __bfloat162float(got[far]), __bfloat162float(ref[far]));
          all_close &= close;
          const double us = 1e3 * median_ms([&] {
            for (int i = 0; i < 40; ++i) launch_wg(v, split, wt, cyc + i, partial, dout, M);
            cyc += 40;
          }, 9) / 40;
          best = std::min(best, us);
          printf("  s%d %.1fus%s", split, us, close ? "" : " MISMATCH");
        }
        printf("\n");
      }
      printf("      best %.1fus (%.2fx the library)\n", best, lib / best);
      log_lib += std::log(lib), log_best += std::log(best), ++cases;
      cudaFree(dout), cudaFree(partial);
    }
  }
  printf("outputs close to the library's: %s\n", all_close ? "yes" : "NO");
  printf("geomean over %d cases of 17-64 tokens: library %.2f us, warpgroup (best a case) %.2f us\n", cases,
         std::exp(log_lib / cases), std::exp(log_best / cases));
  return all_close ? 0 : 2;
}
