// Quantile estimation on the CPU: the two-level key histogram of bnb/quantiles.h, with one
// private histogram per OpenMP thread, summed after each pass.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "bnb/quantiles.h"
#include "bnb/quantiles_cpu.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

using namespace bnb::quantiles;

// Counts per level-1 bin, over all threads.
template <DType T>
std::vector<uint64_t> level1_histogram(const typename Element<T>::storage* a, int64_t n) {
  const int threads = omp_get_max_threads();
  std::vector<uint64_t> parts(size_t(threads) * kLevel1Bins, 0);
#pragma omp parallel num_threads(threads)
  {
    uint64_t* h = parts.data() + size_t(omp_get_thread_num()) * kLevel1Bins;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) ++h[order_key(Element<T>::load(a, i)) >> kLevel1Shift];
  }
  std::vector<uint64_t> total(kLevel1Bins, 0);
#pragma omp parallel for schedule(static)
  for (int b = 0; b < kLevel1Bins; ++b)
    for (int t = 0; t < threads; ++t) total[b] += parts[size_t(t) * kLevel1Bins + b];
  return total;
}

// For the values whose level-1 bin is a slot's: counts of the next 6 key bits, and the sum
// of the values' positions inside their final bin. `out` holds the counts of all slots,
// then the position sums.
template <DType T>
std::vector<uint64_t> level2_histogram(const typename Element<T>::storage* a, int64_t n,
                                       const std::vector<int16_t>& slot_of_bin, int slots) {
  const int threads = omp_get_max_threads();
  const size_t half = size_t(slots) * kLevel2Bins, size = 2 * half;
  std::vector<uint64_t> parts(size_t(threads) * size, 0);
#pragma omp parallel num_threads(threads)
  {
    uint64_t* h = parts.data() + size_t(omp_get_thread_num()) * size;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t key = order_key(Element<T>::load(a, i));
      const int slot = slot_of_bin[key >> kLevel1Shift];
      if (slot >= 0) {
        const size_t at = size_t(slot) * kLevel2Bins + ((key >> kFinalShift) & (kLevel2Bins - 1));
        ++h[at];
        h[half + at] += key & kPositionMask;
      }
    }
  }
  std::vector<uint64_t> total(size, 0);
  for (int t = 0; t < threads; ++t)
    for (size_t i = 0; i < size; ++i) total[i] += parts[size_t(t) * size + i];
  return total;
}

}  // namespace

void estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles, float* out) {
  if (n <= 0 || num_quantiles <= 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    const auto* a = static_cast<const typename Element<T>::storage*>(A);
    const std::vector<uint64_t> h1 = level1_histogram<T>(a, n);

    // Locate: the wanted ranks rise with j, so one walk over the cumulative counts finds
    // every quantile's level-1 bin; equal bins of neighbouring quantiles share a slot.
    std::vector<uint64_t> rank(num_quantiles);
    std::vector<int> slot_of_quantile(num_quantiles);
    std::vector<uint32_t> slot_bin;
    std::vector<int16_t> slot_of_bin(kLevel1Bins, -1);
    uint64_t below = 0;  // values in the bins before `bin`
    int bin = 0;
    for (int j = 0; j < num_quantiles; ++j) {
      const uint64_t r = uint64_t(quantile_target(n, offset, num_quantiles, j));
      while (bin < kLevel1Bins - 1 && below + h1[bin] <= r) below += h1[bin++];
      if (slot_bin.empty() || slot_bin.back() != uint32_t(bin)) {
        slot_of_bin[bin] = int16_t(slot_bin.size());
        slot_bin.push_back(uint32_t(bin));
      }
      slot_of_quantile[j] = int(slot_bin.size()) - 1;
      rank[j] = r - below;  // the rank inside the level-1 bin
    }

    const int slots = int(slot_bin.size());
    const std::vector<uint64_t> h2 = level2_histogram<T>(a, n, slot_of_bin, slots);
    const size_t half = size_t(slots) * kLevel2Bins;
    for (int j = 0; j < num_quantiles; ++j) {
      const size_t first = size_t(slot_of_quantile[j]) * kLevel2Bins;
      const uint64_t* count = h2.data() + first;
      uint64_t r = rank[j];
      int c = 0;
      while (c < kLevel2Bins - 1 && count[c] <= r) r -= count[c++];
      const uint32_t final_bin = (slot_bin[slot_of_quantile[j]] << kLevel2Bits) | uint32_t(c);
      out[j] = final_estimate(final_bin, count[c], h2[half + first + c]);
    }
  });
}

}  // namespace bnb::cpu
