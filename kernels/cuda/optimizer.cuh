// The multi-tensor optimizer update kernels, templated on parameter type, state kind
// (8-bit or 32-bit) and algorithm. Each dtype's instantiations live in their own .cu file.
//
// Work split: the tensors of one launch are cut into chunks of 256 values (one
// quantization block of the 8-bit state). A warp takes whole chunks, each lane 8
// consecutive values read and written with vector accesses, so a block's new absmax is a
// warp shuffle reduction and requantization needs no other warp: dequantize, update in
// float32, requantize and write the parameter in one pass over memory. The grid is
// persistent; a warp walks the device table forward to find the tensor of its next chunk.
// Requantization finds each value's nearest code by table lookup (code_lookup.cuh).
//
// Tensor-wise 8-bit state and the trust ratio (LARS/LAMB) need a whole-tensor reduction
// before the update: a pre-pass computes it into each tensor's stats (zeroed first) and a
// final tiny kernel stores the tensor-wise absmax. Nothing synchronises with the host.
#pragma once
#include <algorithm>

#include "bnb/optimizer.h"
#include "bnb/optimizer_cuda.h"
#include "bnb/quantize_cuda.h"
#include "code_lookup.cuh"
#include "quant_common.cuh"

namespace bnb::cuda {

constexpr int kOptThreads = 512;
constexpr int kOptWarps = kOptThreads / 32;
constexpr int kOptPerLane = 8;  // 32 lanes x 8 = one 256-value chunk per warp
static_assert(kOptPerLane * 32 == kOptimizerBlock, "a warp covers one quantization block");

// Shared memory of the 8-bit kernels, per map: the nearest-code lookup (code_lookup.cuh) and
// the 256 code values (one lookup a value to dequantize). One-state algorithms use only the
// first map. Two maps: about 17 KB, so shared memory never limits the CTAs per SM.
constexpr int kValFloats = kCodeSize;
inline int optimizer_smem_bytes(bool eight_bit, int states) {
  return eight_bit ? states * (kLookupBytes + kValFloats * int(sizeof(float))) : 0;
}

struct OptTable {
  const TensorSlot* slots;
  const int64_t* starts;
  int64_t total_chunks;
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Max of non-negative floats through their int bits (ordered the same way).
__device__ __forceinline__ void atomic_max_nonneg(float* addr, float v) {
  atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
}

// The slot of chunk c: advances t (this warp's current tensor) and reloads s when it moves.
__device__ __forceinline__ bool advance_to(const OptTable& tab, int64_t c, int& t, TensorSlot& s) {
  bool moved = false;
  while (__ldg(tab.starts + t + 1) <= c) {
    ++t;
    moved = true;
  }
  if (moved) s = tab.slots[t];
  return moved;
}

__device__ __forceinline__ bool slot_vectorizable(const TensorSlot& s) {
  return aligned16(s.p) && aligned16(s.g) && aligned16(s.state1) && (s.state2 == nullptr || aligned16(s.state2));
}

// Loads 8 values of each operand of one lane (zeros past the end of the tensor).
template <typename T, bool Q>
struct LaneData {
  float p[kOptPerLane], g[kOptPerLane], a[kOptPerLane], b[kOptPerLane];
  uint8_t qa[kOptPerLane], qb[kOptPerLane];

  __device__ __forceinline__ void load(const TensorSlot& s, int64_t base, bool full, bool two) {
    const T* P = static_cast<const T*>(s.p);
    const T* G = static_cast<const T*>(s.g);
    if (full) {
      load_vec<T, kOptPerLane>(P + base, p);
      load_vec<T, kOptPerLane>(G + base, g);
      if constexpr (Q) {
        load_codes<kOptPerLane>(static_cast<const uint8_t*>(s.state1) + base, qa);
        if (two) load_codes<kOptPerLane>(static_cast<const uint8_t*>(s.state2) + base, qb);
      } else {
        load_vec<float, kOptPerLane>(static_cast<const float*>(s.state1) + base, a);
        if (two) load_vec<float, kOptPerLane>(static_cast<const float*>(s.state2) + base, b);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        const bool in = base + j < s.n;
        p[j] = in ? to_float(P[base + j]) : 0.f;
        g[j] = in ? to_float(G[base + j]) : 0.f;
        if constexpr (Q) {
          qa[j] = in ? static_cast<const uint8_t*>(s.state1)[base + j] : 0;
          qb[j] = in && two ? static_cast<const uint8_t*>(s.state2)[base + j] : 0;
        } else {
          a[j] = in ? static_cast<const float*>(s.state1)[base + j] : 0.f;
          b[j] = in && two ? static_cast<const float*>(s.state2)[base + j] : 0.f;
        }
      }
    }
  }

  // 8-bit: codes to values, code[q] * absmax, from the value tables in shared memory.
  __device__ __forceinline__ void dequantize(const float* val1, const float* val2, float amax1, float amax2,
                                             bool two) {
    if constexpr (Q) {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        a[j] = val1[qa[j]] * amax1;
        b[j] = two ? val2[qb[j]] * amax2 : 0.f;
      }
    }
  }
};

// Where a chunk's results go: the parameter, and the states (codes or floats).
template <typename T, bool Full>
__device__ __forceinline__ void store_params(const TensorSlot& s, int64_t base, const float (&p)[kOptPerLane]) {
  T* P = static_cast<T*>(s.p);
  if constexpr (Full) {
    store_vec<T, kOptPerLane>(P + base, p);
  } else {
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j)
      if (base + j < s.n) P[base + j] = from_float<T>(p[j]);
  }
}

template <typename T, bool Q, bool Full>
__device__ __forceinline__ void store_states(const TensorSlot& s, int64_t base, LaneData<T, Q>& d, bool two) {
  if constexpr (Full) {
    if constexpr (Q) {
      store_codes<kOptPerLane>(static_cast<uint8_t*>(s.state1) + base, d.qa);
      if (two) store_codes<kOptPerLane>(static_cast<uint8_t*>(s.state2) + base, d.qb);
    } else {
      store_vec<float, kOptPerLane>(static_cast<float*>(s.state1) + base, d.a);
      if (two) store_vec<float, kOptPerLane>(static_cast<float*>(s.state2) + base, d.b);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      if (base + j >= s.n) continue;
      if constexpr (Q) {
        static_cast<uint8_t*>(s.state1)[base + j] = d.qa[j];
        if (two) static_cast<uint8_t*>(s.state2)[base + j] = d.qb[j];
      } else {
        static_cast<float*>(s.state1)[base + j] = d.a[j];
        if (two) static_cast<float*>(s.state2)[base + j] = d.b[j];
      }
    }
  }
}

// One 256-value chunk (block `blk` of tensor slot `s`) by one warp. Full: the whole chunk lies
// in the tensor and every pointer allows vector access (the same for every lane, so that the
// warp reductions below run converged); otherwise every access is checked against the end.
template <typename T, bool Q, Algorithm A, bool Full, bool OneStep>
__device__ __forceinline__ void update_chunk(const TensorSlot& s, int64_t blk, int lane, const OptimizerHyper& h,
                                             const float* val1, const float* val2, const CodeLookup& look1,
                                             const CodeLookup& look2) {
  constexpr bool kTwo = A == Algorithm::Adam;
  const int64_t base = blk * kOptimizerBlock + int64_t(lane) * kOptPerLane;
  LaneData<T, Q> d;
  d.load(s, base, Full, kTwo);
  const int64_t ablk = h.block_wise ? blk : 0;
  if constexpr (Q) d.dequantize(val1, val2, s.absmax1[ablk], kTwo ? s.absmax2[ablk] : 0.f, kTwo);
  const float gs = s.gnorm_scale ? *s.gnorm_scale : 1.f;
  const float step = h.lr * trust_factor(h, s.stats);
  const float decay = weight_decay_factor(h);
  float m1 = 0.f, m2 = 0.f;
#pragma unroll
  for (int j = 0; j < kOptPerLane; ++j) {
    float u;
    step_element_as<A>(h, d.p[j], d.g[j] * gs, d.a[j], d.b[j], u);
    d.p[j] = d.p[j] * decay - step * u;
    if (!Full && base + j >= s.n) d.a[j] = d.b[j] = 0.f;  // past the end: not part of the block's absmax
    m1 = fmaxf(m1, fabsf(d.a[j]));
    m2 = fmaxf(m2, fabsf(d.b[j]));
  }
  store_params<T, Full>(s, base, d.p);  // now: the parameter's registers are free for what follows
  if constexpr (Q) {
    if (h.block_wise) {
      m1 = warp_max(m1);
      if constexpr (kTwo) m2 = warp_max(m2);
      if (lane == 0) {
        s.absmax1[blk] = m1;
        if constexpr (kTwo) s.absmax2[blk] = m2;
      }
    } else {
      m1 = s.stats[kNewMax1];
      m2 = s.stats[kNewMax2];
    }
    const float r1 = m1 > 0.f ? 1.f / m1 : 0.f, r2 = m2 > 0.f ? 1.f / m2 : 0.f;
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      d.qa[j] = lookup_code(look1, d.a[j] * r1, OneStep);
      if constexpr (kTwo) d.qb[j] = lookup_code_nonneg(look2, d.b[j] * r2, OneStep);  // Adam's v >= 0
    }
  }
  store_states<T, Q, Full>(s, base, d, kTwo);
}

// The persistent loop: this warp's chunks, in order.
template <typename T, bool Q, Algorithm A, bool OneStep>
__device__ __forceinline__ void update_chunks(const OptTable& tab, const OptimizerHyper& h, const float* val1,
                                              const float* val2, const CodeLookup& look1, const CodeLookup& look2) {
  const int lane = threadIdx.x % kLanes;
  const int64_t warps = int64_t(gridDim.x) * kOptWarps;
  int t = 0;
  TensorSlot s = tab.slots[0];
  bool vec = slot_vectorizable(s);
  for (int64_t c = int64_t(blockIdx.x) * kOptWarps + threadIdx.x / kLanes; c < tab.total_chunks; c += warps) {
    if (advance_to(tab, c, t, s)) vec = slot_vectorizable(s);
    const int64_t blk = c - __ldg(tab.starts + t);
    if (vec && (blk + 1) * kOptimizerBlock <= s.n)
      update_chunk<T, Q, A, true, OneStep>(s, blk, lane, h, val1, val2, look1, look2);
    else
      update_chunk<T, Q, A, false, OneStep>(s, blk, lane, h, val1, val2, look1, look2);
  }
}

// 512 threads of about 120 registers fill an SM's register file: one CTA an SM. Smaller
// register budgets (two CTAs) spill and measured slower, as did prefetching the next chunk
// (the update is bound by instruction issue, not by memory latency).
template <typename T, bool Q, Algorithm A>
__global__ void __launch_bounds__(kOptThreads, 1)
optimizer_update_kernel(OptTable tab, OptimizerHyper h, const float* __restrict__ code1,
                        const float* __restrict__ code2) {
  constexpr bool kTwo = A == Algorithm::Adam;
  extern __shared__ __align__(16) unsigned char opt_smem[];
  const CodeLookup look1 = carve_lookup(opt_smem);
  const CodeLookup look2 = carve_lookup(opt_smem + (kTwo ? kLookupBytes : 0));
  float* val1 = reinterpret_cast<float*>(opt_smem + (kTwo ? 2 : 1) * kLookupBytes);
  float* val2 = val1 + kValFloats;
  bool one_step = true;
  if constexpr (Q) {
    for (int i = threadIdx.x; i < kValFloats; i += blockDim.x) {
      val1[i] = __ldg(code1 + i);
      if constexpr (kTwo) val2[i] = __ldg(code2 + i);
    }
    one_step = build_lookups(code1, kTwo ? code2 : nullptr, look1, look2);  // ends with a barrier
  }
  if (!Q || one_step)  // 32-bit state: no lookup, one instance
    update_chunks<T, Q, A, true>(tab, h, val1, val2, look1, look2);
  else if constexpr (Q)
    update_chunks<T, Q, A, false>(tab, h, val1, val2, look1, look2);
}

// Pre-pass: per tensor, ||u||^2, ||p||^2 and the max of the new states, without writing
// anything else. A warp accumulates over its chunks of one tensor and flushes with atomics
// when it moves to the next tensor.
template <typename T, bool Q, Algorithm A>
__global__ void __launch_bounds__(kOptThreads, 1)
optimizer_prepass_kernel(OptTable tab, OptimizerHyper h, const float* __restrict__ code1,
                         const float* __restrict__ code2) {
  constexpr bool kTwo = A == Algorithm::Adam;
  extern __shared__ float smem[];
  float* val1 = smem;
  float* val2 = smem + kValFloats;
  if constexpr (Q) {
    for (int i = threadIdx.x; i < kValFloats; i += blockDim.x) {
      val1[i] = __ldg(code1 + i);
      if constexpr (kTwo) val2[i] = __ldg(code2 + i);
    }
    __syncthreads();
  }
  const int lane = threadIdx.x % kLanes;
  const int64_t warps = int64_t(gridDim.x) * kOptWarps;
  int t = 0;
  TensorSlot s = tab.slots[0];
  bool vec = slot_vectorizable(s);
  float usq = 0.f, psq = 0.f, m1 = 0.f, m2 = 0.f;
  auto flush = [&](const TensorSlot& slot) {
    usq = warp_sum(usq);
    psq = warp_sum(psq);
    m1 = warp_max(m1);
    m2 = warp_max(m2);
    if (lane == 0) {
      if (h.max_unorm > 0.f) {
        atomicAdd(stat_double(slot.stats, kUnormSq), double(usq));
        atomicAdd(stat_double(slot.stats, kPnormSq), double(psq));
      }
      if (Q && !h.block_wise) {
        atomic_max_nonneg(slot.stats + kNewMax1, m1);
        if (kTwo) atomic_max_nonneg(slot.stats + kNewMax2, m2);
      }
    }
    usq = psq = m1 = m2 = 0.f;
  };
  bool any = false;
  for (int64_t c = int64_t(blockIdx.x) * kOptWarps + threadIdx.x / kLanes; c < tab.total_chunks; c += warps) {
    const TensorSlot prev = s;
    if (advance_to(tab, c, t, s)) {
      if (any) flush(prev);
      vec = slot_vectorizable(s);
    }
    any = true;
    const int64_t blk = c - __ldg(tab.starts + t);
    const int64_t base = blk * kOptimizerBlock + int64_t(lane) * kOptPerLane;
    const bool full = vec && base + kOptPerLane <= s.n;
    LaneData<T, Q> d;
    d.load(s, base, full, kTwo);
    const int64_t ablk = h.block_wise ? blk : 0;
    if constexpr (Q) d.dequantize(val1, val2, s.absmax1[ablk], kTwo ? s.absmax2[ablk] : 0.f, kTwo);
    const float gs = s.gnorm_scale ? *s.gnorm_scale : 1.f;
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      float u;
      step_element_as<A>(h, d.p[j], d.g[j] * gs, d.a[j], d.b[j], u);
      if (base + j < s.n) {
        usq += u * u;
        psq += d.p[j] * d.p[j];
        m1 = fmaxf(m1, fabsf(d.a[j]));
        m2 = fmaxf(m2, fabsf(d.b[j]));
      }
    }
  }
  if (any) flush(s);
}

// Tensor-wise 8-bit state: the absmax found by the pre-pass becomes the tensor's absmax.
__global__ void optimizer_store_tensor_absmax_kernel(const TensorSlot* slots, int count, bool two);

template <typename T, bool Q, Algorithm A>
cudaError_t launch_optimizer_kernels(const OptTable& tab, int count, const OptimizerHyper& h, const float* code1,
                                     const float* code2, float* workspace, cudaStream_t stream) {
  constexpr int states = A == Algorithm::Adam ? 2 : 1;
  const int64_t ctas_needed = (tab.total_chunks + kOptWarps - 1) / kOptWarps;
  if (ctas_needed == 0) return cudaSuccess;
  if (needs_prepass(h, Q)) {
    const auto pre = optimizer_prepass_kernel<T, Q, A>;
    const int smem = Q ? states * kValFloats * int(sizeof(float)) : 0;
    // set on every launch: the attribute belongs to the current device
    const cudaError_t attr_pre =
        cudaFuncSetAttribute((const void*)pre, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (attr_pre != cudaSuccess) return attr_pre;
    cudaError_t e = cudaMemsetAsync(workspace, 0, size_t(count) * kStats * sizeof(float), stream);
    if (e != cudaSuccess) return e;
    const int64_t grid = std::min<int64_t>(ctas_needed, persistent_grid((const void*)pre, kOptThreads, smem));
    pre<<<int(grid), kOptThreads, smem, stream>>>(tab, h, code1, code2);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  const auto main = optimizer_update_kernel<T, Q, A>;
  const int smem = optimizer_smem_bytes(Q, states);
  const cudaError_t attr_main =
      cudaFuncSetAttribute((const void*)main, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (attr_main != cudaSuccess) return attr_main;
  const int64_t grid = std::min<int64_t>(ctas_needed, persistent_grid((const void*)main, kOptThreads, smem));
  main<<<int(grid), kOptThreads, smem, stream>>>(tab, h, code1, code2);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (Q && !h.block_wise) {
    optimizer_store_tensor_absmax_kernel<<<(count + 255) / 256, 256, 0, stream>>>(tab.slots, count, states == 2);
    e = cudaGetLastError();
  }
  return e;
}

// One dtype's entry point: picks the state kind and algorithm.
template <typename T>
cudaError_t launch_optimizer_update(const OptTable& tab, int count, bool eight_bit, const OptimizerHyper& h,
                                    const float* code1, const float* code2, float* workspace, cudaStream_t stream) {
#define BNB_OPT_CASE(ALG)                                                                                   \
  case Algorithm::ALG:                                                                                      \
    return eight_bit                                                                                        \
               ? launch_optimizer_kernels<T, true, Algorithm::ALG>(tab, count, h, code1, code2, workspace, stream) \
               : launch_optimizer_kernels<T, false, Algorithm::ALG>(tab, count, h, code1, code2, workspace, stream);
  switch (h.algorithm) {
    BNB_OPT_CASE(Adam)
    BNB_OPT_CASE(Momentum)
    BNB_OPT_CASE(RMSprop)
    BNB_OPT_CASE(Adagrad)
    BNB_OPT_CASE(Lion)
  }
#undef BNB_OPT_CASE
  return cudaErrorInvalidValue;
}

#define BNB_INSTANTIATE_OPTIMIZER(T)                                                                         \
  template cudaError_t launch_optimizer_update<T>(const OptTable&, int, bool, const OptimizerHyper&, const float*, \
                                                  const float*, float*, cudaStream_t);

}  // namespace bnb::cuda
