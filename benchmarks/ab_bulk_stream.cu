// How fast one contiguous stream a CTA can come into shared memory by bulk copies (sm_90
// cp.async.bulk, completion counted on an mbarrier), the read side of a decode-step product fed
// by a producer warp while consumer warps compute. Load only: the consumer warps read each stage
// from shared memory (an XOR of its words, so the reads are not optimised away) and hand the
// slot back. Against a plain read of the same bytes (16-byte loads, many warps an SM) and the
// device-to-device copy (bytes read + written over time). A ring of `stages` slots of `bytes`
// each a CTA, 1 or 2 CTAs an SM, 1, 2 or 4 consumer warps; 1 GiB read, far past the L2.
// On an sm_90 machine, from the repository's root:
//   nvcc -std=c++17 -O3 -DNDEBUG -arch=sm_90 -Ikernels/include -Ikernels/cuda -Ikernels \
//     -o /tmp/ab_bulk_stream benchmarks/ab_bulk_stream.cu kernels/cuda/common/launch.cu \
//     kernels/cuda/common/device_caps.cu && /tmp/ab_bulk_stream
#include <cstdint>
#include <cstdio>
#include <vector>

#include "bulk_copy.h"
#include "harness_common.h"

constexpr int kMaxStages = 16;

// Warp 0 (one lane) fills the ring; warps 1..consumers read it. CTA c streams bytes
// [c * per_cta, (c + 1) * per_cta) in slots of `slot` bytes.
__global__ void bulk_stream(const uint8_t* __restrict__ src, int64_t per_cta, int slot, int stages,
                            uint32_t* __restrict__ sink) {
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ __align__(8) uint64_t full[kMaxStages], empty[kMaxStages];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, consumers = int(blockDim.x) / 32 - 1;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) bar_init(&full[s], 1), bar_init(&empty[s], uint32_t(consumers));
    bars_initialized();
  }
  __syncthreads();
  const uint8_t* base = src + int64_t(blockIdx.x) * per_cta;
  const int64_t slots = per_cta / slot;
  if (warp == 0) {
    if (lane == 0) {
      for (int64_t i = 0; i < slots; ++i) {
        const int s = int(i % stages);
        const uint32_t round = uint32_t(i / stages);
        if (round > 0) bar_wait(&empty[s], (round - 1) & 1);  // the consumers' release of its last use
        bar_arrive_expect(&full[s], uint32_t(slot));
        bulk_copy(ring + int64_t(s) * slot, base + i * slot, uint32_t(slot), &full[s]);
      }
    }
    return;
  }
  uint32_t acc = 0;
  const int share = slot / consumers;  // bytes a consumer warp reads of each slot
  for (int64_t i = 0; i < slots; ++i) {
    const int s = int(i % stages);
    bar_wait(&full[s], uint32_t(i / stages) & 1);
    const uint4* p = reinterpret_cast<const uint4*>(ring + int64_t(s) * slot + (warp - 1) * share);
    for (int j = lane; j < share / 16; j += 32) {
      const uint4 v = p[j];
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    __syncwarp();
    if (lane == 0) bar_arrive(&empty[s]);
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;  // (never, in practice: keeps the reads)
}

// The plain read: 16-byte loads, four in flight a thread, grid-stride.
__global__ void plain_read(const uint4* __restrict__ src, int64_t n, uint32_t* __restrict__ sink) {
  uint32_t acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = i + u * stride < n ? __ldcs(src + i + u * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

int main() {
  cudaDeviceProp pr;
  if (!sm90_device(pr, "bulk copies")) return 0;
  const double copy = copy_bandwidth_gbs();
  const int64_t bytes = int64_t(1) << 30;
  uint8_t* src;
  uint32_t* sink;
  CK(cudaMalloc(&src, bytes));
  CK(cudaMemset(src, 1, bytes));
  CK(cudaMalloc(&sink, 4096 * 4));
  const int sms = pr.multiProcessorCount;
  printf("device: %s, %d SMs, copy %.0f GB/s\n", pr.name, sms, copy);
  const float plain_ms = median_ms([&] { plain_read<<<sms * 8, 256>>>((const uint4*)src, bytes / 16, sink); });
  const double plain = bytes / (plain_ms * 1e6);
  printf("plain read: %.0f GB/s (%.0f%% of copy)\n", plain, 100 * plain / copy);
  CK(cudaFuncSetAttribute(bulk_stream, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  double best = 0;
  for (int per_sm : {1, 2}) {
    for (int slot : {8192, 16384, 32768}) {
      for (int stages : {4, 6, 8, 12}) {
        const int smem = slot * stages;
        if (smem * per_sm > 200 * 1024 || stages > kMaxStages) continue;
        for (int consumers : {1, 2, 4}) {
          const int ctas = sms * per_sm;
          const int64_t per_cta = bytes / ctas / slot * slot;
          bulk_stream<<<ctas, 32 * (1 + consumers), smem>>>(src, per_cta, slot, stages, sink);
          CK(cudaGetLastError());
          CK(cudaDeviceSynchronize());
          const float ms = median_ms([&] { bulk_stream<<<ctas, 32 * (1 + consumers), smem>>>(src, per_cta, slot, stages, sink); });
          CK(cudaGetLastError());
          const double gbs = double(per_cta) * ctas / (ms * 1e6);
          best = gbs > best ? gbs : best;
          printf("%d CTA/SM  slot %5d  stages %2d  consumers %d: %.0f GB/s (%.0f%% of copy, %.0f%% of plain read)\n",
                 per_sm, slot, stages, consumers, gbs, 100 * gbs / copy, 100 * gbs / plain);
        }
      }
    }
  }
  printf("best bulk stream %.0f GB/s: %.0f%% of copy, %.0f%% of the plain read\n", best, 100 * best / copy,
         100 * best / plain);
  cudaFree(src), cudaFree(sink);
  return 0;
}
