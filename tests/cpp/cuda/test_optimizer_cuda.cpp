// The CUDA multi-tensor optimizer update (bnb/optimizer_cuda.h) against the CPU update on
// the same tensors, for every algorithm, 32-bit and 8-bit states (and 4-bit state for Adam),
// one tensor and several (an empty one included). The GPU takes the hardware's square root and
// quotient (within 2 ulp, bnb/optimizer.h) and may fuse multiply-adds: parameters agree to a
// rounding of their dtype, 32-bit states to float32 rounding, codes to one step of the map.
#include <algorithm>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <tuple>

#include "bnb/optimizer.h"
#include "bnb/optimizer_cpu.h"
#include "bnb/optimizer_cuda.h"
#include "cuda_test_util.h"

namespace bnb {
inline void PrintTo(Algorithm a, std::ostream* os) {
  static const char* const names[] = {"Adam", "Momentum", "RMSprop", "Adagrad", "Lion", "AdEMAMix"};
  *os << names[int(a)];
}
}  // namespace bnb

namespace {

using bnb::Algorithm;
using bnb::DType;
using namespace bnb_test;

bnb::OptimizerHyper hyper(Algorithm a, bool block_wise, float max_unorm) {
  bnb::OptimizerHyper h{};
  h.algorithm = a;
  h.lr = 1e-3f;
  h.beta1 = 0.9f;
  h.beta2 = a == Algorithm::Lion ? 0.99f : 0.999f;
  h.beta3 = 0.995f;  // AdEMAMix
  h.alpha = 2.f;
  h.eps = 1e-8f;
  h.weight_decay = 0.01f;
  h.decoupled = a == Algorithm::Adam || a == Algorithm::Lion || a == Algorithm::AdEMAMix;
  h.inv_bias_correction1 = float(1.0 / (1.0 - 0.9 * 0.9 * 0.9));  // step 3
  h.inv_bias_correction2_sqrt = float(1.0 / std::sqrt(1.0 - 0.999 * 0.999 * 0.999));
  h.dampening = 0.f;
  h.nesterov = false;
  h.first_step = false;
  h.max_unorm = max_unorm;
  h.block_wise = block_wise;
  return h;
}

// One tensor's host data: parameter and gradient in the dtype, states as the kernel keeps them.
struct HostTensor {
  Values p, g;
  std::vector<float> s1, s2;    // 32-bit states
  std::vector<uint8_t> q1, q2;  // 8-bit states, or 4-bit ones two a byte
  std::vector<float> a1, a2;    // their absmax
};

// nonneg1: state1 holds squares (RMSprop, Adagrad), so it starts non-negative. stacked: state1
// holds that many states of n values (AdEMAMix: 2), each with its absmax.
HostTensor make_tensor(DType dtype, int64_t n, bnb::StateFormat format, bool block_wise, bool nonneg1,
                       uint32_t seed, int64_t stacked = 1) {
  HostTensor t{random_values(dtype, n, seed), random_values(dtype, n, seed + 1, 0.1f)};
  std::mt19937 rng(seed + 2);
  std::normal_distribution<float> normal(0.f, 0.01f);
  std::uniform_int_distribution<int> code(0, 255);
  if (format != bnb::StateFormat::Float32) {
    const int64_t scales = block_wise ? bnb::num_blocks(n, bnb::state_block(format)) : 1;
    const int64_t bytes = bnb::state_bytes(format, n);
    for (int64_t i = 0; i < stacked * bytes; ++i) {
      t.q1.push_back(uint8_t(code(rng)));
      if (i < bytes) t.q2.push_back(uint8_t(code(rng)));
    }
    for (int64_t i = 0; i < stacked * scales; ++i) {
      t.a1.push_back(0.01f + 0.001f * float(i % 7));
      if (i < scales) t.a2.push_back(1e-4f + 1e-5f * float(i % 5));
    }
  } else {
    for (int64_t i = 0; i < stacked * n; ++i) {
      t.s1.push_back(nonneg1 ? std::fabs(normal(rng)) : normal(rng));
      if (i < n) t.s2.push_back(std::fabs(normal(rng)) * 0.01f);
    }
  }
  return t;
}

// The same tensor on the device.
// shift: bytes of padding before the gradient (one element: not 16-byte aligned, so that
// every chunk of the tensor takes the element-wise path).
std::vector<uint8_t> padded(const std::vector<uint8_t>& bytes, size_t shift) {
  std::vector<uint8_t> out(shift, 0);
  out.insert(out.end(), bytes.begin(), bytes.end());
  return out;
}
struct DeviceTensor {
  DeviceBuffer<uint8_t> p, g;
  DeviceBuffer<float> s1, s2;
  DeviceBuffer<uint8_t> q1, q2;
  DeviceBuffer<float> a1, a2;
  size_t shift;
  explicit DeviceTensor(const HostTensor& t, size_t shift = 0)
      : p(t.p.bytes), g(padded(t.g.bytes, shift)), s1(t.s1), s2(t.s2), q1(t.q1), q2(t.q2), a1(t.a1), a2(t.a2),
        shift(shift) {}
  uint8_t* grad() const { return g.get() + shift; }
};

class OptimizerCuda : public CudaTestWithParam<std::tuple<Algorithm, DType, int, bool>> {};

// The maps of 4-bit Adam state: the signed dynamic map of 4-bit codes, and the linear map
// without zero for the second moment.
std::vector<float> map_4bit(bool is_signed) {
  if (is_signed)
    return {-0.8875f, -0.6625f, -0.4375f, -0.2125f, -0.0775f, -0.0325f, -0.0055f, 0.f,
            0.0055f,  0.0325f,  0.0775f,  0.2125f,  0.4375f,  0.6625f,  0.8875f,  1.f};
  std::vector<float> m(16);
  for (int i = 0; i < 16; ++i) m[i] = float(i + 1) / 16.f;
  return m;
}

// Code i of a state: a byte, or a nibble (the even value high).
int code_at(const std::vector<uint8_t>& q, int64_t i, bool four_bit) {
  return four_bit ? (q[size_t(i / 2)] >> (i % 2 ? 0 : 4)) & 0xf : q[size_t(i)];
}

// mode 0: 32-bit states; 1: 8-bit block-wise; 2: 8-bit tensor-wise; 3: 4-bit (Adam). `several`:
// five tensors of sizes that are not multiples of the 256-value block, one of them empty.
// sizes_given: the tensors' sizes instead (non-empty). `nonfinite`: some gradient values are
// NaN, +Inf or -Inf. `misaligned`: every gradient starts one element past a 16-byte boundary.
void run_case(Algorithm alg, DType dtype, int mode, bool several, float max_unorm,
              const std::vector<int64_t>& sizes_given = {}, bool nonfinite = false, bool misaligned = false) {
  const bnb::StateFormat format =
      mode == 0 ? bnb::StateFormat::Float32 : mode == 3 ? bnb::StateFormat::Code4 : bnb::StateFormat::Code8;
  const bool eight_bit = mode > 0, block_wise = mode != 2, four_bit = mode == 3;
  const bool two = bnb::num_states(alg) == 2;
  const int64_t stacked = bnb::has_state3(alg) ? 2 : 1;  // AdEMAMix: the slow EMA after the fast one
  const std::vector<int64_t> sizes = !sizes_given.empty() ? sizes_given
                                     : several ? std::vector<int64_t>{1000, 1, 0, 257, 70001, 129}
                                               : std::vector<int64_t>{4099};
  const auto h = hyper(alg, block_wise, max_unorm);
  // State1 of RMSprop and Adagrad holds squares: an unsigned map, as the optimizers give it.
  const bool nonneg1 = alg == Algorithm::RMSprop || alg == Algorithm::Adagrad;
  const std::vector<float> code1 = four_bit ? map_4bit(true) : nonneg1 ? linear_map(false) : dense_map();
  const std::vector<float> code2 = four_bit ? map_4bit(false) : linear_map(false);
  const float* map2 = two ? code2.data() : code1.data();

  std::vector<HostTensor> cpu;
  for (size_t i = 0; i < sizes.size(); ++i) {
    cpu.push_back(make_tensor(dtype, sizes[i], format, block_wise, nonneg1, uint32_t(100 * i + mode), stacked));
    if (nonfinite) sprinkle_nonfinite(cpu.back().g, 611);
  }
  std::deque<DeviceTensor> dev;  // buffers are not movable: a deque never moves them
  for (const auto& t : cpu)  // before the CPU update changes them
    dev.emplace_back(t, misaligned ? size_t(bnb::dtype_size(dtype)) : 0);
  const int count = int(sizes.size());

  std::vector<float> stats_cpu(static_cast<size_t>(count) * bnb::kStats, 0.f);
  std::vector<bnb::TensorSlot> cpu_slots, dev_slots;
  DeviceBuffer<float> workspace(static_cast<size_t>(count) * bnb::kStats);
  for (int i = 0; i < count; ++i) {
    HostTensor& t = cpu[static_cast<size_t>(i)];
    DeviceTensor& d = dev[static_cast<size_t>(i)];
    cpu_slots.push_back({t.p.data(), t.g.data(), eight_bit ? (void*)t.q1.data() : (void*)t.s1.data(),
                         two ? (eight_bit ? (void*)t.q2.data() : (void*)t.s2.data()) : nullptr,
                         eight_bit ? t.a1.data() : nullptr, eight_bit && two ? t.a2.data() : nullptr, nullptr,
                         stats_cpu.data() + i * bnb::kStats, sizes[static_cast<size_t>(i)]});
    dev_slots.push_back({d.p.get(), d.grad(), eight_bit ? (void*)d.q1.get() : (void*)d.s1.get(),
                         two ? (eight_bit ? (void*)d.q2.get() : (void*)d.s2.get()) : nullptr,
                         eight_bit ? d.a1.get() : nullptr, eight_bit && two ? d.a2.get() : nullptr, nullptr,
                         workspace.get() + i * bnb::kStats, sizes[static_cast<size_t>(i)]});
    if (stacked > 1) {  // the third state: the second half of state1 and of absmax1
      const int64_t n = sizes[static_cast<size_t>(i)], blocks = bnb::num_blocks(n, bnb::kOptimizerBlock);
      cpu_slots.back().state3 = eight_bit ? (void*)(t.q1.data() + n) : (void*)(t.s1.data() + n);
      dev_slots.back().state3 = eight_bit ? (void*)(d.q1.get() + n) : (void*)(d.s1.get() + n);
      cpu_slots.back().absmax3 = eight_bit ? t.a1.data() + blocks : nullptr;
      dev_slots.back().absmax3 = eight_bit ? d.a1.get() + blocks : nullptr;
    }
  }
  if (four_bit)
    bnb::cpu::optimizer_update_4bit(dtype, h, cpu_slots.data(), count, code1.data(), map2);
  else if (eight_bit)
    bnb::cpu::optimizer_update_8bit(dtype, h, cpu_slots.data(), count, code1.data(), map2);
  else
    bnb::cpu::optimizer_update_32bit(dtype, h, cpu_slots.data(), count);

  std::vector<uint8_t> table(bnb::optimizer_table_bytes(count));
  const int64_t chunks = bnb::fill_optimizer_table(dev_slots.data(), count, table.data());
  DeviceBuffer<uint8_t> table_d(table);
  DeviceBuffer<float> code1_d(code1), code2_d(code2);
  ASSERT_EQ(bnb::cuda::optimizer_update(dtype, format, h, table_d.get(), count, chunks, code1_d.get(),
                                        two ? code2_d.get() : code1_d.get(), workspace.get(), nullptr),
            cudaSuccess);

  for (int i = 0; i < count; ++i) {
    SCOPED_TRACE("tensor " + std::to_string(i) + " of " + std::to_string(sizes[static_cast<size_t>(i)]) + " values");
    const HostTensor& t = cpu[static_cast<size_t>(i)];
    const DeviceTensor& d = dev[static_cast<size_t>(i)];
    expect_close(Values{dtype, d.p.host()}, t.p, dtype_tolerance(dtype), "p");
    if (!eight_bit) {
      expect_close(from_floats(DType::Float32, d.s1.host()), from_floats(DType::Float32, t.s1), 1e-5f, "state1");
      if (two) expect_close(from_floats(DType::Float32, d.s2.host()), from_floats(DType::Float32, t.s2), 1e-5f, "state2");
      continue;
    }
    for (const int s : {1, 2}) {
      if (s == 2 && !two) break;
      const std::vector<uint8_t> q = (s == 1 ? d.q1 : d.q2).host();
      const std::vector<uint8_t>& want = s == 1 ? t.q1 : t.q2;
      const int64_t n = sizes[static_cast<size_t>(i)], codes = s == 1 ? stacked * n : n;  // AdEMAMix: both halves
      int far = 0;
      for (int64_t j = 0; j < codes; ++j) far += std::abs(code_at(q, j, four_bit) - code_at(want, j, four_bit)) > 1;
      EXPECT_EQ(far, 0) << "state" << s << " codes more than one step from the CPU's";
      if (four_bit && n % 2) EXPECT_EQ(q.back() & 0xf, 0) << "the padding nibble past an odd end";
      expect_close(from_floats(DType::Float32, (s == 1 ? d.a1 : d.a2).host()),
                   from_floats(DType::Float32, s == 1 ? t.a1 : t.a2), 1e-5f, "absmax");
    }
  }
}

TEST_P(OptimizerCuda, MatchesCpu) {
  const auto [alg, dtype, mode, several] = GetParam();
  run_case(alg, dtype, mode, several, 0.f);
}

// 4-bit state (Adam only): every parameter dtype, one tensor and several.
TEST_F(CudaTest, Optimizer4bitMatchesCpu) {
  for (const DType dtype : {DType::Float32, DType::Float16, DType::BFloat16})
    for (const bool several : {false, true}) {
      SCOPED_TRACE(std::string(name(dtype)) + (several ? ", several tensors" : ", one tensor"));
      run_case(Algorithm::Adam, dtype, 3, several, 0.f);
    }
}

INSTANTIATE_TEST_SUITE_P(
    AlgorithmsDTypesStates, OptimizerCuda,
    ::testing::Combine(::testing::Values(Algorithm::Adam, Algorithm::Momentum, Algorithm::RMSprop, Algorithm::Adagrad,
                                         Algorithm::Lion),
                       ::testing::Values(DType::Float32, DType::Float16, DType::BFloat16),
                       ::testing::Values(0, 1, 2),  // 32-bit, 8-bit block-wise, 8-bit tensor-wise
                       ::testing::Bool()));         // one tensor, several

// AdEMAMix: three states (the slow EMA stacked after the fast one in state1), block-wise only.
INSTANTIATE_TEST_SUITE_P(AdEMAMix, OptimizerCuda,
                         ::testing::Combine(::testing::Values(Algorithm::AdEMAMix),
                                            ::testing::Values(DType::Float32, DType::Float16, DType::BFloat16),
                                            ::testing::Values(0, 1),  // 32-bit, 8-bit block-wise
                                            ::testing::Bool()));

// AdEMAMix's slow EMA starts n values into state1: sizes of whole 16-value runs make it 16-byte
// aligned, so that the 8-bit states take the vector path too (the sizes above do not).
TEST_F(CudaTest, OptimizerAdEMAMixAlignedThirdStateMatchesCpu) {
  for (const int mode : {0, 1})
    for (const DType dtype : {DType::Float32, DType::BFloat16})
      run_case(Algorithm::AdEMAMix, dtype, mode, true, 0.f, {65536, 4112, 0, 300, 1024});
}

// NaN and +-Inf gradients: the same non-finite elements, and the same block scales (taken over
// the finite state values, bnb/nonfinite.h), on both.
TEST_F(CudaTest, OptimizerNonFiniteGradientMatchesCpu) {
  for (const int mode : {0, 1, 2, 3}) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    run_case(Algorithm::Adam, DType::BFloat16, mode, true, 0.f, {}, true);
  }
  run_case(Algorithm::Lion, DType::Float32, 1, true, 0.f, {}, true);
  run_case(Algorithm::AdEMAMix, DType::Float32, 1, true, 0.f, {}, true);
  run_case(Algorithm::Adam, DType::Float32, 1, true, 1e-3f, {}, true);  // the trust ratio: NaN
}

// LAMB and LARS: the trust ratio's pre-pass.
TEST_F(CudaTest, OptimizerTrustRatioMatchesCpu) {
  for (const int mode : {0, 1}) {
    run_case(Algorithm::Adam, DType::Float32, mode, true, 1e-3f);
    run_case(Algorithm::Momentum, DType::BFloat16, mode, true, 1e-3f);
  }
}

// More chunks than the persistent grid has warps (132 SMs x 16 warps on an H100; these
// sizes give every warp of a GPU of up to 244 SMs two chunks or more): a warp's later
// chunks come from the registers its previous iteration loaded (8-bit and 4-bit state), its
// walk crosses tensor boundaries inside the loop (an empty tensor and a one-value one among
// them), and the pre-pass flushes one tensor's sums before the next. The sizes above fit in one
// chunk per warp and reach none of this.
TEST_F(CudaTest, OptimizerManyChunksPerWarpMatchesCpu) {
  const std::vector<int64_t> sizes{1000003, 1, 0, 700000, 257, 300001};
  for (const int mode : {0, 1, 2, 3}) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    run_case(Algorithm::Adam, DType::Float32, mode, true, 0.f, sizes);
    run_case(Algorithm::Adam, DType::BFloat16, mode, true, 0.f, sizes);
  }
  run_case(Algorithm::Lion, DType::Float16, 1, true, 0.f, sizes);
  run_case(Algorithm::Momentum, DType::Float32, 2, true, 1e-3f, sizes);  // tensor-wise state and the trust ratio
  run_case(Algorithm::Adam, DType::BFloat16, 1, true, 1e-3f, sizes, true);  // non-finite gradients
  // AdEMAMix with sizes of whole 16-value runs: its third state takes the vector path too
  run_case(Algorithm::AdEMAMix, DType::Float32, 1, true, 0.f, {1048576, 0, 524304, 4112});
  run_case(Algorithm::AdEMAMix, DType::BFloat16, 1, true, 0.f, sizes);
}

// Each CTA takes a contiguous equal share of the launch's chunks, swept by its 16 warps, and a
// warp reads its next chunk ahead only within its tensor and its share. Four hundred tensors of
// odd sizes in a shuffled order (empty, one value, one chunk less one value, whole runs, a
// partial last chunk), far more chunks than the full grid has warps: whatever the GPU's SM
// count, shares begin and end inside tensors, at partial last chunks and next to empty ones, and
// read-ahead stops at both ends. Then fewer chunks than one CTA has warps; 20 chunks in two
// CTAs, the second's share starting inside a tensor; two CTAs whose shares are one tensor each,
// the first ending at its partial last chunk with an empty tensor at the seam; and one chunk
// more than the warps of one CTA an SM (shares of 17 chunks: the last CTAs get none). A
// chunk skipped, updated twice or read ahead from another tensor or share leaves its states
// unlike the CPU's.
TEST_F(CudaTest, OptimizerChunkSharesMatchCpu) {
  const int64_t kinds[] = {1, 255, 256, 257, 4097, 70001, 0, 4112, 3, 511};
  std::vector<int64_t> many;
  for (int i = 0; i < 400; ++i) many.push_back(kinds[i % 10]);
  std::shuffle(many.begin(), many.end(), std::mt19937(7));
  int device = 0, sms = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  // 274 + 1 + 0 + 2 chunks, then the rest of 16 * sms + 1 in one tensor with a partial last chunk
  const int64_t rest = std::max<int64_t>(1, 16 * int64_t(sms) + 1 - 277);
  const std::vector<int64_t> past_full_grid{70001, 1, 0, 257, 256 * (rest - 1) + 129};
  const std::vector<std::vector<int64_t>> cases{
      many, {1, 255, 0, 257, 513, 1000, 3}, {4097, 1, 257}, {2305, 0, 2305}, past_full_grid};
  for (size_t c = 0; c < cases.size(); ++c)
    for (const int mode : {0, 1, 2, 3})
      for (const DType dtype : {DType::Float32, DType::Float16, DType::BFloat16}) {
        SCOPED_TRACE("case " + std::to_string(c) + ", mode " + std::to_string(mode) + ", " + name(dtype));
        run_case(Algorithm::Adam, dtype, mode, true, 0.f, cases[c]);
      }
  // AdEMAMix's third state lies n values into state1: its tensors of whole 16-value runs take
  // the vector path and read ahead, the others the element-wise path, mixed within shares.
  for (const int mode : {0, 1}) {
    SCOPED_TRACE("AdEMAMix, mode " + std::to_string(mode));
    run_case(Algorithm::AdEMAMix, DType::BFloat16, mode, true, 0.f, many);
  }
}

// Gradients one element past a 16-byte boundary (a view into a larger buffer): every chunk,
// full ones included, takes the element-wise loads and stores, for each state format and
// parameter dtype. The other tests' buffers are all aligned.
TEST_F(CudaTest, OptimizerMisalignedGradientMatchesCpu) {
  for (const int mode : {0, 1, 2, 3})
    for (const DType dtype : {DType::Float32, DType::Float16, DType::BFloat16}) {
      SCOPED_TRACE("mode " + std::to_string(mode) + ", " + name(dtype));
      run_case(Algorithm::Adam, dtype, mode, true, 0.f, {}, false, true);
    }
  run_case(Algorithm::Lion, DType::BFloat16, 1, true, 0.f, {}, false, true);
  run_case(Algorithm::AdEMAMix, DType::Float32, 1, true, 0.f, {65536, 4112, 0, 300}, false, true);
  run_case(Algorithm::Momentum, DType::Float32, 2, true, 1e-3f, {}, false, true);
}

}  // namespace
