// The quantile-estimation op, written once over a backend (CPU or CUDA) that supplies the
// launcher: checks, contiguity and output allocation here, arithmetic in kernels/.
#pragma once
#include <ATen/ops/empty.h>

#include <cmath>

#include "bnb/quantiles.h"
#include "checks.h"

namespace bnb::ops {

template <class Backend>
at::Tensor estimate_quantiles(const at::Tensor& A, double offset, int64_t num_quantiles) {
  constexpr const char* op = "estimate_quantiles";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  BNB_CHECK_VALUE(A.numel() >= quantiles::kMinValues, op, ": A must hold at least ", quantiles::kMinValues,
                  " values to estimate quantiles from, got ", A.numel());
  BNB_CHECK_VALUE(num_quantiles >= 1 && num_quantiles <= quantiles::kMaxQuantiles, op,
                  ": num_quantiles must be between 1 and ", quantiles::kMaxQuantiles, ", got ", num_quantiles);
  BNB_CHECK_VALUE(std::isfinite(offset) && offset >= 0.0 && offset <= 0.5, op,
                  ": offset must be in [0, 0.5] (the fraction trimmed from each tail), got ", offset);
  const at::Tensor a = A.contiguous();
  at::Tensor out = at::empty({num_quantiles}, A.options().dtype(at::kFloat));
  Backend::launch(A, Backend::estimate_quantiles, dt, a.const_data_ptr(), A.numel(), offset, int(num_quantiles),
                  out.mutable_data_ptr<float>());
  return out;
}

#define BNB_REGISTER_QUANTILE_OPS(m, Backend) \
  m.impl("estimate_quantiles", &bnb::ops::estimate_quantiles<Backend>);

}  // namespace bnb::ops
