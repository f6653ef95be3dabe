// The CUDA quantization launchers (bnb/quantize_cuda.h) against their CPU twins on the same
// inputs: codes and absmax exactly (both divide once, IEEE, and search the same midpoints),
// dequantized values exactly (one product, one rounding to the dtype).
#include <algorithm>
#include <string>
#include <tuple>

#include "bnb/quantize_cpu.h"
#include "bnb/quantize_cuda.h"
#include "cuda_test_util.h"

namespace {

using bnb::DType;
using namespace bnb_test;

constexpr DType kDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};

int count_mismatches(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
  return bad;
}

class QuantizeBlockwiseCuda : public CudaTestWithParam<std::tuple<DType, int64_t, int64_t>> {};

// Quantizes `a` on the GPU (the input `offset` elements and the codes `offset` bytes into their
// buffers, so that an offset of 1 leaves both unaligned) and compares codes and absmax with the
// CPU twin's, which it returns.
void expect_quantize_matches_cpu(const Values& a, const std::vector<float>& code, int64_t blocksize, int64_t offset,
                                 std::vector<uint8_t>& q_cpu, std::vector<float>& absmax_cpu) {
  const int64_t n = a.size(), blocks = bnb::num_blocks(n, blocksize);
  q_cpu.assign(static_cast<size_t>(n), 0);
  absmax_cpu.assign(static_cast<size_t>(blocks), 0.f);
  bnb::cpu::quantize_blockwise(a.dtype, a.data(), code.data(), q_cpu.data(), absmax_cpu.data(), n, blocksize);

  Values shifted = empty_values(a.dtype, offset);
  shifted.bytes.insert(shifted.bytes.end(), a.bytes.begin(), a.bytes.end());
  DeviceBuffer<uint8_t> a_d = to_device(shifted);
  DeviceBuffer<float> code_d(code);
  DeviceBuffer<uint8_t> q_d(static_cast<size_t>(n + offset));
  DeviceBuffer<float> absmax_d(static_cast<size_t>(blocks));
  q_d.fill_bytes(0xAA);
  ASSERT_EQ(bnb::cuda::quantize_blockwise(a.dtype, a_d.get() + offset * bnb::dtype_size(a.dtype), code_d.get(),
                                          q_d.get() + offset, absmax_d.get(), n, blocksize, nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(absmax_d.host(), absmax_cpu);
  std::vector<uint8_t> q_gpu = q_d.host();
  for (int64_t i = 0; i < offset; ++i) EXPECT_EQ(q_gpu[size_t(i)], 0xAA) << "byte before the codes";
  q_gpu.erase(q_gpu.begin(), q_gpu.begin() + offset);
  EXPECT_EQ(count_mismatches(q_gpu, q_cpu), 0);
}

// Codes, absmax and dequantized values of the CUDA launchers equal the CPU ones, on random
// values with an all-zero block and (every > 0) NaN, +Inf and -Inf every `every` values (marked
// blocks, reserved code).
void expect_blockwise_matches_cpu(DType dtype, int64_t blocksize, int64_t n, int64_t every) {
  Values a = random_values(dtype, n, uint32_t(n + blocksize), 3.f);
  // An all-zero block where there is room for one (its scale multiplies by 0).
  if (n >= 3 * blocksize) {
    const Values zeros = empty_values(dtype, blocksize);
    std::copy(zeros.bytes.begin(), zeros.bytes.end(), a.bytes.begin() + blocksize * bnb::dtype_size(dtype));
  }
  if (every > 0) sprinkle_nonfinite(a, every);
  const std::vector<float> code = dense_map();
  std::vector<uint8_t> q_cpu;
  std::vector<float> absmax_cpu;
  expect_quantize_matches_cpu(a, code, blocksize, 0, q_cpu, absmax_cpu);

  // Dequantize the same codes on both.
  Values back_cpu = empty_values(dtype, n);
  bnb::cpu::dequantize_blockwise(dtype, q_cpu.data(), code.data(), absmax_cpu.data(), back_cpu.data(), n, blocksize);
  DeviceBuffer<uint8_t> qc_d(q_cpu);
  DeviceBuffer<float> code_d(code);
  DeviceBuffer<float> absmax_c(absmax_cpu);
  DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)));
  ASSERT_EQ(bnb::cuda::dequantize_blockwise(dtype, qc_d.get(), code_d.get(), absmax_c.get(), back_d.get(), n,
                                            blocksize, nullptr),
            cudaSuccess);
  EXPECT_EQ(count_value_mismatches(from_device(dtype, back_d), back_cpu), 0);
}

TEST_P(QuantizeBlockwiseCuda, MatchesCpu) {
  const auto [dtype, blocksize, n] = GetParam();
  expect_blockwise_matches_cpu(dtype, blocksize, n, 0);
}

// Some blocks hold NaN and +-Inf: most blocks at the small stride (every block of a large block
// size), or here and there among unmarked ones in the same warp or the same tile of several
// blocks a thread (the second reduction runs for the whole warp or CTA, its result used only
// by the marked blocks).
TEST_P(QuantizeBlockwiseCuda, NonFiniteMatchesCpu) {
  const auto [dtype, blocksize, n] = GetParam();
  for (const int64_t every : {700, 9001}) {
    SCOPED_TRACE("non-finite every " + std::to_string(every));
    expect_blockwise_matches_cpu(dtype, blocksize, n, every);
  }
}

// Input and codes one element / one byte past 16-byte alignment: the element-wise path.
TEST_P(QuantizeBlockwiseCuda, UnalignedMatchesCpu) {
  const auto [dtype, blocksize, n] = GetParam();
  Values a = random_values(dtype, n, uint32_t(n * 3 + blocksize), 2.f);
  sprinkle_nonfinite(a, 5003);
  std::vector<uint8_t> q_cpu;
  std::vector<float> absmax_cpu;
  expect_quantize_matches_cpu(a, dense_map(), blocksize, 1, q_cpu, absmax_cpu);
}

INSTANTIATE_TEST_SUITE_P(
    DTypesBlocksSizes, QuantizeBlockwiseCuda,
    ::testing::Combine(::testing::ValuesIn(kDTypes), ::testing::Values<int64_t>(64, 128, 256, 512, 1024, 2048, 4096),
                       // empty, one value, odd, not a multiple of any block size or tile (ending mid-tile),
                       // several tiles of a CTA
                       ::testing::Values<int64_t>(0, 1, 1000, 14997, 3 * 4096 + 5, 1000003)));

// Several tiles a CTA (the persistent grid's loop, many_tiles_input), with marked blocks only
// after the first round of tiles, at block sizes within a warp, across warps and across the CTA.
TEST_F(CudaTest, QuantizeBlockwiseManyTilesPerCtaMatchCpu) {
  const std::vector<float> code = dense_map();
  for (const DType dtype : kDTypes) {
    Values a;
    ASSERT_NO_FATAL_FAILURE(many_tiles_input(dtype, a));
    for (const int64_t blocksize : {64, 512, 1024, 4096}) {
      SCOPED_TRACE(std::string(bnb::dtype_name(dtype)) + " blocksize " + std::to_string(blocksize));
      std::vector<uint8_t> q_cpu;
      std::vector<float> absmax_cpu;
      expect_quantize_matches_cpu(a, code, blocksize, 0, q_cpu, absmax_cpu);
    }
  }
}

class QuantizeTensorwiseCuda : public CudaTestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(QuantizeTensorwiseCuda, MatchesCpu) {
  const auto [dtype, n] = GetParam();
  const Values a = random_values(dtype, n, uint32_t(n) + 11, 2.f);
  const std::vector<float> code = dense_map();
  DeviceBuffer<uint8_t> a_d = to_device(a);
  DeviceBuffer<float> code_d(code);

  // absmax: the launcher writes a single float on the device (0 for an empty tensor).
  float absmax_cpu = 0.f;
  bnb::cpu::absmax(dtype, a.data(), n, &absmax_cpu);
  DeviceBuffer<float> absmax_d(1);
  absmax_d.fill_bytes(0);
  ASSERT_EQ(bnb::cuda::absmax(dtype, a_d.get(), n, absmax_d.get(), nullptr), cudaSuccess);
  EXPECT_EQ(absmax_d.host()[0], absmax_cpu);

  for (const bool scaled : {true, false}) {
    SCOPED_TRACE(scaled ? "with the absmax" : "no absmax");
    const float* scale_cpu = scaled ? &absmax_cpu : nullptr;
    const float* scale_d = scaled ? absmax_d.get() : nullptr;
    std::vector<uint8_t> q_cpu(static_cast<size_t>(n));
    bnb::cpu::quantize_scaled(dtype, a.data(), code.data(), scale_cpu, q_cpu.data(), n);
    DeviceBuffer<uint8_t> q_d(static_cast<size_t>(n));
    ASSERT_EQ(bnb::cuda::quantize_scaled(dtype, a_d.get(), code_d.get(), scale_d, q_d.get(), n, nullptr),
              cudaSuccess);
    EXPECT_EQ(count_mismatches(q_d.host(), q_cpu), 0);

    Values back_cpu = empty_values(dtype, n);
    bnb::cpu::dequantize_scaled(dtype, q_cpu.data(), code.data(), scale_cpu, back_cpu.data(), n);
    DeviceBuffer<uint8_t> qc_d(q_cpu);
    DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)));
    ASSERT_EQ(bnb::cuda::dequantize_scaled(dtype, qc_d.get(), code_d.get(), scale_d, back_d.get(), n, nullptr),
              cudaSuccess);
    EXPECT_EQ(from_device(dtype, back_d).bytes, back_cpu.bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(DTypesSizes, QuantizeTensorwiseCuda,
                         ::testing::Combine(::testing::ValuesIn(kDTypes),
                                            ::testing::Values<int64_t>(0, 1, 2049, 777777)));

}  // namespace
