// The CUDA quantization launchers (bnb/quantize_cuda.h) against their CPU twins on the same
// inputs: codes and absmax exactly (both divide once, IEEE, and search the same midpoints),
// dequantized values exactly (one product, one rounding to the dtype).
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

// Codes, absmax and dequantized values of the CUDA launchers equal the CPU ones; with
// `nonfinite`, some blocks hold NaN and +-Inf (marked blocks, reserved code).
void expect_blockwise_matches_cpu(DType dtype, int64_t blocksize, int64_t n, bool nonfinite) {
  Values a = random_values(dtype, n, uint32_t(n + blocksize), 3.f);
  if (nonfinite) sprinkle_nonfinite(a);
  const std::vector<float> code = dense_map();
  const int64_t blocks = bnb::num_blocks(n, blocksize);

  std::vector<uint8_t> q_cpu(static_cast<size_t>(n));
  std::vector<float> absmax_cpu(static_cast<size_t>(blocks));
  bnb::cpu::quantize_blockwise(dtype, a.data(), code.data(), q_cpu.data(), absmax_cpu.data(), n, blocksize);

  DeviceBuffer<uint8_t> a_d = to_device(a);
  DeviceBuffer<float> code_d(code);
  DeviceBuffer<uint8_t> q_d(static_cast<size_t>(n));
  DeviceBuffer<float> absmax_d(static_cast<size_t>(blocks));
  ASSERT_EQ(bnb::cuda::quantize_blockwise(dtype, a_d.get(), code_d.get(), q_d.get(), absmax_d.get(), n, blocksize,
                                          nullptr),
            cudaSuccess);
  EXPECT_EQ(absmax_d.host(), absmax_cpu);
  EXPECT_EQ(count_mismatches(q_d.host(), q_cpu), 0);

  // Dequantize the same codes on both.
  Values back_cpu = empty_values(dtype, n);
  bnb::cpu::dequantize_blockwise(dtype, q_cpu.data(), code.data(), absmax_cpu.data(), back_cpu.data(), n, blocksize);
  DeviceBuffer<uint8_t> qc_d(q_cpu);
  DeviceBuffer<float> absmax_c(absmax_cpu);
  DeviceBuffer<uint8_t> back_d(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)));
  ASSERT_EQ(bnb::cuda::dequantize_blockwise(dtype, qc_d.get(), code_d.get(), absmax_c.get(), back_d.get(), n,
                                            blocksize, nullptr),
            cudaSuccess);
  EXPECT_EQ(count_value_mismatches(from_device(dtype, back_d), back_cpu), 0);
}

TEST_P(QuantizeBlockwiseCuda, MatchesCpu) {
  const auto [dtype, blocksize, n] = GetParam();
  expect_blockwise_matches_cpu(dtype, blocksize, n, false);
}

TEST_P(QuantizeBlockwiseCuda, NonFiniteMatchesCpu) {
  const auto [dtype, blocksize, n] = GetParam();
  expect_blockwise_matches_cpu(dtype, blocksize, n, true);
}

INSTANTIATE_TEST_SUITE_P(
    DTypesBlocksSizes, QuantizeBlockwiseCuda,
    ::testing::Combine(::testing::ValuesIn(kDTypes), ::testing::Values<int64_t>(64, 128, 256, 512, 1024, 2048, 4096),
                       // empty, one value, not a multiple of any block size, several tiles of a CTA
                       ::testing::Values<int64_t>(0, 1, 1000, 3 * 4096 + 5, 1000003)));

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
