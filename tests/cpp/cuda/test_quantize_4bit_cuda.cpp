// The CUDA 4-bit launchers (bnb/quantize_4bit_cuda.h) against their CPU twins on the same
// inputs: codes and absmax exactly (the same IEEE division and thresholds), dequantized values
// exactly (one product, one rounding to the dtype), and the fused product within the
// difference of two float32 summation orders.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>

#include "bnb/quantize_4bit_cpu.h"
#include "bnb/quantize_4bit_cuda.h"
#include "../quantize_4bit_fixture.h"
#include "cuda_test_util.h"

namespace {

using bnb::DType;
using bnb::QuantType4bit;
using namespace bnb_test;

constexpr DType kDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};
constexpr QuantType4bit kQuantTypes[] = {QuantType4bit::NF4, QuantType4bit::FP4};

std::vector<float> table(QuantType4bit q) { return std::vector<float>(bnb::code_4bit(q), bnb::code_4bit(q) + 16); }

int64_t count_mismatches(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
  return bad;
}

class Quantize4bitCuda : public CudaTestWithParam<std::tuple<QuantType4bit, DType, int64_t, int64_t>> {};

// Quantizes `a` on the GPU (the input `offset` elements and the codes `offset` bytes into their
// buffers, so that an offset of 1 leaves both unaligned) and compares with the CPU twin.
void expect_quantize_matches_cpu(QuantType4bit q, const Values& a, int64_t blocksize, int64_t offset,
                                 std::vector<uint8_t>& q_cpu, std::vector<float>& absmax_cpu) {
  const int64_t n = a.size(), blocks = bnb::num_blocks(n, blocksize), bytes = bnb::packed_bytes_4bit(n);
  q_cpu.assign(static_cast<size_t>(bytes), 0);
  absmax_cpu.assign(static_cast<size_t>(blocks), 0.f);
  bnb::cpu::quantize_4bit(a.dtype, a.data(), q, q_cpu.data(), absmax_cpu.data(), n, blocksize);

  Values shifted = empty_values(a.dtype, offset);
  shifted.bytes.insert(shifted.bytes.end(), a.bytes.begin(), a.bytes.end());
  DeviceBuffer<uint8_t> a_d = to_device(shifted);
  DeviceBuffer<uint8_t> q_d(static_cast<size_t>(bytes + offset));
  DeviceBuffer<float> absmax_d(static_cast<size_t>(blocks));
  q_d.fill_bytes(0xAA);
  ASSERT_EQ(bnb::cuda::quantize_4bit(a.dtype, a_d.get() + offset * bnb::dtype_size(a.dtype), q, q_d.get() + offset,
                                     absmax_d.get(), n, blocksize, nullptr),
            cudaSuccess);
  EXPECT_EQ(absmax_d.host(), absmax_cpu);
  std::vector<uint8_t> q_gpu = q_d.host();
  for (int64_t i = 0; i < offset; ++i) EXPECT_EQ(q_gpu[size_t(i)], 0xAA) << "byte before the codes";
  q_gpu.erase(q_gpu.begin(), q_gpu.begin() + offset);
  EXPECT_EQ(count_mismatches(q_gpu, q_cpu), 0);
}

// Random values with an all-zero block, and (every > 0) NaN, +Inf and -Inf every `every` values.
void expect_4bit_matches_cpu(QuantType4bit q, DType dtype, int64_t blocksize, int64_t n, int64_t every) {
  Values a = random_values(dtype, n, uint32_t(n + blocksize), 3.f);
  // An all-zero block where there is room for one (its codes come from 0 * (1 / 0)).
  if (n >= 3 * blocksize) {
    const Values zeros = empty_values(dtype, blocksize);
    std::copy(zeros.bytes.begin(), zeros.bytes.end(), a.bytes.begin() + blocksize * bnb::dtype_size(dtype));
  }
  if (every > 0) sprinkle_nonfinite(a, every);
  std::vector<uint8_t> q_cpu;
  std::vector<float> absmax_cpu;
  expect_quantize_matches_cpu(q, a, blocksize, 0, q_cpu, absmax_cpu);

  // Dequantize the same codes on both.
  const std::vector<float> code = table(q);
  Values back_cpu = empty_values(dtype, n);
  bnb::cpu::dequantize_4bit(dtype, q_cpu.data(), code.data(), bnb::BlockScales::plain(absmax_cpu.data()), back_cpu.data(), n, blocksize);
  DeviceBuffer<uint8_t> qc_d(q_cpu);
  DeviceBuffer<float> absmax_c(absmax_cpu);
  DeviceBuffer<float> code_d(code);
  DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)));
  ASSERT_EQ(bnb::cuda::dequantize_4bit(dtype, qc_d.get(), code_d.get(), bnb::BlockScales::plain(absmax_c.get()), back_d.get(), n, blocksize,
                                       nullptr),
            cudaSuccess);
  EXPECT_EQ(count_value_mismatches(from_device(dtype, back_d), back_cpu), 0);
}

TEST_P(Quantize4bitCuda, MatchesCpu) {
  const auto [q, dtype, blocksize, n] = GetParam();
  expect_4bit_matches_cpu(q, dtype, blocksize, n, 0);
}

// Some blocks hold NaN and +-Inf (marked blocks, reserved code 8): most blocks at the small
// stride, or here and there among unmarked ones (in the same warp, or the same tile).
TEST_P(Quantize4bitCuda, NonFiniteMatchesCpu) {
  const auto [q, dtype, blocksize, n] = GetParam();
  for (const int64_t every : {700, 9001}) {
    SCOPED_TRACE("non-finite every " + std::to_string(every));
    expect_4bit_matches_cpu(q, dtype, blocksize, n, every);
  }
}

// Input and codes one element / one byte past 16-byte alignment: the element-wise path.
TEST_P(Quantize4bitCuda, UnalignedMatchesCpu) {
  const auto [q, dtype, blocksize, n] = GetParam();
  Values a = random_values(dtype, n, uint32_t(n * 3 + blocksize), 2.f);
  sprinkle_nonfinite(a, 5003);
  std::vector<uint8_t> q_cpu;
  std::vector<float> absmax_cpu;
  expect_quantize_matches_cpu(q, a, blocksize, 1, q_cpu, absmax_cpu);
}

INSTANTIATE_TEST_SUITE_P(
    TypesBlocksSizes, Quantize4bitCuda,
    ::testing::Combine(::testing::ValuesIn(kQuantTypes), ::testing::ValuesIn(kDTypes),
                       ::testing::Values<int64_t>(32, 64, 128, 256, 512, 1024, 2048, 4096),
                       // empty, one value, odd, not a multiple of any block or tile, many tiles
                       ::testing::Values<int64_t>(0, 1, 14997, 3 * 4096 + 5, 1000003)));

// Several tiles a CTA (the persistent grid's loop, many_tiles_input): CTAs reach a tile with a
// marked block after an odd number of reductions, where the second reduction of the absmax keys
// (16-bit input: twice the words of the first) must not share shared-memory words with the first
// (racecheck watches this too).
TEST_F(CudaTest, Quantize4bitManyTilesPerCtaMatchCpu) {
  for (const DType dtype : kDTypes) {
    Values a;
    ASSERT_NO_FATAL_FAILURE(many_tiles_input(dtype, a));
    // a block within a warp, across warps, across the CTA (float32: two chunks a thread)
    for (const auto [blocksize, q] : {std::make_pair(int64_t(64), QuantType4bit::NF4),
                                      std::make_pair(int64_t(512), QuantType4bit::FP4),
                                      std::make_pair(int64_t(4096), QuantType4bit::NF4)}) {
      SCOPED_TRACE(std::string(bnb::dtype_name(dtype)) + " " + bnb::quant_type_name(q) + " blocksize " +
                   std::to_string(blocksize));
      std::vector<uint8_t> q_cpu;
      std::vector<float> absmax_cpu;
      expect_quantize_matches_cpu(q, a, blocksize, 0, q_cpu, absmax_cpu);
    }
  }
}

// Blocks whose scaled values fall on the decision thresholds and their float neighbours
// (absmax 1 or 2, so the scaled values are exactly these), blocks of huge or subnormal absmax,
// an all-zero one, one of -0.0 and +-0.0 with a NaN, in float32.
TEST_F(CudaTest, Quantize4bitThresholdBlocksMatchCpu) {
  std::vector<float> specials = {0.f, -0.f, FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, 1.f, -1.f};
  const bnb::Thresholds<15> nf4 = bnb::nf4_thresholds();
  const bnb::Thresholds<7> fp4 = bnb::fp4_magnitude_thresholds();
  std::vector<float> thresholds(std::begin(nf4.t), std::end(nf4.t));
  thresholds.insert(thresholds.end(), std::begin(fp4.t), std::end(fp4.t));
  for (float t : thresholds) {
    for (float s : {t, -t}) {
      specials.push_back(s);
      specials.push_back(std::nextafter(s, INFINITY));
      specials.push_back(std::nextafter(s, -INFINITY));
    }
  }
  for (const int64_t blocksize : {32, 64, 4096}) {
    std::vector<float> x;
    for (const float absmax : {1.f, 2.f}) {  // every block starts with its absmax
      for (size_t i = 0; i < specials.size(); ++i) {
        if (int64_t(x.size()) % blocksize == 0) x.push_back(i % 2 ? absmax : -absmax);
        x.push_back(specials[i] * absmax);
      }
      while (int64_t(x.size()) % blocksize) x.push_back(0.25f);
    }
    // Absmax at and past the code table's range (a reciprocal that is subnormal), all values
    // near +-absmax.
    for (const float absmax : {0x1p126f, std::nextafter(0x1p126f, INFINITY), FLT_MAX})
      for (int64_t i = 0; i < blocksize; ++i) x.push_back((i % 2 ? -1.f : 1.f) * (i % 3 ? absmax : absmax * 0.99f));
    for (int64_t i = 0; i < blocksize; ++i) x.push_back(float(i % 7) * 1e-40f);  // subnormal absmax
    for (int64_t i = 0; i < blocksize; ++i) x.push_back(0.f);
    for (int64_t i = 0; i < blocksize; ++i) x.push_back(-0.f);
    for (int64_t i = 0; i < blocksize; ++i) x.push_back(i == 5 ? NAN : (i % 2 ? 0.f : -0.f));
    x.push_back(0.75f);  // odd n
    for (QuantType4bit q : kQuantTypes) {
      SCOPED_TRACE(std::string(bnb::quant_type_name(q)) + " blocksize " + std::to_string(blocksize));
      std::vector<uint8_t> q_cpu;
      std::vector<float> absmax_cpu;
      expect_quantize_matches_cpu(q, from_floats(DType::Float32, x), blocksize, 0, q_cpu, absmax_cpu);
    }
  }
}

// The GPU's code table (an exact bucket by a rounded-down fused multiply-add, the compare and
// FP4's sign by sign bits) against the CPU's search over a dense sweep of scaled values: blocks
// of 64 whose first value is +-absmax, the rest every 389th float32 of magnitude up to 1 (both
// signs), every float32 within 2048 units in the last place of each bucket edge k / 16 and each
// threshold, -0.0 and the negative subnormals nearest zero; then every 16-bit pattern of
// magnitude up to 1 in bfloat16 and float16. Absmax 1 makes the scaled values the values
// themselves; absmax 3 (float32, a sparser sweep) adds the rounding of the scale.
TEST_F(CudaTest, Quantize4bitDenseSweepMatchesCpu) {
  constexpr int64_t kBlock = 64;
  std::vector<float> sweep;
  for (uint32_t u = 0; u <= 0x3f800000u; u += 389) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    sweep.push_back(f), sweep.push_back(-f);
  }
  std::vector<float> centres;
  for (int k = -16; k <= 16; ++k) centres.push_back(float(k) / 16.f);
  for (float t : bnb::nf4_thresholds().t) centres.push_back(t);
  for (float t : bnb::fp4_magnitude_thresholds().t) centres.push_back(t), centres.push_back(-t);
  for (float c : centres) {
    float up = c, down = c;
    for (int k = 0; k < 2048; ++k) {
      up = std::nextafter(up, INFINITY), down = std::nextafter(down, -INFINITY);
      if (std::fabs(up) <= 1.f) sweep.push_back(up);
      if (std::fabs(down) <= 1.f) sweep.push_back(down);
    }
  }
  for (float f : {-0.f, -FLT_TRUE_MIN, -2 * FLT_TRUE_MIN, -FLT_MIN, FLT_TRUE_MIN}) sweep.push_back(f);
  const auto blocks_of = [&](const std::vector<float>& values, float absmax, size_t stride) {
    std::vector<float> x;
    for (size_t i = 0; i < values.size(); i += stride) {
      if (int64_t(x.size()) % kBlock == 0) x.push_back(x.size() % (2 * kBlock) ? -absmax : absmax);
      x.push_back(values[i] * absmax);
    }
    return x;
  };
  std::vector<uint8_t> q_cpu;
  std::vector<float> absmax_cpu;
  for (QuantType4bit q : kQuantTypes) {
    SCOPED_TRACE(bnb::quant_type_name(q));
    expect_quantize_matches_cpu(q, from_floats(DType::Float32, blocks_of(sweep, 1.f, 1)), kBlock, 0, q_cpu,
                                absmax_cpu);
    expect_quantize_matches_cpu(q, from_floats(DType::Float32, blocks_of(sweep, 3.f, 7)), kBlock, 0, q_cpu,
                                absmax_cpu);
    for (DType dtype : {DType::BFloat16, DType::Float16}) {
      SCOPED_TRACE(bnb::dtype_name(dtype));
      std::vector<float> all16;  // every 16-bit pattern of magnitude up to 1, as a float
      for (uint32_t u = 0; u <= 0xffffu; ++u) {
        const Values one = Values{dtype, {uint8_t(u & 0xff), uint8_t(u >> 8)}};
        const float f = one.at(0);
        if (std::fabs(f) <= 1.f) all16.push_back(f);
      }
      expect_quantize_matches_cpu(q, from_floats(dtype, blocks_of(all16, 1.f, 1)), kBlock, 0, q_cpu, absmax_cpu);
    }
  }
}

// The reference library's codes, absmax and dequantized values, on the GPU directly.
TEST_F(CudaTest, Quantize4bitMatchesReferenceFixture) {
  Fixture4bit fx;
  if (!load_fixture_4bit(fx)) GTEST_SKIP() << "tests/data/quantize_4bit_cases.bin not found";
  const int64_t n = int64_t(fx.input.size());
  for (const Fixture4bitCase& fc : fx.cases) {
    SCOPED_TRACE(fc.name);
    const Values a = from_floats(fc.dtype, fx.input);
    DeviceBuffer<uint8_t> a_d = to_device(a);
    DeviceBuffer<uint8_t> q_d(static_cast<size_t>(bnb::packed_bytes_4bit(n)));
    DeviceBuffer<float> absmax_d(static_cast<size_t>(bnb::num_blocks(n, fc.blocksize)));
    ASSERT_EQ(bnb::cuda::quantize_4bit(fc.dtype, a_d.get(), fc.quant_type, q_d.get(), absmax_d.get(), n,
                                       fc.blocksize, nullptr),
              cudaSuccess);
    EXPECT_EQ(count_mismatches(q_d.host(), fc.packed), 0);
    EXPECT_EQ(absmax_d.host(), fc.absmax);
    if (fc.dequant.empty()) continue;
    std::vector<float> code = table(fc.quant_type);
    if (fc.quant_type == QuantType4bit::FP4) code[8] = -0.0f;  // the reference writes -0.0 for code 8
    DeviceBuffer<float> code_d(code);
    DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(fc.dtype)));
    ASSERT_EQ(bnb::cuda::dequantize_4bit(fc.dtype, q_d.get(), code_d.get(), bnb::BlockScales::plain(absmax_d.get()), back_d.get(), n,
                                         fc.blocksize, nullptr),
              cudaSuccess);
    EXPECT_EQ(back_d.host(), fc.dequant);
  }
}

// Nested scales read by the dequantize kernel itself (linear_4bit's prefill path): equal bit
// for bit to the CPU's (which tests/cpp/test_quantize_4bit.cpp checks against the plain scales
// they stand for). Sizes not multiples of a tile, a group of 256 blocks or a block; group 1
// marked (a negative stored absmax).
TEST_F(CudaTest, Dequantize4bitNestedScalesMatchCpu) {
  for (const auto& [dtype, n, blocksize] : {std::make_tuple(DType::BFloat16, int64_t(64) * 1000 + 37, int64_t(64)),
                                            std::make_tuple(DType::Float16, int64_t(128) * 700 + 2, int64_t(128)),
                                            std::make_tuple(DType::Float32, int64_t(4096) * 300 + 5, int64_t(4096))}) {
    SCOPED_TRACE(std::to_string(n) + " values, blocks of " + std::to_string(blocksize));
    const QuantType4bit q = blocksize == 128 ? QuantType4bit::FP4 : QuantType4bit::NF4;
    const Values w = random_values(DType::Float32, n, uint32_t(n), 1.f);
    const int64_t blocks = bnb::num_blocks(n, blocksize);
    std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(n)));
    std::vector<float> absmax(static_cast<size_t>(blocks));
    bnb::cpu::quantize_4bit(DType::Float32, w.data(), q, packed.data(), absmax.data(), n, blocksize);
    std::vector<uint8_t> nested(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) nested[size_t(b)] = uint8_t((b * 37 + 11) % 256);
    std::vector<float> nested_code(256), nested_absmax(static_cast<size_t>(bnb::num_blocks(blocks, 256)));
    for (int i = 0; i < 256; ++i) nested_code[size_t(i)] = -1.f + 2.f * float(i) / 255.f;
    for (size_t i = 0; i < nested_absmax.size(); ++i) nested_absmax[i] = 0.25f + 0.125f * float(i % 5);
    if (nested_absmax.size() > 1) nested_absmax[1] = -nested_absmax[1];
    const std::vector<float> offset = {0.3f};
    const std::vector<float> code = table(q);
    const bnb::BlockScales cpu_nested{nullptr, nested.data(), nested_code.data(), nested_absmax.data(), offset.data(),
                                      8};
    Values back_nested = empty_values(dtype, n);
    bnb::cpu::dequantize_4bit(dtype, packed.data(), code.data(), cpu_nested, back_nested.data(), n, blocksize);

    DeviceBuffer<uint8_t> packed_d(packed), nested_d(nested);
    DeviceBuffer<float> code_d(code), nested_code_d(nested_code), nested_absmax_d(nested_absmax), offset_d(offset);
    const bnb::BlockScales gpu_nested{nullptr, nested_d.get(), nested_code_d.get(), nested_absmax_d.get(),
                                      offset_d.get(), 8};
    DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)));
    ASSERT_EQ(bnb::cuda::dequantize_4bit(dtype, packed_d.get(), code_d.get(), gpu_nested, back_d.get(), n, blocksize,
                                         nullptr),
              cudaSuccess);
    EXPECT_EQ(count_value_mismatches(from_device(dtype, back_d), back_nested), 0);
  }
}

TEST_F(CudaTest, Quantize4bitRejectsBadBlocksize) {
  EXPECT_EQ(bnb::cuda::quantize_4bit(DType::Float32, nullptr, QuantType4bit::NF4, nullptr, nullptr, 64, 48, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(bnb::cuda::dequantize_4bit(DType::Float32, nullptr, nullptr, bnb::BlockScales{}, nullptr, 64, 8192, nullptr),
            cudaErrorInvalidValue);
}

class Gemv4bitCuda : public CudaTestWithParam<std::tuple<DType, int64_t, int64_t, int64_t, int64_t>> {};

TEST_P(Gemv4bitCuda, MatchesCpu) {
  const auto [dtype, M, N, K, blocksize] = GetParam();
  const QuantType4bit q = (M + N) % 2 ? QuantType4bit::FP4 : QuantType4bit::NF4;
  Values w = random_values(DType::Float32, N * K, uint32_t(N * K), 1.f);
  sprinkle_nonfinite(w, 997);  // a few NaN features (marked blocks); the others as ever
  const Values a = random_values(dtype, M * K, uint32_t(M + K), 1.f);
  const Values bias = random_values(dtype, N, uint32_t(N), 1.f);
  std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(N * K)));
  std::vector<float> absmax(static_cast<size_t>(bnb::num_blocks(N * K, blocksize)));
  bnb::cpu::quantize_4bit(DType::Float32, w.data(), q, packed.data(), absmax.data(), N * K, blocksize);
  const std::vector<float> code = table(q);

  // Nested scales: one 8-bit code a block, a 256-value table, one absmax per 256 blocks and an
  // offset, all made up (the kernels only read them).
  const int64_t blocks = bnb::num_blocks(N * K, blocksize);
  std::vector<uint8_t> nested(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) nested[size_t(b)] = uint8_t((b * 37 + 11) % 256);
  std::vector<float> nested_code(256), nested_absmax(static_cast<size_t>(bnb::num_blocks(blocks, 256)));
  for (int i = 0; i < 256; ++i) nested_code[size_t(i)] = -1.f + 2.f * float(i) / 255.f;
  for (size_t i = 0; i < nested_absmax.size(); ++i) nested_absmax[i] = 0.25f + 0.125f * float(i % 5);
  const std::vector<float> offset = {1.5f};

  DeviceBuffer<uint8_t> a_d = to_device(a), bias_d = to_device(bias), packed_d(packed), nested_d(nested);
  DeviceBuffer<float> absmax_d(absmax), code_d(code), nested_code_d(nested_code), nested_absmax_d(nested_absmax),
      offset_d(offset);
  for (const bool is_nested : {false, true}) {
    bnb::BlockScales cpu_scales = bnb::BlockScales::plain(absmax.data());
    bnb::BlockScales gpu_scales = bnb::BlockScales::plain(absmax_d.get());
    if (is_nested) {
      cpu_scales = {nullptr, nested.data(), nested_code.data(), nested_absmax.data(), offset.data(), 8};
      gpu_scales = {nullptr, nested_d.get(), nested_code_d.get(), nested_absmax_d.get(), offset_d.get(), 8};
    }
    for (const bool with_bias : {false, true}) {
      SCOPED_TRACE(std::string(with_bias ? "bias" : "no bias") + (is_nested ? ", nested" : ", plain"));
      Values out_cpu = empty_values(dtype, M * N);
      bnb::cpu::gemv_4bit(dtype, a.data(), packed.data(), code.data(), cpu_scales,
                          with_bias ? bias.data() : nullptr, out_cpu.data(), M, N, K, blocksize);
      DeviceBuffer<uint8_t> out_d(static_cast<size_t>(M * N) * static_cast<size_t>(bnb::dtype_size(dtype)));
      ASSERT_EQ(bnb::cuda::gemv_4bit(dtype, a_d.get(), packed_d.get(), code_d.get(), gpu_scales,
                                     with_bias ? bias_d.get() : nullptr, out_d.get(), M, N, K, blocksize, nullptr),
                cudaSuccess);
      const Values out = from_device(dtype, out_d);
      // Sums of K products of magnitude about 1 (|sum| ~ sqrt(K)) in two orders, the tensor-core
      // kernel's weights within 1.5 units of the dtype of the CPU's: a few float32 roundings of
      // the running sum apart, then one rounding to the dtype each.
      const float scale = is_nested ? 2.5f : 1.f;  // nested scales reach 2.5
      const float tol = scale * (float(std::sqrt(double(K))) * 4e-6f +
                                 2.f * dtype_tolerance(dtype) * float(std::sqrt(double(K))));
      int failures = 0;
      for (int64_t i = 0; i < M * N && failures < 10; ++i) {
        const bool both_nan = std::isnan(out.at(i)) && std::isnan(out_cpu.at(i));
        if (!both_nan && !(std::fabs(out.at(i) - out_cpu.at(i)) <= tol)) {
          ADD_FAILURE() << "out[" << i / N << ", " << i % N << "]: " << out.at(i) << " vs CPU " << out_cpu.at(i);
          ++failures;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Gemv4bitCuda,
    ::testing::Values(std::make_tuple(DType::BFloat16, 1, 4096, 4096, 64),
                      std::make_tuple(DType::Float16, 1, 1000, 2048, 128),
                      std::make_tuple(DType::Float32, 4, 96, 512, 4096),
                      std::make_tuple(DType::BFloat16, 16, 257, 1024, 64),
                      std::make_tuple(DType::Float16, 33, 64, 320, 256),  // more rows than one pass
                      std::make_tuple(DType::BFloat16, 64, 100, 512, 64),  // tensor cores, 8 token tiles
                      std::make_tuple(DType::Float16, 40, 48, 256, 32),    // 5 token tiles, blocksize 32
                      std::make_tuple(DType::BFloat16, 9, 17, 1152, 128),  // 2 tiles, N % 16 != 0
                      std::make_tuple(DType::BFloat16, 65, 24, 256, 64),   // past the tensor-core rows
                      std::make_tuple(DType::BFloat16, 3, 11, 100, 64),   // K not a multiple of 32
                      std::make_tuple(DType::Float32, 2, 7, 33, 32),      // odd K: rows share bytes
                      // tensor cores with blocks spanning rows (a NaN weight's block holds other rows)
                      std::make_tuple(DType::Float16, 4, 40, 128, 256),
                      std::make_tuple(DType::BFloat16, 2, 24, 384, 256),   // K % blocksize != 0
                      std::make_tuple(DType::BFloat16, 12, 40, 512, 4096),  // 2 token tiles, A staged
                      std::make_tuple(DType::BFloat16, 8, 40, 1536, 64),   // 1 token tile, A through L1
                      std::make_tuple(DType::Float16, 24, 72, 640, 64),    // 3 token tiles (MT 4, RT 2)
                      // One token tile: sub-chunks of 64 k, scales on partial sums (blocks >= 64) or
                      // on the weights (32), rounds cut short at the end of a row, four or eight warps.
                      std::make_tuple(DType::BFloat16, 1, 40, 192, 64),    // K % 128 != 0
                      std::make_tuple(DType::Float16, 2, 24, 320, 32),     // blocks of 32: scaled weights
                      std::make_tuple(DType::BFloat16, 1, 64, 8192, 256),  // many rounds a warp, 8 warps
                      std::make_tuple(DType::BFloat16, 1, 8192, 256, 64),  // many CTAs: 4 warps
                      std::make_tuple(DType::Float16, 6, 300, 2112, 128),  // A through the L1, 33 sub-chunks
                      std::make_tuple(DType::BFloat16, 16, 40, 448, 64)));  // two token tiles, 7 sub-chunks

}  // namespace
