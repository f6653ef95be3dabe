// The multi-tensor optimizer update kernels, templated on parameter type, state bits (32:
// float32 state, 8 or 4: codes) and algorithm. Each dtype's instantiations live in their own
// .cu file.
//
// Work split: the tensors of one launch are cut into chunks of 256 values (one
// quantization block of the 8-bit state). A warp takes whole chunks, each lane 8
// consecutive values read and written with vector accesses, so a block's new absmax is a
// warp shuffle reduction and requantization needs no other warp: dequantize, update in
// float32, requantize and write the parameter in one pass over memory. The grid is
// persistent; a warp walks the device table forward to find the tensor of its next chunk.
// With quantized state a warp loads its next chunk while it computes the current one (see
// update_chunks). Requantization finds each value's nearest code by table lookup
// (code_lookup.cuh), or by arithmetic for the 4-bit second moment's linear map. 4-bit state (Adam only) has two 128-value blocks a chunk: in a lane's
// layout each run of values lies in one block, so a block's absmax is a reduction over the
// lanes holding it (all 32 with float32 parameters, 16 with 16-bit ones).
//
// Tensor-wise 8-bit state and the trust ratio (LARS/LAMB) need a whole-tensor reduction
// before the update: a pre-pass computes it into each tensor's stats (zeroed first) and a
// final tiny kernel stores the tensor-wise absmax. Nothing synchronises with the host.
#pragma once
#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "bnb/nonfinite.h"
#include "bnb/optimizer.h"
#include "bnb/optimizer_cuda.h"
#include "../common/code_lookup.cuh"
#include "../common/atomics.cuh"
#include "../common/launch.cuh"
#include "../common/reduce.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

constexpr int kOptThreads = 512;
constexpr int kOptWarps = kOptThreads / 32;
constexpr int kOptPerLane = 8;  // 32 lanes x 8 = one 256-value chunk per warp
static_assert(kOptPerLane * 32 == kOptimizerBlock, "a warp covers one quantization block");
// How the update kernel is built (benchmarks/ab_optimizer_tuning.cu measures the settings
// against each other; docs/optimizers.md has the numbers):
// - Ahead: how many of a warp's chunks ahead of the current one are asked for with quantized
//   state, the next in registers, the rest of L2 (2: one in registers, one in L2). On an H100,
//   1, 3, 4 and 6 measured slower.
// - OneBranch: the reciprocals of a chunk's block maxima behind one test of all of them (the
//   common case: every maximum a normal float up to 2^126) instead of each maximum's own
//   tests and predicated prescale; the same results, about 6% fewer instructions issued. Off:
//   1% faster on an H100 for bf16 8-bit, even elsewhere; the H200, bound by issue, not measured.
template <int Ahead, bool OneBranch>
struct OptTuning {
  static constexpr int kAhead = Ahead;
  static constexpr bool kOneBranch = OneBranch;
};
using OptDefaultTuning = OptTuning<2, false>;

// Shared memory of the quantized-state kernels: the nearest-code lookup of each map
// (code_lookup.cuh; the first map's signed, the second's, Adam's second moment, unsigned),
// dynamic, and the values of each map (one lookup a code to dequantize), static (see the
// kernel). Two maps: about 88 KB, within the 99 KB a CTA may have on sm_86/sm_89; the kernel's
// registers allow one CTA an SM anyway.
// (A 4-bit table of the 256 bytes' value pairs, one lookup for two codes, measured 4% slower
// on bf16 parameters despite fewer instructions: random lookups into 2 KiB conflict on the
// banks, where the 16 values of a 4-bit map sit in 16 banks and never do.)
constexpr int kValFloats = kCodeSize;
inline int optimizer_smem_bytes(bool quantized, int states) {
  if (!quantized) return 0;
  return lookup_bytes(true) + (states == 2 ? lookup_bytes(false) : 0);  // (+ the value tables, static)
}

struct OptTable {
  const TensorSlot* slots;
  const int64_t* starts;
  int64_t total_chunks;
};

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

// (AdEMAMix's state3 lies n values after state1: aligned only where n allows it.)
__device__ __forceinline__ bool slot_vectorizable(const TensorSlot& s) {
  return aligned16(s.p) && aligned16(s.g) && aligned16(s.state1) && (s.state2 == nullptr || aligned16(s.state2)) &&
         (s.state3 == nullptr || aligned16(s.state3));
}

// n 32-bit words from or to memory in one access (n = 1, 2 or 4) or two (n = 8): loads cached
// in L2 only (measured 1% faster than loads marked for early eviction), stores streamed.
template <int N>
__device__ __forceinline__ void load_words(const void* src, uint32_t* w) {
  if constexpr (N == 1) {
    w[0] = __ldcg(static_cast<const unsigned int*>(src));
  } else if constexpr (N == 2) {
    const uint2 v = __ldcg(static_cast<const uint2*>(src));
    w[0] = v.x, w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = __ldcg(static_cast<const uint4*>(src) + i);
      w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
    }
  }
}
template <int N>
__device__ __forceinline__ void store_words(void* dst, const uint32_t* w) {
  if constexpr (N == 1) {
    __stcs(static_cast<unsigned int*>(dst), w[0]);
  } else if constexpr (N == 2) {
    __stcs(static_cast<uint2*>(dst), make_uint2(w[0], w[1]));
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; ++i)
      __stcs(static_cast<uint4*>(dst) + i, make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]));
  }
}

// Which 8 of a chunk's 256 values a lane holds: kRuns runs of kRun consecutive values, run r
// at r * kRunStride + lane * kRun. Runs are sized so that each access of a warp covers whole
// 32-byte sectors: 8 values (16 bytes of a 16-bit parameter, 8 codes) with 16-bit parameters
// and 8-bit state, else 4 (16 bytes of float32). Eight float32 values side by side in a lane
// took two 16-byte accesses that each used half of every sector they touched, doubling the
// L2 traffic of the loads.
template <typename T, int Bits>
struct LaneLayout {
  static constexpr bool kQ = Bits < 32;
  static constexpr int kRun = sizeof(T) == 2 && kQ ? 8 : 4;
  static constexpr int kRuns = kOptPerLane / kRun;
  static constexpr int kRunStride = kOptimizerBlock / kRuns;
  static constexpr int kStateBytes = kQ ? 1 : 4;                          // per value (8-bit and 32-bit)
  static constexpr int kValueWords = kRun * int(sizeof(T)) / 4;          // of p (and g) per run
  static constexpr int kStateWords = kRun * kStateBytes / 4;              // of each state per run
  // 4-bit state: the bytes of a run's codes (2 or 4), the absmax values a lane reads per state
  // (one per run: each run lies in one 128-value block) and the lanes sharing a block.
  static constexpr int kCodeBytes = kRun * 4 / 8;
  static constexpr int kScales = Bits == 4 ? kRuns : 1;
  static constexpr int kBlockLanes = int(kOptimizerBlock4bit) / kRun;
  // Where the lane's value j lies in its chunk.
  __device__ static __forceinline__ int offset(int lane, int j) {
    return (j / kRun) * kRunStride + lane * kRun + j % kRun;
  }
  __device__ static __forceinline__ int run_start(int lane, int r) { return r * kRunStride + lane * kRun; }
  // Which of the chunk's two 128-value blocks run r of the lane lies in (4-bit state).
  __device__ static __forceinline__ int run_block(int lane, int r) {
    return run_start(lane, r) / int(kOptimizerBlock4bit);
  }
  // The absmax of value j among the lane's kScales.
  static constexpr int scale_of(int j) { return Bits == 4 ? j / kRun : 0; }
};

// A lane's 4-bit codes of one run (2 or 4 bytes) in one access, and back.
template <int Bytes>
__device__ __forceinline__ uint32_t load_codes(const char* src) {
  if constexpr (Bytes == 2) return __ldcg(reinterpret_cast<const unsigned short*>(src));
  else return __ldcg(reinterpret_cast<const unsigned int*>(src));
}
template <int Bytes>
__device__ __forceinline__ void store_codes(char* dst, uint32_t w) {
  if constexpr (Bytes == 2) __stcs(reinterpret_cast<unsigned short*>(dst), static_cast<unsigned short>(w));
  else __stcs(reinterpret_cast<unsigned int*>(dst), w);
}

// Code j of a lane's 8 4-bit codes held in one word as they lie in memory: byte j / 2, the
// even value in the high nibble.
__device__ __forceinline__ uint32_t nibble(uint32_t w, int j) { return (w >> (8 * (j / 2) + 4 * (1 - j % 2))) & 0xfu; }

// One lane's 8 values of a chunk as they lie in memory: parameter and gradient, the states
// (codes or floats) and, for quantized state, the absmax of the blocks they lie in. Kept
// apart from the float values so that a warp's next chunk can be loaded while it computes
// the current one.
template <typename T, int Bits>
struct RawLane {
  using L = LaneLayout<T, Bits>;
  static constexpr bool Q = L::kQ;
  static constexpr int kStateRegs = Bits == 4 ? 1 : L::kRuns * L::kStateWords;
  uint32_t p[L::kRuns * L::kValueWords], g[L::kRuns * L::kValueWords];
  uint32_t a[kStateRegs], b[kStateRegs], c[kStateRegs];
  float amax1[L::kScales], amax2[L::kScales], amax3;

  // Full: vector loads; otherwise element by element, zeros past the end of the tensor.
  // three: AdEMAMix's slow EMA (state3) as well (8-bit or 32-bit state).
  __device__ __forceinline__ void load(const TensorSlot& s, uint32_t blk, int lane, bool full, bool two,
                                       bool block_wise, bool three = false) {
    if constexpr (Bits == 4) {
      load_4bit(s, blk, lane, full, two);
      return;
    }
    const int64_t chunk = int64_t(blk) * kOptimizerBlock;
    const T* P = static_cast<const T*>(s.p) + chunk;
    const T* G = static_cast<const T*>(s.g) + chunk;
    const char* S1 = static_cast<const char*>(s.state1) + chunk * L::kStateBytes;
    const char* S2 = static_cast<const char*>(s.state2) + chunk * L::kStateBytes;
    const char* S3 = static_cast<const char*>(s.state3) + chunk * L::kStateBytes;
    if (full) {
#pragma unroll
      for (int r = 0; r < L::kRuns; ++r) {
        const int o = L::run_start(lane, r);
        load_words<L::kValueWords>(P + o, p + r * L::kValueWords);
        load_words<L::kValueWords>(G + o, g + r * L::kValueWords);
        load_words<L::kStateWords>(S1 + o * L::kStateBytes, a + r * L::kStateWords);
        if (two) load_words<L::kStateWords>(S2 + o * L::kStateBytes, b + r * L::kStateWords);
        if (three) load_words<L::kStateWords>(S3 + o * L::kStateBytes, c + r * L::kStateWords);
      }
    } else {
      using Elem = std::conditional_t<Q, uint8_t, float>;
      const Elem* E1 = reinterpret_cast<const Elem*>(S1);
      const Elem* E2 = reinterpret_cast<const Elem*>(S2);
      const Elem* E3 = reinterpret_cast<const Elem*>(S3);
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        const int o = L::offset(lane, j);
        const bool in = chunk + o < s.n;
        reinterpret_cast<T*>(p)[j] = in ? P[o] : from_float<T>(0.f);
        reinterpret_cast<T*>(g)[j] = in ? G[o] : from_float<T>(0.f);
        reinterpret_cast<Elem*>(a)[j] = in ? E1[o] : Elem(0);
        reinterpret_cast<Elem*>(b)[j] = in && two ? E2[o] : Elem(0);
        reinterpret_cast<Elem*>(c)[j] = in && three ? E3[o] : Elem(0);
      }
    }
    if constexpr (Q) {
      const int64_t ablk = block_wise ? int64_t(blk) : 0;
      amax1[0] = s.absmax1[ablk];
      amax2[0] = two ? s.absmax2[ablk] : 0.f;
      amax3 = three ? s.absmax3[ablk] : 0.f;
    }
  }

  // 4-bit state (always block-wise): the codes into one word each, and per run the absmax of
  // its block (0 for a block past the end of the tensor).
  __device__ __forceinline__ void load_4bit(const TensorSlot& s, uint32_t blk, int lane, bool full, bool two) {
    const int64_t chunk = int64_t(blk) * kOptimizerBlock;
    const T* P = static_cast<const T*>(s.p) + chunk;
    const T* G = static_cast<const T*>(s.g) + chunk;
    const char* S1 = static_cast<const char*>(s.state1) + chunk / 2;
    const char* S2 = static_cast<const char*>(s.state2) + chunk / 2;
    a[0] = b[0] = 0u;
    if (full) {
#pragma unroll
      for (int r = 0; r < L::kRuns; ++r) {
        const int o = L::run_start(lane, r);
        load_words<L::kValueWords>(P + o, p + r * L::kValueWords);
        load_words<L::kValueWords>(G + o, g + r * L::kValueWords);
        a[0] |= load_codes<L::kCodeBytes>(S1 + o / 2) << (8 * L::kCodeBytes * r);
        if (two) b[0] |= load_codes<L::kCodeBytes>(S2 + o / 2) << (8 * L::kCodeBytes * r);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        const int o = L::offset(lane, j);
        const bool in = chunk + o < s.n;
        reinterpret_cast<T*>(p)[j] = in ? P[o] : from_float<T>(0.f);
        reinterpret_cast<T*>(g)[j] = in ? G[o] : from_float<T>(0.f);
        const int shift = 8 * (j / 2) + 4 * (1 - j % 2);
        if (in) a[0] |= nibble(uint32_t(uint8_t(S1[o / 2])), o % 2) << shift;
        if (in && two) b[0] |= nibble(uint32_t(uint8_t(S2[o / 2])), o % 2) << shift;
      }
    }
#pragma unroll
    for (int r = 0; r < L::kRuns; ++r) {
      const int64_t ablk = 2 * int64_t(blk) + L::run_block(lane, r);
      const bool in = full || ablk * kOptimizerBlock4bit < s.n;
      amax1[r] = in ? s.absmax1[ablk] : 0.f;
      amax2[r] = in && two ? s.absmax2[ablk] : 0.f;
    }
  }
};

// Asks L2 for the 128-byte lines of a chunk (full, vectorizable), one line per lane: the chunk
// after the warp's next one, so that its register loads find it in L2. Which line of which
// stream a lane asks for is the same for every chunk of a tensor: found once per tensor
// (l2_lane), so that a chunk's request is one multiply-add.
struct L2Lane {
  const char* line;  // the lane's line in chunk 0 of the tensor, null for a lane without one
  uint32_t stride;   // bytes of that stream per chunk
};

template <typename T, int Bits>
__device__ __forceinline__ L2Lane l2_lane(const TensorSlot& s, int lane, bool two, bool three = false) {
  constexpr int kLines = kOptimizerBlock * int(sizeof(T)) / 128;  // of p, and of g
  constexpr int kCodeBytes = int(kOptimizerBlock) * Bits / 8;      // of each state
  constexpr int kCodeLines = kCodeBytes / 128;
  if (lane < kLines) return {static_cast<const char*>(s.p) + lane * 128, kLines * 128};
  if (lane < 2 * kLines) return {static_cast<const char*>(s.g) + (lane - kLines) * 128, kLines * 128};
  if (lane < 2 * kLines + kCodeLines) return {static_cast<const char*>(s.state1) + (lane - 2 * kLines) * 128, kCodeBytes};
  if (two && lane < 2 * kLines + 2 * kCodeLines)
    return {static_cast<const char*>(s.state2) + (lane - 2 * kLines - kCodeLines) * 128, kCodeBytes};
  if (three && lane >= 2 * kLines + 2 * kCodeLines && lane < 2 * kLines + 3 * kCodeLines)
    return {static_cast<const char*>(s.state3) + (lane - 2 * kLines - 2 * kCodeLines) * 128, kCodeBytes};
  return {nullptr, 0};
}

__device__ __forceinline__ void prefetch_chunk_l2(const L2Lane& l, uint32_t blk) {
  if (l.line) asm volatile("prefetch.global.L2 [%0];" ::"l"(l.line + uint64_t(blk) * l.stride));
}

// One lane's 8 values in float32, and the new codes of quantized state.
template <typename T, int Bits>
struct LaneData {
  using L = LaneLayout<T, Bits>;
  float p[kOptPerLane], g[kOptPerLane], a[kOptPerLane], b[kOptPerLane], c[kOptPerLane];
  uint32_t qa[kOptPerLane], qb[kOptPerLane], qc[kOptPerLane];  // codes (< the map's size)

  // The gradient times the clipping factor gs; quantized state: codes to values, code[q] *
  // absmax, from the value tables in shared memory (state3 shares state1's map; 8-bit only).
  __device__ __forceinline__ void unpack(const RawLane<T, Bits>& r, float gs, const float* val1, const float* val2,
                                         bool two, bool three = false) {
    if constexpr (sizeof(T) == 2) {  // two values a word
#pragma unroll
      for (int i = 0; i < kOptPerLane / 2; ++i) {
        const float2 pv = word_to_float2(r.p[i], T()), gv = word_to_float2(r.g[i], T());
        p[2 * i] = pv.x, p[2 * i + 1] = pv.y;
        g[2 * i] = gv.x * gs, g[2 * i + 1] = gv.y * gs;
      }
    } else {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        p[j] = __uint_as_float(r.p[j]);
        g[j] = __uint_as_float(r.g[j]) * gs;
      }
    }
    if constexpr (Bits == 4) {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        a[j] = val1[nibble(r.a[0], j)] * r.amax1[L::scale_of(j)];
        b[j] = two ? val2[nibble(r.b[0], j)] * r.amax2[L::scale_of(j)] : 0.f;
      }
    } else {
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        if constexpr (Bits == 8) {
          a[j] = val1[reinterpret_cast<const uint8_t*>(r.a)[j]] * r.amax1[0];
          b[j] = two ? val2[reinterpret_cast<const uint8_t*>(r.b)[j]] * r.amax2[0] : 0.f;
          c[j] = three ? val1[reinterpret_cast<const uint8_t*>(r.c)[j]] * r.amax3 : 0.f;
        } else {
          a[j] = reinterpret_cast<const float*>(r.a)[j];
          b[j] = two ? reinterpret_cast<const float*>(r.b)[j] : 0.f;
          c[j] = three ? reinterpret_cast<const float*>(r.c)[j] : 0.f;
        }
      }
    }
  }
};

// Where a chunk's results go: the parameter, and the states (codes or floats), in the
// lane's layout. Full: vector stores; otherwise element by element up to the end.
template <typename T, int Bits, bool Full>
__device__ __forceinline__ void store_params(const TensorSlot& s, int64_t chunk, int lane,
                                             const float (&p)[kOptPerLane]) {
  using L = LaneLayout<T, Bits>;
  T* P = static_cast<T*>(s.p) + chunk;
  if constexpr (Full) {
#pragma unroll
    for (int r = 0; r < L::kRuns; ++r) {
      uint32_t w[L::kValueWords];
#pragma unroll
      for (int i = 0; i < L::kRun; ++i) reinterpret_cast<T*>(w)[i] = from_float<T>(p[r * L::kRun + i]);
      store_words<L::kValueWords>(P + L::run_start(lane, r), w);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j)
      if (chunk + L::offset(lane, j) < s.n) P[L::offset(lane, j)] = from_float<T>(p[j]);
  }
}

template <typename T, int Bits, bool Full>
__device__ __forceinline__ void store_state(void* state, int64_t chunk, int lane, int64_t n, const float (&v)[kOptPerLane],
                                            const uint32_t (&q)[kOptPerLane]) {
  using L = LaneLayout<T, Bits>;
  constexpr bool Q = L::kQ;
  if constexpr (Bits == 4) {  // two codes a byte, the even value high; past an odd end the low nibble is 0
    char* S = static_cast<char*>(state) + chunk / 2;
    if constexpr (Full) {
#pragma unroll
      for (int r = 0; r < L::kRuns; ++r) {
        uint32_t w = 0;  // (codes < 16: added at their nibbles, one instruction each)
#pragma unroll
        for (int i = 0; i < L::kRun; ++i) w += q[r * L::kRun + i] << (8 * (i / 2) + 4 * (1 - i % 2));
        store_codes<L::kCodeBytes>(S + L::run_start(lane, r) / 2, w);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kOptPerLane; j += 2) {
        const int o = L::offset(lane, j);
        if (chunk + o >= n) continue;
        S[o / 2] = char(q[j] << 4 | (chunk + o + 1 < n ? q[j + 1] : 0));
      }
    }
    return;
  }
  char* S = static_cast<char*>(state) + chunk * L::kStateBytes;
  if constexpr (Full) {
#pragma unroll
    for (int r = 0; r < L::kRuns; ++r) {
      uint32_t w[L::kStateWords];
#pragma unroll
      for (int i = 0; i < L::kRun; ++i) {
        if constexpr (Q) reinterpret_cast<uint8_t*>(w)[i] = uint8_t(q[r * L::kRun + i]);
        else w[i] = __float_as_uint(v[r * L::kRun + i]);
      }
      store_words<L::kStateWords>(S + L::run_start(lane, r) * L::kStateBytes, w);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      const int o = L::offset(lane, j);
      if (chunk + o >= n) continue;
      if constexpr (Q) reinterpret_cast<uint8_t*>(S)[o] = uint8_t(q[j]);
      else reinterpret_cast<float*>(S)[o] = v[j];
    }
  }
}

template <typename T, int Bits, bool Full>
__device__ __forceinline__ void store_states(const TensorSlot& s, int64_t chunk, int lane, LaneData<T, Bits>& d,
                                             bool two, bool three = false) {
  store_state<T, Bits, Full>(s.state1, chunk, lane, s.n, d.a, d.qa);
  if (two) store_state<T, Bits, Full>(s.state2, chunk, lane, s.n, d.b, d.qb);
  if (three) store_state<T, Bits, Full>(s.state3, chunk, lane, s.n, d.c, d.qc);
}

// The lookups and value tables of the quantized-state kernels, in shared memory.
struct StateMaps {
  const float* val1;
  const float* val2;
  CodeLookup look1, look2;
};

// What a tensor's chunks share, read once per tensor: global loads inside a chunk's update
// would wait on the loads of the warp's next chunk, which share their scoreboard.
struct SlotScalars {
  float step;        // lr times the trust ratio
  float gs;          // the clipping factor
  float max1, max2;  // tensor-wise 8-bit state: the new absmax found by the pre-pass
};

template <bool Q>
__device__ __forceinline__ SlotScalars slot_scalars(const OptimizerHyper& h, const TensorSlot& s) {
  SlotScalars k;
  k.step = h.lr * trust_factor(h, s.stats);
  k.gs = s.gnorm_scale ? *s.gnorm_scale : 1.f;
  k.max1 = Q && !h.block_wise ? s.stats[kNewMax1] : 0.f;
  k.max2 = Q && !h.block_wise ? s.stats[kNewMax2] : 0.f;
  return k;
}

// max(a, b), NaN where either is (fmaxf drops a NaN operand).
__device__ __forceinline__ float max_keeping_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// 1 / m for a block's new maximum m (0 for m = 0): the hardware's approximate reciprocal and
// one Newton step, which is the correctly rounded 1 / m but for rare last-bit differences, in
// three instructions (the IEEE division it replaces took about ten, with a branch to a slow
// path, per state and chunk). m above 2^126, where the approximation flushes to zero, takes
// the division. A subnormal m has no finite reciprocal: prescale_block first scales it and
// its values by block_prescale (bnb/nonfinite.h, as the CPU kernel does).
__device__ __forceinline__ float plain_inverse(float m) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(m));
  return fmaf(r, fmaf(-m, r, 1.f), r);
}
__device__ __forceinline__ float inverse_block_max(float m) {
  if (!(m > 0.f)) return 0.f;
  if (m > 0x1p126f) return 1.f / m;
  return plain_inverse(m);
}

// Whether block maximum m takes neither rare path of prescale_block: a normal float up to
// 2^126 (no prescale; 1 / m is plain_inverse(m)).
__device__ __forceinline__ bool plain_block_max(float m) { return m >= FLT_MIN && m <= 0x1p126f; }

// The reciprocal of block maximum m for the lane's values v[first, first + count) in that
// block, scaling those values first where m is subnormal (rare, and the same in every lane
// of the block). The scaled values then lie in [-1, 1] up to rounding, as lookup_code asks.
template <int N>
__device__ __forceinline__ float prescale_block(float m, float (&v)[N], int first, int count) {
  const float pre = block_prescale(m);
  if (pre != 1.f) {
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (j >= first && j < first + count) v[j] *= pre;
  }
  return inverse_block_max(m * pre);
}

// One 256-value chunk (block `blk` of tensor slot `s`, loaded into `raw`) by one warp. Full:
// the whole chunk lies in the tensor and every pointer allows vector access (the same for
// every lane, so that the warp reductions below run converged); otherwise every access is
// checked against the end.
// Linear2: the second map is the 4-bit linear map (i + 1) / 16, whose codes need no lookup.
template <typename T, int Bits, Algorithm A, bool Full, bool OneStep, bool Linear2, typename Tune>
__device__ __forceinline__ void update_chunk(const TensorSlot& s, const SlotScalars& k, uint32_t blk, int lane,
                                             const RawLane<T, Bits>& raw, const OptimizerHyper& h,
                                             const StateMaps& maps) {
  constexpr bool kTwo = num_states(A) == 2;
  constexpr bool kThree = has_state3(A);
  using L = LaneLayout<T, Bits>;
  constexpr bool Q = L::kQ;
  const int64_t chunk = int64_t(blk) * kOptimizerBlock;
  LaneData<T, Bits> d;
  d.unpack(raw, k.gs, maps.val1, maps.val2, kTwo, kThree);
  const float step = k.step;
  const float decay = weight_decay_factor(h);
  static_assert(Bits != 4 || A == Algorithm::Adam, "4-bit state is Adam's");
  float bm1[L::kScales], bm2[L::kScales];  // per block of the lane's values
  float m3 = 0.f;                          // the third state's (block-wise 8-bit)
#pragma unroll
  for (int i = 0; i < L::kScales; ++i) bm1[i] = bm2[i] = 0.f;
  // Quantized state stores a non-finite value as 0, outside its block's maximum. Checking
  // each value (a compare and a select, integer-pipe instructions the update is bound by)
  // is left to the maxima, taken by a maximum that keeps NaN (and infinity, as any maximum
  // does): a lane's maxima are finite exactly when its values are, one check a lane, and a
  // pass cleans the chunk where some lane's are not: rare, and warp-uniform.
#pragma unroll
  for (int j = 0; j < kOptPerLane; ++j) {
    float u;
    step_element_as<A>(h, d.p[j], d.g[j], d.a[j], d.b[j], d.c[j], u);
    d.p[j] = d.p[j] * decay - step * u;
    if (!Full && chunk + L::offset(lane, j) >= s.n) d.a[j] = d.b[j] = d.c[j] = 0.f;  // past the end: not in the absmax
    bm1[L::scale_of(j)] = max_keeping_nan(bm1[L::scale_of(j)], fabsf(d.a[j]));
    bm2[L::scale_of(j)] = max_keeping_nan(bm2[L::scale_of(j)], fabsf(d.b[j]));
    if constexpr (kThree) m3 = max_keeping_nan(m3, fabsf(d.c[j]));
  }
  if constexpr (Q) {
    bool bad = !(m3 <= FLT_MAX);
#pragma unroll
    for (int i = 0; i < L::kScales; ++i) bad |= !(max_keeping_nan(bm1[i], bm2[i]) <= FLT_MAX);
    if (__any_sync(0xffffffffu, bad)) {
#pragma unroll
      for (int i = 0; i < L::kScales; ++i) bm1[i] = bm2[i] = 0.f;
      m3 = 0.f;
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        d.a[j] = finite_or_zero(d.a[j]), d.b[j] = finite_or_zero(d.b[j]), d.c[j] = finite_or_zero(d.c[j]);
        bm1[L::scale_of(j)] = fmaxf(bm1[L::scale_of(j)], fabsf(d.a[j]));
        bm2[L::scale_of(j)] = fmaxf(bm2[L::scale_of(j)], fabsf(d.b[j]));
        if constexpr (kThree) m3 = fmaxf(m3, fabsf(d.c[j]));
      }
    }
  }
  store_params<T, Bits, Full>(s, chunk, lane, d.p);  // now: the parameter's registers are free for what follows
  if constexpr (Bits == 4) {
    // Each run's block maximum over the lanes holding that block, stored by the block's first
    // lane where the block lies in the tensor; then the nearest of the 16 codes.
    float r1[L::kScales], r2[L::kScales];
    float b1[L::kScales], b2[L::kScales];  // (OneBranch: the maxima until all are tested)
    bool plain = true;
#pragma unroll
    for (int r = 0; r < L::kScales; ++r) {
      const float x1 = warp_max<L::kBlockLanes>(bm1[r]);
      const float x2 = warp_max<L::kBlockLanes>(bm2[r]);
      const int64_t ablk = 2 * int64_t(blk) + L::run_block(lane, r);
      if (lane % L::kBlockLanes == 0 && (Full || ablk * kOptimizerBlock4bit < s.n)) {
        s.absmax1[ablk] = x1;
        s.absmax2[ablk] = x2;
      }
      if constexpr (Tune::kOneBranch) {
        b1[r] = x1, b2[r] = x2;
        plain &= plain_block_max(x1) & plain_block_max(x2);
      } else {
        r1[r] = prescale_block(x1, d.a, r * L::kRun, L::kRun);
        r2[r] = prescale_block(x2, d.b, r * L::kRun, L::kRun);
      }
    }
    if constexpr (Tune::kOneBranch) {
      if (plain) {
#pragma unroll
        for (int r = 0; r < L::kScales; ++r) r1[r] = plain_inverse(b1[r]), r2[r] = plain_inverse(b2[r]);
      } else {
#pragma unroll
        for (int r = 0; r < L::kScales; ++r) {
          r1[r] = prescale_block(b1[r], d.a, r * L::kRun, L::kRun);
          r2[r] = prescale_block(b2[r], d.b, r * L::kRun, L::kRun);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      d.qa[j] = lookup_code(maps.look1, d.a[j] * r1[L::scale_of(j)], OneStep);
      const float x = d.b[j] * r2[L::scale_of(j)];  // Adam's v >= 0
      d.qb[j] = Linear2 ? linear16_code(x) : lookup_code_nonneg(maps.look2, x, OneStep);
    }
  } else if constexpr (Q) {
    float m1 = bm1[0], m2 = bm2[0];
    if (h.block_wise) {
      m1 = warp_max(m1);
      if constexpr (kTwo) m2 = warp_max(m2);
      if constexpr (kThree) m3 = warp_max(m3);
      if (lane == 0) {
        s.absmax1[blk] = m1;
        if constexpr (kTwo) s.absmax2[blk] = m2;
        if constexpr (kThree) s.absmax3[blk] = m3;
      }
    } else {  // (three states are block-wise only: the op refuses the rest)
      m1 = k.max1;
      m2 = k.max2;
    }
    float r1, r2 = 0.f, r3 = 0.f;
    if (Tune::kOneBranch && (plain_block_max(m1) & (!kTwo || plain_block_max(m2)) & (!kThree || plain_block_max(m3)))) {
      r1 = plain_inverse(m1);
      if constexpr (kTwo) r2 = plain_inverse(m2);
      if constexpr (kThree) r3 = plain_inverse(m3);
    } else {
      r1 = prescale_block(m1, d.a, 0, kOptPerLane);
      if constexpr (kTwo) r2 = prescale_block(m2, d.b, 0, kOptPerLane);
      if constexpr (kThree) r3 = prescale_block(m3, d.c, 0, kOptPerLane);
    }
    // Block-wise maxima are of this chunk's own values; the tensor-wise state's comes from the
    // pre-pass kernel, whose values could round a little differently, so its magnitudes are
    // saturated before the lookup (code_lookup.cuh).
    auto requantize = [&](auto saturate) {
      constexpr bool kSat = decltype(saturate)::value;
#pragma unroll
      for (int j = 0; j < kOptPerLane; ++j) {
        d.qa[j] = lookup_code<kSat>(maps.look1, d.a[j] * r1, OneStep);
        if constexpr (kTwo) d.qb[j] = lookup_code_nonneg<kSat>(maps.look2, d.b[j] * r2, OneStep);  // second moment >= 0
        if constexpr (kThree) d.qc[j] = lookup_code<kSat>(maps.look1, d.c[j] * r3, OneStep);
      }
    };
    if (h.block_wise) requantize(std::false_type());
    else requantize(std::true_type());
  }
  store_states<T, Bits, Full>(s, chunk, lane, d, kTwo, kThree);
}

// The tensor holding chunk c (binary search of the table's chunk offsets; empty tensors
// are passed over).
__device__ __forceinline__ int tensor_of_chunk(const OptTable& tab, int count, int64_t c) {
  int lo = 0, hi = count - 1;  // the last tensor starting at or before c
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (__ldg(tab.starts + mid) <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// The chunks of the CTA: an equal share of all of them, contiguous ([begin, stop) with begin
// its first warp's), which its 16 warps sweep together, warp w taking chunks w, w + 16, ...
// of it: a CTA's loads stay in a few DRAM pages at a time, and a warp meets only the tensor
// ends that fall inside its CTA's share (one or two of the GPT-2-medium set's 292), where
// chunks dealt over the whole grid met every large tensor's end, each without the next chunk
// in flight. (A contiguous run of chunks a warp measured 4% slower on one large tensor.)
struct CtaChunks {
  int64_t begin, stop;  // this warp's first chunk; the end of the CTA's share
};
__device__ __forceinline__ CtaChunks cta_chunks(int64_t total) {
  const int64_t share = (total + gridDim.x - 1) / gridDim.x;
  const int64_t lo = int64_t(blockIdx.x) * share;
  return {lo + threadIdx.x / kLanes, lo + share < total ? lo + share : total};
}

// With 8-bit state a warp issues the loads of its next chunk
// (into registers) and asks L2 for the one after, before it computes the current one: one CTA
// of 16 warps an SM, each waiting for a chunk loaded only when needed, left the SM idle a
// third of the time, and one chunk ahead was not enough bytes in flight to cover DRAM's
// latency under load. Prefetching stops at the end of a tensor (reading the next tensor's
// slot early measured slower) and of the CTA's share.
template <typename T, int Bits, Algorithm A, bool OneStep, bool Linear2, typename Tune>
__device__ __forceinline__ void update_chunks(const OptTable& tab, int count, const OptimizerHyper& h,
                                              const StateMaps& maps) {
  constexpr bool Q = Bits < 32;
  constexpr bool kTwo = num_states(A) == 2;
  constexpr bool kThree = has_state3(A);
  constexpr bool kPrefetch = Q;  // 32-bit state moves 4x the bytes per value: already memory bound
  const int lane = threadIdx.x % kLanes;
  const CtaChunks mine = cta_chunks(tab.total_chunks);
  const int64_t begin = mine.begin, stop = mine.stop, stride = kOptWarps;
  if (begin >= stop) return;
  int t = tensor_of_chunk(tab, count, begin);
  TensorSlot s = tab.slots[t];
  SlotScalars k = slot_scalars<Q>(h, s);
  // The chunks of tensor t are [first, end); those before full_end are full (whole chunks of a
  // slot that allows vector access), so that "full" is one compare (end <= stop).
  int64_t first = __ldg(tab.starts + t), end = __ldg(tab.starts + t + 1);
  int64_t full_end = first + (slot_vectorizable(s) ? s.n / kOptimizerBlock : 0);
  L2Lane l2 = l2_lane<T, Bits>(s, lane, kTwo, kThree);
  RawLane<T, Bits> next;
  bool prefetched = false;
  for (int64_t c = begin; c < stop; c += stride) {
    RawLane<T, Bits> cur;
    if (prefetched) {
      cur = next;
    } else {
      if (c >= end) {
        do end = __ldg(tab.starts + (++t) + 1);
        while (c >= end);
        first = __ldg(tab.starts + t);
        s = tab.slots[t];
        full_end = first + (slot_vectorizable(s) ? s.n / kOptimizerBlock : 0);
        l2 = l2_lane<T, Bits>(s, lane, kTwo, kThree);
        k = slot_scalars<Q>(h, s);
      }
      cur.load(s, uint32_t(c - first), lane, c < full_end, kTwo, h.block_wise, kThree);
    }
    const bool full = c < full_end;
    const int64_t cn = c + stride, cl2 = c + Tune::kAhead * stride;
    prefetched = kPrefetch && cn < full_end && cn < stop;
    if (prefetched) next.load(s, uint32_t(cn - first), lane, true, kTwo, h.block_wise, kThree);
    if (Tune::kAhead > 1 && prefetched && cl2 < full_end && cl2 < stop) prefetch_chunk_l2(l2, uint32_t(cl2 - first));
    if (full)
      update_chunk<T, Bits, A, true, OneStep, Linear2, Tune>(s, k, uint32_t(c - first), lane, cur, h, maps);
    else
      update_chunk<T, Bits, A, false, OneStep, Linear2, Tune>(s, k, uint32_t(c - first), lane, cur, h, maps);
  }
}

// Asks L2 for the warp's first Ahead chunks (full ones): they arrive while the CTA builds its
// lookup tables, instead of after.
template <typename T, int Bits, int Ahead>
__device__ __forceinline__ void prefetch_first_chunks_l2(const OptTable& tab, int count, bool two, bool three) {
  const int lane = threadIdx.x % kLanes;
  const int64_t stride = kOptWarps;
  const CtaChunks mine = cta_chunks(tab.total_chunks);
  const int64_t c = mine.begin;
  if (c >= mine.stop) return;
  const int t = tensor_of_chunk(tab, count, c);
  const TensorSlot s = tab.slots[t];
  const int64_t first = __ldg(tab.starts + t), end = __ldg(tab.starts + t + 1);
  if (!slot_vectorizable(s)) return;
  const L2Lane l2 = l2_lane<T, Bits>(s, lane, two, three);
  for (int64_t x = c; x < end && x < mine.stop && x < c + Ahead * stride && (x - first + 1) * kOptimizerBlock <= s.n;
       x += stride)
    prefetch_chunk_l2(l2, uint32_t(x - first));
}

// 512 threads of about 120 registers fill an SM's register file: one CTA an SM. Smaller
// register budgets (two CTAs) spill and measured slower.
template <typename T, int Bits, Algorithm A, typename Tune = OptDefaultTuning>
__global__ void __launch_bounds__(kOptThreads, 1)
optimizer_update_kernel(OptTable tab, int count, OptimizerHyper h, const float* __restrict__ code1,
                        const float* __restrict__ code2) {
  constexpr bool Q = Bits < 32;
  constexpr bool kTwo = num_states(A) == 2;
  extern __shared__ __align__(16) unsigned char opt_smem[];
  StateMaps maps;
  maps.look1 = carve_lookup(opt_smem, true);
  maps.look2 = carve_lookup(opt_smem + lookup_bytes(true), false);
  // The value tables in static shared memory: their addresses are constants of the load
  // instructions (in the dynamic allocation, the compiler may add its base to every offset).
  __shared__ __align__(16) float opt_values[2 * kValFloats];
  float* val1 = opt_values;
  float* val2 = opt_values + kValFloats;
  maps.val1 = val1;
  maps.val2 = val2;
  bool one_step = true;
  if constexpr (Q) {
    constexpr int kMapSize = 1 << Bits;
    prefetch_first_chunks_l2<T, Bits, Tune::kAhead>(tab, count, kTwo, has_state3(A));
    for (int i = threadIdx.x; i < kMapSize; i += blockDim.x) {
      val1[i] = __ldg(code1 + i);
      if constexpr (kTwo) val2[i] = __ldg(code2 + i);
    }
    one_step = build_lookup(code1, maps.look1, true, kMapSize);  // ends with a barrier
    if constexpr (kTwo) one_step = build_lookup(code2, maps.look2, false, kMapSize) && one_step;
  }
  if constexpr (Bits == 4) {  // (AdamW4bit's default maps: the one-compare lookup and the linear map)
    if (one_step && is_linear16_map(code2)) {
      update_chunks<T, Bits, A, true, true, Tune>(tab, count, h, maps);
      return;
    }
  }
  if (!Q || one_step)  // 32-bit state: no lookup, one instance
    update_chunks<T, Bits, A, true, false, Tune>(tab, count, h, maps);
  else if constexpr (Q)
    update_chunks<T, Bits, A, false, false, Tune>(tab, count, h, maps);
}

// Pre-pass: per tensor, ||u||^2, ||p||^2 and the max of the new states, without writing
// anything else. A warp accumulates over its chunks of one tensor and flushes with atomics
// when it moves to the next tensor.
template <typename T, int Bits, Algorithm A>
__global__ void __launch_bounds__(kOptThreads, 1)
optimizer_prepass_kernel(OptTable tab, OptimizerHyper h, const float* __restrict__ code1,
                         const float* __restrict__ code2) {
  static_assert(!has_state3(A), "no pre-pass for three states (the op refuses max_unorm and tensor-wise state)");
  constexpr bool Q = Bits < 32;
  constexpr bool kTwo = num_states(A) == 2;
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
    const int64_t chunk = blk * kOptimizerBlock;
    RawLane<T, Bits> raw;
    raw.load(s, uint32_t(blk), lane, vec && chunk + kOptimizerBlock <= s.n, kTwo, h.block_wise);
    LaneData<T, Bits> d;
    d.unpack(raw, s.gnorm_scale ? *s.gnorm_scale : 1.f, val1, val2, kTwo);
#pragma unroll
    for (int j = 0; j < kOptPerLane; ++j) {
      float u;
      step_element_as<A>(h, d.p[j], d.g[j], d.a[j], d.b[j], u);
      if (chunk + LaneLayout<T, Bits>::offset(lane, j) < s.n) {
        usq += u * u;
        psq += d.p[j] * d.p[j];
        m1 = fmaxf(m1, finite_abs(d.a[j]));
        m2 = fmaxf(m2, finite_abs(d.b[j]));
      }
    }
  }
  if (any) flush(s);
}

// Tensor-wise 8-bit state: the absmax found by the pre-pass becomes the tensor's absmax.
__global__ void optimizer_store_tensor_absmax_kernel(const TensorSlot* slots, int count, bool two);

template <typename T, int Bits, Algorithm A>
cudaError_t launch_optimizer_kernels(const OptTable& tab, int count, const OptimizerHyper& h, const float* code1,
                                     const float* code2, float* workspace, cudaStream_t stream) {
  constexpr bool Q = Bits < 32;
  constexpr int states = num_states(A);
  const int64_t ctas_needed = (tab.total_chunks + kOptWarps - 1) / kOptWarps;
  if (ctas_needed == 0) return cudaSuccess;
  if constexpr (Bits == 4 || has_state3(A)) {
    // 4-bit state and three states: block-wise, no trust ratio (the op refuses the rest)
    if (needs_prepass(h, Q)) return cudaErrorInvalidValue;
  } else if (needs_prepass(h, Q)) {
    const auto pre = optimizer_prepass_kernel<T, Bits, A>;
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
  const auto main = optimizer_update_kernel<T, Bits, A>;
  const int smem = optimizer_smem_bytes(Q, states);
  const cudaError_t attr_main =
      cudaFuncSetAttribute((const void*)main, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (attr_main != cudaSuccess) return attr_main;
  const int64_t grid = std::min<int64_t>(ctas_needed, persistent_grid((const void*)main, kOptThreads, smem));
  main<<<int(grid), kOptThreads, smem, stream>>>(tab, count, h, code1, code2);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (Q && !h.block_wise) {
    optimizer_store_tensor_absmax_kernel<<<(count + 255) / 256, 256, 0, stream>>>(tab.slots, count, states == 2);
    e = cudaGetLastError();
  }
  return e;
}

// One dtype's entry point: picks the state format and algorithm (4-bit state: Adam only).
template <typename T>
cudaError_t launch_optimizer_update(const OptTable& tab, int count, StateFormat format, const OptimizerHyper& h,
                                    const float* code1, const float* code2, float* workspace, cudaStream_t stream) {
  if (format == StateFormat::Code4)
    return h.algorithm == Algorithm::Adam
               ? launch_optimizer_kernels<T, 4, Algorithm::Adam>(tab, count, h, code1, code2, workspace, stream)
               : cudaErrorInvalidValue;
#define BNB_OPT_CASE(ALG)                                                                                   \
  case Algorithm::ALG:                                                                                      \
    return format == StateFormat::Code8                                                                     \
               ? launch_optimizer_kernels<T, 8, Algorithm::ALG>(tab, count, h, code1, code2, workspace, stream) \
               : launch_optimizer_kernels<T, 32, Algorithm::ALG>(tab, count, h, code1, code2, workspace, stream);
  switch (h.algorithm) {
    BNB_OPT_CASE(Adam)
    BNB_OPT_CASE(Momentum)
    BNB_OPT_CASE(RMSprop)
    BNB_OPT_CASE(Adagrad)
    BNB_OPT_CASE(Lion)
    BNB_OPT_CASE(AdEMAMix)
  }
#undef BNB_OPT_CASE
  return cudaErrorInvalidValue;
}

#define BNB_INSTANTIATE_OPTIMIZER(T)                                                                          \
  template cudaError_t launch_optimizer_update<T>(const OptTable&, int, StateFormat, const OptimizerHyper&,     \
                                                  const float*, const float*, float*, cudaStream_t);

}  // namespace bnb::cuda
