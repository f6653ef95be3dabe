// How close to the copy bandwidth a 4-bit dequantize to bfloat16 can come, and what keeps the
// library's kernel from it. A dequantize reads a quarter of what it writes (packed codes in,
// 16-bit values out), a mix the copy (one read, one write) never measures; so besides the
// library's kernel (plain and nested scales) this times, on the same bytes:
//   - write: 16-byte streaming stores of the output alone, and cudaMemset;
//   - read: the packed codes alone;
//   - expand C: the codes read and the output written with no lookup and no scale (the traffic
//     alone), C 16-byte chunks a thread in flight;
//   - compress C: the quantize direction's traffic (bf16 read, a nibble a value written) with no
//     arithmetic, C chunks a thread;
//   - dq C: the library's arithmetic (code table in shared memory, plain scales) with C chunks a
//     thread, whose output must equal the library's bit for bit;
//   - dq C bulk: the same, the CTA's tile written to shared memory and stored by one bulk copy
//     (cp.async.bulk, sm_90), two tiles in turn, so that the stores leave the SM as whole tiles;
//   - flat: the library's kernel and dq C on a grid of a tile a CTA rather than persistent;
// Sizes: 2^28 values (bench_4bit.py's quantize rows) and the prefill weights 4096^2 and
// 4096 x 11008. Times are medians of single launches; fractions are of the copy bandwidth
// (cudaMemcpy, measured here) for the bytes each kernel must move. On a CUDA machine, from the
// repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90 -Ikernels/include \
//     -Ikernels/cuda -Ikernels -o /tmp/ab_dequant_ceiling benchmarks/ab_dequant_ceiling.cu \
//     kernels/cuda/common/launch.cu kernels/cuda/common/device_caps.cu && /tmp/ab_dequant_ceiling
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bulk_copy.h"
#include "harness_common.h"
#include "fourbit/quantize_4bit.cuh"
using namespace bnb;
using namespace bnb::cuda;
using bf = __nv_bfloat16;

constexpr int kV = 8;       // bf16 values a 16-byte chunk
constexpr int kLog2Block = 6;  // blocks of 64

__global__ void __launch_bounds__(kThreads) write_only(uint4* __restrict__ out, int64_t words) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < words; i += int64_t(gridDim.x) * blockDim.x)
    __stcs(out + i, make_uint4(unsigned(i), 0u, 0u, 0u));
}

__global__ void __launch_bounds__(kThreads) read_only(const unsigned* __restrict__ in, int64_t words,
                                                      unsigned* __restrict__ sink) {
  unsigned x = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < words; i += int64_t(gridDim.x) * blockDim.x)
    x ^= __ldcs(in + i);
  if (x == 0x9e3779b9u) *sink = x;  // keeps the loads
}

// One tile: C chunks a thread, chunk c of the tile at c * kThreads * kV values. LOOKUP takes the
// library's arithmetic (table, plain scale, non-finite rule); else the nibbles are the values.
template <int C, bool LOOKUP>
__device__ __forceinline__ void tile_values(const uint8_t* __restrict__ A, const float* __restrict__ absmax,
                                            const float* s_code, int64_t first, float (&v)[C][kV]) {
  constexpr int64_t kSpan = int64_t(kThreads) * kV;
  uint8_t q[C][kV / 2];
  float m[C];
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t base = first + c * kSpan;
    load_packed<kV / 2>(A + base / 2, q[c]);
    m[c] = LOOKUP ? __ldg(absmax + (base >> kLog2Block)) : 1.f;
  }
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int j = 0; j < kV / 2; ++j) {
      const uint8_t hi = q[c][j] >> 4, lo = q[c][j] & 0xF;
      if (LOOKUP) {
        v[c][2 * j] = dequantized_value(s_code[hi], hi, kReservedCode4bit, m[c]);
        v[c][2 * j + 1] = dequantized_value(s_code[lo], lo, kReservedCode4bit, m[c]);
      } else {
        v[c][2 * j] = float(hi), v[c][2 * j + 1] = float(lo);
      }
    }
}

// n a multiple of the tile (the harness's sizes are): the traffic's ceiling, not the tails.
template <int C, bool LOOKUP>
__global__ void __launch_bounds__(kThreads) dequant_direct(const uint8_t* __restrict__ A, const float* __restrict__ code,
                                                           const float* __restrict__ absmax, bf* __restrict__ out,
                                                           int64_t n) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  constexpr int64_t kSpan = int64_t(kThreads) * kV, kTile = C * kSpan;
  for (int64_t tile = blockIdx.x; tile < n / kTile; tile += gridDim.x) {
    const int64_t first = tile * kTile + int64_t(threadIdx.x) * kV;
    float v[C][kV];
    tile_values<C, LOOKUP>(A, absmax, s_code, first, v);
#pragma unroll
    for (int c = 0; c < C; ++c) store_vec<bf, kV>(out + first + c * kSpan, v[c]);
  }
}

// The quantize direction's traffic with no arithmetic to speak of: C 16-byte chunks of bf16 a
// thread read, 4 bytes a chunk written (a nibble of each value's bits).
template <int C>
__global__ void __launch_bounds__(kThreads) compress(const uint4* __restrict__ in, unsigned* __restrict__ out,
                                                     int64_t n) {
  constexpr int64_t kTile = int64_t(C) * kThreads;  // chunks
  for (int64_t tile = blockIdx.x; tile < n / kV / kTile; tile += gridDim.x) {
    uint4 w[C];
#pragma unroll
    for (int c = 0; c < C; ++c) w[c] = __ldcs(in + tile * kTile + c * kThreads + threadIdx.x);
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const unsigned x = __byte_perm(w[c].x, w[c].y, 0x7531) & 0xf0f0f0f0u;
      const unsigned y = __byte_perm(w[c].z, w[c].w, 0x7531) & 0xf0f0f0f0u;
      __stcs(out + tile * kTile + c * kThreads + threadIdx.x, x | (y >> 4));
    }
  }
}

__device__ __forceinline__ void bulk_store(void* dst, const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst), "r"(smem_addr(src)),
               "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// The tile goes to one of two shared-memory buffers, then out by one bulk copy; a buffer is
// written again only after its last copy has read it (wait_group.read 1: the other may run on).
template <int C>
__global__ void __launch_bounds__(kThreads) dequant_bulk(const uint8_t* __restrict__ A, const float* __restrict__ code,
                                                         const float* __restrict__ absmax, bf* __restrict__ out,
                                                         int64_t n) {
  extern __shared__ __align__(128) uint4 s_tiles[];
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  constexpr int64_t kSpan = int64_t(kThreads) * kV, kTile = C * kSpan;
  constexpr uint32_t kTileBytes = uint32_t(kTile * sizeof(bf));
  int turn = 0;
  for (int64_t tile = blockIdx.x; tile < n / kTile; tile += gridDim.x, turn ^= 1) {
    const int64_t first = tile * kTile + int64_t(threadIdx.x) * kV;
    float v[C][kV];
    tile_values<C, true>(A, absmax, s_code, first, v);
    if (threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
    __syncthreads();
    uint4* buf = s_tiles + turn * (kTileBytes / 16);
#pragma unroll
    for (int c = 0; c < C; ++c) {
      uint4 raw;
      bf* e = reinterpret_cast<bf*>(&raw);
#pragma unroll
      for (int j = 0; j < kV; ++j) e[j] = __float2bfloat16_rn(v[c][j]);
      buf[c * kThreads + threadIdx.x] = raw;
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (threadIdx.x == 0) bulk_store(out + tile * kTile, buf, kTileBytes);
  }
  if (threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // all written
}

template <typename K> int grid_of(K kernel, int smem) {
  return persistent_grid((const void*)kernel, kThreads, smem);
}

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "bulk copies")) return 0;
  const double copy = copy_bandwidth_gbs();
  printf("device: %s, %d SMs, copy %.0f GB/s\n", pr.name, pr.multiProcessorCount, copy);
  const float nf4[16] = {-1.0f, -0.6961928f, -0.52507305f, -0.3949175f, -0.28444138f, -0.18477343f,
                         -0.09105003f, 0.0f, 0.0795803f, 0.1609302f, 0.2461123f, 0.33791524f,
                         0.44070983f, 0.562617f, 0.72295684f, 1.0f};
  bool all_equal = true;
  for (const int64_t n : {int64_t(1) << 28, int64_t(4096) * 4096, int64_t(4096) * 11008}) {
    const int64_t blocks = n >> kLog2Block;
    std::vector<uint8_t> hq(n / 2);
    std::vector<float> habs(blocks);
    std::mt19937 gen{unsigned(n)};
    for (size_t i = 0; i < hq.size(); ++i) hq[i] = uint8_t(gen());
    for (size_t i = 0; i < habs.size(); ++i) habs[i] = 0.01f + float(gen() % 1000) / 1000.f;
    uint8_t *dq, *dnested;
    float *dabs, *dcode, *dncode, *dnabs, *doff;
    bf *dout, *dref;
    unsigned* sink;
    CK(cudaMalloc(&dq, n / 2));
    CK(cudaMalloc(&dabs, blocks * 4));
    CK(cudaMalloc(&dcode, 64));
    CK(cudaMalloc(&dnested, blocks));
    CK(cudaMalloc(&dncode, 1024));
    CK(cudaMalloc(&dnabs, (blocks / 256 + 1) * 4));
    CK(cudaMalloc(&doff, 4));
    CK(cudaMalloc(&dout, n * 2));
    CK(cudaMalloc(&dref, n * 2));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMemcpy(dq, hq.data(), n / 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dabs, habs.data(), blocks * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dcode, nf4, 64, cudaMemcpyHostToDevice));
    // Nested parts: any bytes (their values are not compared, only their traffic timed).
    CK(cudaMemset(dnested, 0x40, blocks));
    CK(cudaMemset(dncode, 0, 1024));
    CK(cudaMemset(dnabs, 0, (blocks / 256 + 1) * 4));
    CK(cudaMemset(doff, 0, 4));
    BlockScales nested;
    nested.nested = dnested, nested.nested_code = dncode, nested.nested_absmax = dnabs, nested.offset = doff;

    const double out_bytes = 2.0 * n, code_bytes = n / 2.0, plain_bytes = out_bytes + code_bytes + blocks * 4.0;
    auto row = [&](const char* name, double bytes, auto launch) {
      CK(cudaMemset(dout, 0xff, n * 2));
      launch();
      CK(cudaDeviceSynchronize());
      const float ms = median_ms(launch, 25);
      printf("  %-22s %8.4f ms %6.0f GB/s %5.1f%% of copy\n", name, ms, bytes / ms / 1e6, 100 * bytes / ms / 1e6 / copy);
    };
    auto equal_to_ref = [&](const char* name) {
      std::vector<uint16_t> a(n), b(n);
      CK(cudaMemcpy(a.data(), dout, n * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(b.data(), dref, n * 2, cudaMemcpyDeviceToHost));
      const bool eq = memcmp(a.data(), b.data(), n * 2) == 0;
      if (!eq) printf("  %s: output differs from the library's\n", name);
      all_equal &= eq;
    };
    printf("n = %lld values (%.0f MiB of bf16 out)\n", (long long)n, out_bytes / (1 << 20));
    row("library plain", plain_bytes, [&] {
      CK(launch_dequantize_4bit<bf>(dq, dcode, BlockScales::plain(dabs), dout, n, 64, nullptr));
    });
    CK(cudaMemcpy(dref, dout, n * 2, cudaMemcpyDeviceToDevice));
    // The same kernel, a tile a CTA instead of the persistent grid: whether a last round of
    // tiles that fills only part of the resident CTAs (4096^2: 1024 tiles over 3 CTAs an SM)
    // is what the small weights lose.
    row("library plain, flat", plain_bytes, [&] {
      constexpr int64_t kTile = int64_t(kDequant4bitChunks) * kThreads * kV;
      dequantize_4bit_kernel<bf><<<int((n + kTile - 1) / kTile), kThreads>>>(dq, dcode, BlockScales::plain(dabs),
                                                                             dout, n, kLog2Block);
      CK(cudaGetLastError());
    });
    equal_to_ref("library plain, flat");
    row("library nested", out_bytes + code_bytes + blocks * 1.0, [&] {
      CK(launch_dequantize_4bit<bf>(dq, dcode, nested, dout, n, 64, nullptr));
    });
    row("write (stores)", out_bytes, [&] {
      write_only<<<grid_of(write_only, 0), kThreads>>>(reinterpret_cast<uint4*>(dout), n / 8);
      CK(cudaGetLastError());
    });
    row("write (cudaMemset)", out_bytes, [&] { CK(cudaMemsetAsync(dout, 0, n * 2)); });
    row("read codes", code_bytes, [&] {
      read_only<<<grid_of(read_only, 0), kThreads>>>(reinterpret_cast<const unsigned*>(dq), n / 8, sink);
      CK(cudaGetLastError());
    });
#define EXPAND(C)                                                                                       \
    row("expand " #C, out_bytes + code_bytes, [&] {                                                      \
      dequant_direct<C, false><<<grid_of(dequant_direct<C, false>, 0), kThreads>>>(dq, dcode, dabs, dout, n); \
      CK(cudaGetLastError());                                                                           \
    });
    EXPAND(2) EXPAND(4) EXPAND(8)
#undef EXPAND
#define DQ(C)                                                                                         \
    row("dq " #C, plain_bytes, [&] {                                                                   \
      dequant_direct<C, true><<<grid_of(dequant_direct<C, true>, 0), kThreads>>>(dq, dcode, dabs, dout, n); \
      CK(cudaGetLastError());                                                                         \
    });                                                                                               \
    equal_to_ref("dq " #C);
    DQ(2) DQ(4) DQ(8)
#undef DQ
#define DQ_FLAT(C)                                                                                  \
    row("dq " #C ", flat", plain_bytes, [&] {                                                        \
      dequant_direct<C, true><<<int(n / (int64_t(C) * kThreads * kV)), kThreads>>>(dq, dcode, dabs, dout, n); \
      CK(cudaGetLastError());                                                                       \
    });                                                                                             \
    equal_to_ref("dq " #C ", flat");
    DQ_FLAT(1) DQ_FLAT(2) DQ_FLAT(4)
#undef DQ_FLAT
#define DQ_BULK(C)                                                                                     \
    {                                                                                                  \
      const int smem = 2 * C * kThreads * 16;                                                          \
      CK(cudaFuncSetAttribute(dequant_bulk<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));    \
      row("dq " #C " bulk", plain_bytes, [&] {                                                         \
        dequant_bulk<C><<<grid_of(dequant_bulk<C>, smem), kThreads, smem>>>(dq, dcode, dabs, dout, n); \
        CK(cudaGetLastError());                                                                        \
      });                                                                                              \
      equal_to_ref("dq " #C " bulk");                                                                  \
    }
    DQ_BULK(1) DQ_BULK(2) DQ_BULK(4)
#undef DQ_BULK
    // (last: it overwrites the codes)
#define COMPRESS(C)                                                                                 \
    row("compress " #C, out_bytes + code_bytes, [&] {                                                \
      compress<C><<<grid_of(compress<C>, 0), kThreads>>>(reinterpret_cast<const uint4*>(dref),        \
                                                         reinterpret_cast<unsigned*>(dq), n);         \
      CK(cudaGetLastError());                                                                         \
    });
    COMPRESS(2) COMPRESS(4) COMPRESS(8)
#undef COMPRESS
    cudaFree(dq), cudaFree(dabs), cudaFree(dcode), cudaFree(dnested), cudaFree(dncode), cudaFree(dnabs);
    cudaFree(doff), cudaFree(dout), cudaFree(dref), cudaFree(sink);
  }
  printf("every variant's output equal to the library's: %s\n", all_equal ? "yes" : "NO");
  return all_equal ? 0 : 2;
}
