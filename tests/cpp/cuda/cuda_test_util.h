// Helpers of the CUDA launcher tests: a fixture that skips without a GPU, device buffers,
// random inputs in every dtype, and comparisons with a stated tolerance.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>

#include "bnb/dtype.h"
#include "bnb/float16.h"

namespace bnb {
// Readable test names and failure messages for dtype parameters.
inline void PrintTo(DType t, std::ostream* os) { *os << dtype_name(t); }
}  // namespace bnb

namespace bnb_test {

// Every test of the suite derives from this: skipped where no GPU can be used.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      GTEST_SKIP() << "no CUDA device";
    }
    has_device_ = true;
  }
  // No launch may leave an error behind (an asynchronous fault shows up here).
  void TearDown() override {
    if (has_device_) EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

 private:
  bool has_device_ = false;
};

template <typename P>
class CudaTestWithParam : public CudaTest, public ::testing::WithParamInterface<P> {};

// Device memory holding `count` values of T (freed on destruction); copies from and to host
// vectors. An empty buffer has a null pointer.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count > 0) EXPECT_EQ(cudaMalloc(&ptr_, count * sizeof(T)), cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (count_ > 0) EXPECT_EQ(cudaMemcpy(ptr_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> host() const {
    std::vector<T> out(count_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    if (count_ > 0) EXPECT_EQ(cudaMemcpy(out.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  void fill_bytes(int byte) {
    if (count_ > 0) EXPECT_EQ(cudaMemset(ptr_, byte, count_ * sizeof(T)), cudaSuccess);
  }

 private:
  void* ptr_ = nullptr;
  size_t count_;
};

// Values of a dtype, as raw bytes (float32, or the 16-bit patterns), and read back as floats.
struct Values {
  bnb::DType dtype;
  std::vector<uint8_t> bytes;
  int64_t size() const { return int64_t(bytes.size()) / bnb::dtype_size(dtype); }
  const void* data() const { return bytes.data(); }
  void* data() { return bytes.data(); }
  float at(int64_t i) const {
    if (dtype == bnb::DType::Float32) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return dtype == bnb::DType::Float16 ? bnb::fp16_to_float(h) : bnb::bf16_to_float(h);
  }
};

inline Values from_floats(bnb::DType dtype, const std::vector<float>& f) {
  Values v{dtype, std::vector<uint8_t>(f.size() * static_cast<size_t>(bnb::dtype_size(dtype)))};
  for (size_t i = 0; i < f.size(); ++i) {
    if (dtype == bnb::DType::Float32) {
      std::memcpy(v.bytes.data() + 4 * i, &f[i], 4);
    } else {
      const uint16_t h = dtype == bnb::DType::Float16 ? bnb::float_to_fp16(f[i]) : bnb::float_to_bf16(f[i]);
      std::memcpy(v.bytes.data() + 2 * i, &h, 2);
    }
  }
  return v;
}

inline Values random_values(bnb::DType dtype, int64_t n, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, stddev);
  std::vector<float> f(static_cast<size_t>(n));
  for (auto& x : f) x = normal(rng);
  return from_floats(dtype, f);
}

inline Values empty_values(bnb::DType dtype, int64_t n) {
  return Values{dtype, std::vector<uint8_t>(static_cast<size_t>(n) * static_cast<size_t>(bnb::dtype_size(dtype)))};
}

// Every `every`-th value (from index 3) replaced by NaN, +Inf and -Inf in turn: the blocks
// holding them are marked (bnb/nonfinite.h), the others are not.
inline void sprinkle_nonfinite(Values& v, int64_t every = 700) {
  const float kinds[3] = {NAN, INFINITY, -INFINITY};
  for (int64_t i = 3, k = 0; i < v.size(); i += every, ++k) {
    const float f = kinds[k % 3];
    if (v.dtype == bnb::DType::Float32) {
      std::memcpy(v.bytes.data() + 4 * i, &f, 4);
    } else {
      const uint16_t h = v.dtype == bnb::DType::Float16 ? bnb::float_to_fp16(f) : bnb::float_to_bf16(f);
      std::memcpy(v.bytes.data() + 2 * i, &h, 2);
    }
  }
}

// An input that makes a persistent quantize grid loop: more tiles of 512 threads x 4 chunks of
// 16 bytes than the device holds CTAs of 512 threads at once, twice over, plus a partial tile;
// finite over the first such round, then NaN, +Inf and -Inf here and there (one tile in three or
// so), so that CTAs meet a marked block after a varying number of tiles.
inline void many_tiles_input(bnb::DType dtype, Values& a) {
  int device = 0, sms = 0, threads_per_sm = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device), cudaSuccess);
  const int64_t resident = int64_t(sms) * std::max(1, threads_per_sm / 512);  // CTAs at once, at most
  constexpr int64_t kTile16 = 4 * 512 * 8;  // values of a 16-bit tile (float32's are half as many)
  const int64_t first_round = resident * kTile16, n = 2 * first_round + 3 * kTile16 + 5;
  a = random_values(dtype, n, uint32_t(n) + uint32_t(dtype), 1.f);
  Values tail = empty_values(dtype, n - first_round);
  const size_t at = static_cast<size_t>(first_round * bnb::dtype_size(dtype));
  std::copy(a.bytes.begin() + at, a.bytes.end(), tail.bytes.begin());
  sprinkle_nonfinite(tail, 50021);
  std::copy(tail.bytes.begin(), tail.bytes.end(), a.bytes.begin() + at);
}

// Elements whose values differ; NaN equals NaN (the GPU's conversions may give another NaN
// bit pattern than the CPU's).
inline int64_t count_value_mismatches(const Values& a, const Values& b) {
  int64_t bad = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    const float x = a.at(i), y = b.at(i);
    bad += !(std::isnan(x) ? std::isnan(y) : std::memcmp(&x, &y, 4) == 0);
  }
  return bad + (a.size() != b.size());
}

// Values on the device and back.
inline DeviceBuffer<uint8_t> to_device(const Values& v) { return DeviceBuffer<uint8_t>(v.bytes); }
inline Values from_device(bnb::DType dtype, const DeviceBuffer<uint8_t>& d) { return Values{dtype, d.host()}; }

// A sorted 256-entry map: the signed linear one, or (unsigned) 0..1.
inline std::vector<float> linear_map(bool is_signed) {
  std::vector<float> code(bnb::kCodeSize);
  for (int i = 0; i < bnb::kCodeSize; ++i)
    code[i] = is_signed ? -1.f + 2.f * float(i) / float(bnb::kCodeSize - 1) : float(i) / float(bnb::kCodeSize - 1);
  return code;
}

// A sorted 256-entry map denser near zero (as the dynamic maps are): odd powers of the
// linear one.
inline std::vector<float> dense_map() {
  std::vector<float> code = linear_map(true);
  for (auto& c : code) c = c * c * c;
  return code;
}

inline const char* name(bnb::DType t) { return bnb::dtype_name(t); }

// |got - want| <= rel * max(1, |want|) for every element; reports the first failures.
inline void expect_close(const Values& got, const Values& want, float rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int failures = 0;
  for (int64_t i = 0; i < got.size() && failures < 10; ++i) {
    const float g = got.at(i), w = want.at(i);
    if (g == w || (std::isnan(g) && std::isnan(w))) continue;  // equal, the same Inf, or both NaN
    if (!(std::fabs(g - w) <= rel * std::max(1.f, std::fabs(w)))) {
      ADD_FAILURE() << what << " [" << i << "]: " << g << " vs CPU " << w << " (" << name(got.dtype) << ")";
      ++failures;
    }
  }
}

// Relative tolerance of one rounding to the dtype (a few units in the last place).
inline float dtype_tolerance(bnb::DType t) {
  return t == bnb::DType::Float32 ? 1e-5f : t == bnb::DType::Float16 ? 2e-3f : 1.6e-2f;
}

}  // namespace bnb_test
