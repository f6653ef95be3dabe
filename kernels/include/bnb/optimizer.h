// The optimizer update shared by the CPU and CUDA kernels: the per-element arithmetic of
// every algorithm (one definition, compiled for host and device), the hyper-parameters of
// one launch and the per-tensor slot of a multi-tensor update. Torch-free.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "bnb/dtype.h"

namespace bnb {

// LARS is Momentum and LAMB is Adam, each with max_unorm > 0 (the trust ratio). AdEMAMix is
// Adam with a second, slow EMA of the gradient mixed into the update.
enum class Algorithm : int { Adam = 0, Momentum = 1, RMSprop = 2, Adagrad = 3, Lion = 4, AdEMAMix = 5 };

// State tensors per parameter (state1, state2).
BNB_HD constexpr int num_states(Algorithm a) { return a == Algorithm::Adam || a == Algorithm::AdEMAMix ? 2 : 1; }

// AdEMAMix keeps three values per element: its state1 holds the fast EMA followed by the slow
// one (the reference library's [2, *shape] layout, absmax1 [2, blocks]); the slow EMA is the
// slot's state3 / absmax3, pointing into the second half.
BNB_HD constexpr bool has_state3(Algorithm a) { return a == Algorithm::AdEMAMix; }

// Values per quantization block of the 8-bit state, and the chunk of a multi-tensor launch.
constexpr int64_t kOptimizerBlock = 256;
// Values per quantization block of the 4-bit state (two blocks a chunk): 4-bit codes need the
// finer scale to follow the outliers of the moments.
constexpr int64_t kOptimizerBlock4bit = 128;

// How a launch keeps its states: float32 values, or codes into a sorted map scaled by a block
// maximum (absmax). 8-bit codes (maps of kFormat8bit) lie one a byte, in blocks of
// kOptimizerBlock values or one absmax for the tensor; 4-bit codes (maps of kFormat4bit) two a
// byte, the first value in the high nibble (a padding nibble past an odd end is 0), in blocks
// of kOptimizerBlock4bit values.
enum class StateFormat : int { Float32 = 0, Code8 = 1, Code4 = 2 };

constexpr int64_t state_block(StateFormat f) { return f == StateFormat::Code4 ? kOptimizerBlock4bit : kOptimizerBlock; }

// Bytes of one state of n values.
constexpr int64_t state_bytes(StateFormat f, int64_t n) {
  return f == StateFormat::Float32 ? 4 * n : f == StateFormat::Code8 ? n : (n + 1) / 2;
}

// Everything that is the same for every tensor of one launch.
struct OptimizerHyper {
  Algorithm algorithm;
  float lr;
  float beta1;             // Adam/Lion beta1, momentum (SGD/LARS), alpha (RMSprop)
  float beta2;             // Adam/Lion/AdEMAMix beta2
  float beta3;             // AdEMAMix: the slow EMA's decay (this step's, after its schedule)
  float alpha;             // AdEMAMix: the slow EMA's weight in the update (after its schedule)
  float eps;
  float weight_decay;
  bool decoupled;          // p *= 1 - lr * wd (AdamW, Lion, LAMB) instead of g += wd * p
  // Reciprocals, so that Adam's update is one division (and the same one torch does):
  float inv_bias_correction1;       // 1 / (1 - beta1^step) (1 when off)
  float inv_bias_correction2_sqrt;  // 1 / sqrt(1 - beta2^step) (1 when off)
  float dampening;         // SGD
  bool nesterov;           // SGD
  bool first_step;         // SGD: the momentum buffer starts as the gradient
  float max_unorm;         // > 0: update norm clipped to max_unorm * ||p|| (LARS, LAMB)
  bool block_wise;         // 8-bit state: one absmax per 256 values, else one per tensor
};

// One tensor of a multi-tensor update. state2/state3/absmax* are null where unused.
struct TensorSlot {
  void* p;
  const void* g;
  void* state1;
  void* state2;
  float* absmax1;
  float* absmax2;
  const float* gnorm_scale;  // the percentile-clipping scale of this tensor, null = 1
  float* stats;              // kStats floats of scratch (8-byte aligned), see below
  int64_t n;
  void* state3 = nullptr;    // AdEMAMix's slow EMA: the second half of state1's storage
  float* absmax3 = nullptr;  // its absmax: the second half of absmax1's
};

// Per-tensor scratch filled by the pre-pass (trust ratio, tensor-wise 8-bit state), in
// floats: the two squared norms are doubles (two floats each) so that their sums, added up
// in whatever order the GPU's warps finish, round to the same float every run.
enum StatIndex : int { kUnormSq = 0, kPnormSq = 2, kNewMax1 = 4, kNewMax2 = 5, kStats = 6 };

BNB_HD double* stat_double(float* stats, int index) { return reinterpret_cast<double*>(stats + index); }
BNB_HD double stat_double(const float* stats, int index) { return *reinterpret_cast<const double*>(stats + index); }

inline bool needs_prepass(const OptimizerHyper& h, bool eight_bit) {
  return h.max_unorm > 0.f || (eight_bit && !h.block_wise);
}

// Square root and quotient of the update. The GPU takes the hardware's approximations (within
// 2 ulp, subnormals flushed to zero; sqrt(0) = 0): the IEEE-rounded ones cost about 20
// instructions a value, which made the 8-bit update bound by instructions, and the update is
// rounded to the parameter's precision anyway. The CPU keeps the IEEE operations.
BNB_HD float update_sqrt(float x) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("sqrt.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#else
  return std::sqrt(x);
#endif
}
BNB_HD float update_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("div.approx.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a / b;
#endif
}

BNB_HD float sign_of(float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); }

// New states s1, s2 (s3: AdEMAMix's slow EMA) and the update direction u of one element: the
// parameter then moves as p = p * decay - lr * trust * u. `g` is already scaled by the
// clipping factor. The algorithm is a template argument so that device kernels compile one
// branch-free body each.
template <Algorithm A>
BNB_HD void step_element_as(const OptimizerHyper& h, float p, float g, float& s1, float& s2, float& s3, float& u) {
  if (!h.decoupled && h.weight_decay != 0.f) g += h.weight_decay * p;
  if constexpr (A == Algorithm::AdEMAMix) {
    s1 = h.beta1 * s1 + (1.f - h.beta1) * g;
    s3 = h.beta3 * s3 + (1.f - h.beta3) * g;
    s2 = h.beta2 * s2 + (1.f - h.beta2) * g * g;
    u = update_div(s1 * h.inv_bias_correction1 + h.alpha * s3, update_sqrt(s2) * h.inv_bias_correction2_sqrt + h.eps);
  } else if constexpr (A == Algorithm::Adam) {
    s1 = h.beta1 * s1 + (1.f - h.beta1) * g;
    s2 = h.beta2 * s2 + (1.f - h.beta2) * g * g;
    u = update_div(s1 * h.inv_bias_correction1, update_sqrt(s2) * h.inv_bias_correction2_sqrt + h.eps);
  } else if constexpr (A == Algorithm::Momentum) {
    s1 = h.first_step ? g : h.beta1 * s1 + (1.f - h.dampening) * g;
    u = h.nesterov ? g + h.beta1 * s1 : s1;
  } else if constexpr (A == Algorithm::RMSprop) {
    s1 = h.beta1 * s1 + (1.f - h.beta1) * g * g;
    u = update_div(g, update_sqrt(s1) + h.eps);
  } else if constexpr (A == Algorithm::Adagrad) {
    s1 = s1 + g * g;
    u = update_div(g, update_sqrt(s1) + h.eps);
  } else {  // Lion
    u = sign_of(h.beta1 * s1 + (1.f - h.beta1) * g);
    s1 = h.beta2 * s1 + (1.f - h.beta2) * g;
  }
}

// Algorithms of two states or fewer.
template <Algorithm A>
BNB_HD void step_element_as(const OptimizerHyper& h, float p, float g, float& s1, float& s2, float& u) {
  static_assert(!has_state3(A), "AdEMAMix updates three states");
  float unused = 0.f;
  step_element_as<A>(h, p, g, s1, s2, unused, u);
}

// The same with the algorithm chosen at run time (the CPU kernels).
BNB_HD void step_element(const OptimizerHyper& h, float p, float g, float& s1, float& s2, float& s3, float& u) {
  switch (h.algorithm) {
    case Algorithm::Adam: step_element_as<Algorithm::Adam>(h, p, g, s1, s2, s3, u); return;
    case Algorithm::Momentum: step_element_as<Algorithm::Momentum>(h, p, g, s1, s2, s3, u); return;
    case Algorithm::RMSprop: step_element_as<Algorithm::RMSprop>(h, p, g, s1, s2, s3, u); return;
    case Algorithm::Adagrad: step_element_as<Algorithm::Adagrad>(h, p, g, s1, s2, s3, u); return;
    case Algorithm::Lion: step_element_as<Algorithm::Lion>(h, p, g, s1, s2, s3, u); return;
    case Algorithm::AdEMAMix: step_element_as<Algorithm::AdEMAMix>(h, p, g, s1, s2, s3, u); return;
  }
  u = 0.f;
}

BNB_HD float weight_decay_factor(const OptimizerHyper& h) {
  return h.decoupled ? 1.f - h.lr * h.weight_decay : 1.f;
}

// The factor the update is multiplied by: max_unorm * ||p|| / ||u|| where ||u|| exceeds
// max_unorm * ||p||, else 1 (a trust ratio capped at 1, as in the LARS/LAMB of the 8-bit
// optimizers paper's library). A non-finite norm (a NaN or Inf gradient or parameter
// anywhere in the tensor) makes it NaN: the tensor's update shows the damage rather than
// taking a silently wrong scale (no clipping, or none of the update).
BNB_HD float trust_factor(const OptimizerHyper& h, const float* stats) {
  if (!(h.max_unorm > 0.f)) return 1.f;
  const float unorm = float(sqrt(stat_double(stats, kUnormSq)));
  const float limit = h.max_unorm * float(sqrt(stat_double(stats, kPnormSq)));
  if (!(unorm <= FLT_MAX) || !(limit <= FLT_MAX)) return NAN;
  return (unorm > limit && unorm > 0.f) ? limit / unorm : 1.f;
}

// The device table of a multi-tensor launch: `count` slots, then count + 1 int64 offsets
// of each tensor's first 256-value chunk (the last is the total), so that a warp finds the
// tensor of its chunk by walking forward.
inline size_t optimizer_table_bytes(int64_t count) {
  return size_t(count) * sizeof(TensorSlot) + size_t(count + 1) * sizeof(int64_t);
}

// Writes the table for `slots` into `out` (optimizer_table_bytes(count) bytes); returns the
// total number of chunks.
inline int64_t fill_optimizer_table(const TensorSlot* slots, int64_t count, void* out) {
  auto* s = static_cast<TensorSlot*>(out);
  auto* starts = reinterpret_cast<int64_t*>(s + count);
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    s[i] = slots[i];
    starts[i] = total;
    total += num_blocks(slots[i].n, kOptimizerBlock);
  }
  starts[count] = total;
  return total;
}

}  // namespace bnb
