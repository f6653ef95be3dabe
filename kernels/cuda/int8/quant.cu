// Row-wise int8 quantization with the outlier search fused in, column-wise quantization
// (int8_double_quant) and row-wise dequantization.
//
// Why two reads of a row in one kernel: the row's absmax must be known before any of it is
// quantized. A block owns a row, reads it once from DRAM for the statistics and again (from
// L1/L2, where it still is) to quantize, so DRAM sees each input byte once.
#include <algorithm>
#include <cfloat>

#include <cub/block/block_scan.cuh>

#include "bnb/int8_cuda.h"
#include "../common/atomics.cuh"
#include "../common/launch.cuh"
#include "quantize_math.cuh"

namespace bnb::cuda {

namespace {

constexpr int kQuantThreads = 256;

template <typename T>
struct Vec {
  static constexpr int kElems = 16 / sizeof(T);  // one 16-byte load
};

template <typename T>
__global__ void __launch_bounds__(kQuantThreads)
row_quant_kernel(const T* __restrict__ A, int64_t rows, int64_t cols, float threshold, int8_t* __restrict__ out,
                 float* __restrict__ row_stats, bool* __restrict__ outlier_cols, bool vector_ok) {
  constexpr int V = Vec<T>::kElems;
  __shared__ float scratch[kQuantThreads / 32];
  const bool find = threshold > 0.f && outlier_cols != nullptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* a = A + r * cols;
    int8_t* o = out + r * cols;
    float m = 0.f;
    bool nan_seen = false;  // fmaxf passes NaN over; a NaN row's absmax is NaN (bnb/nonfinite.h),
    int infs = 0;           // as is that of a row holding two or more Infs
    if (vector_ok) {
      for (int64_t c = int64_t(threadIdx.x) * V; c < cols; c += int64_t(kQuantThreads) * V) {
        // A plain (cached) load: the second read below must still find the row in L1/L2.
        const uint4 raw = *reinterpret_cast<const uint4*>(a + c);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float x = fabsf(to_float(e[j]));
          if (int8_regular(x, threshold)) m = fmaxf(m, x), nan_seen |= x != x, infs += x > FLT_MAX;
          else if (find) outlier_cols[c + j] = true;  // benign race: every writer stores true
        }
      }
    } else {
      for (int64_t c = threadIdx.x; c < cols; c += kQuantThreads) {
        const float x = fabsf(to_float(a[c]));
        if (int8_regular(x, threshold)) m = fmaxf(m, x), nan_seen |= x != x, infs += x > FLT_MAX;
        else if (find) outlier_cols[c] = true;
      }
    }
    m = block_max(m, scratch);
    const bool many_infs = __syncthreads_count(infs > 0) > 1;
    if (__syncthreads_or(nan_seen || infs > 1) || many_infs) m = NAN;
    if (threadIdx.x == 0) row_stats[r] = m;
    const float scale = int8_scale(m);
    if (vector_ok) {
      for (int64_t c = int64_t(threadIdx.x) * V; c < cols; c += int64_t(kQuantThreads) * V)
        quantize_piece<T, V>(*reinterpret_cast<const uint4*>(a + c), scale, threshold, o + c);
    } else {
      for (int64_t c = threadIdx.x; c < cols; c += kQuantThreads) {
        const float x = to_float(a[c]);
        o[c] = int8_regular(fabsf(x), threshold) ? int8_round(x, scale) : int8_t(0);
      }
    }
  }
}

// row_quant_kernel for rows that fit in registers (cols <= 256 threads x 16 bytes x kPer):
// each thread loads its kPer 16-byte pieces of the row at once, and quantizes from the
// registers after the block's absmax, so the row is read once and every load of a thread
// is in flight together. One block a row (the grid is not persistent): the scheduler keeps
// several rows in flight per SM at different phases.
template <typename T, int kPer>
__global__ void __launch_bounds__(kQuantThreads)
row_quant_regs_kernel(const T* __restrict__ A, int64_t rows, int64_t cols, float threshold,
                      int8_t* __restrict__ out, float* __restrict__ row_stats, bool* __restrict__ outlier_cols) {
  constexpr int V = Vec<T>::kElems;
  __shared__ float scratch[kQuantThreads / 32];
  const bool find = threshold > 0.f && outlier_cols != nullptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* a = A + r * cols;
    uint4 raw[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t c = (int64_t(i) * kQuantThreads + threadIdx.x) * V;
      raw[i] = c < cols ? __ldcs(reinterpret_cast<const uint4*>(a + c)) : make_uint4(0, 0, 0, 0);
    }
    float m = 0.f;
    bool nan_seen = false;  // fmaxf passes NaN over; a NaN row's absmax is NaN (bnb/nonfinite.h),
    int infs = 0;           // as is that of a row holding two or more Infs
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t c = (int64_t(i) * kQuantThreads + threadIdx.x) * V;
      const T* e = reinterpret_cast<const T*>(&raw[i]);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float x = fabsf(to_float(e[j]));
        if (int8_regular(x, threshold)) m = fmaxf(m, x), nan_seen |= x != x, infs += x > FLT_MAX;
        else if (find && c < cols) outlier_cols[c + j] = true;  // benign race: every writer stores true
      }
    }
    m = block_max(m, scratch);
    const bool many_infs = __syncthreads_count(infs > 0) > 1;
    if (__syncthreads_or(nan_seen || infs > 1) || many_infs) m = NAN;
    if (threadIdx.x == 0) row_stats[r] = m;
    const float scale = int8_scale(m);
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t c = (int64_t(i) * kQuantThreads + threadIdx.x) * V;
      if (c < cols) quantize_piece<T, V>(raw[i], scale, threshold, out + r * cols + c);
    }
  }
}

// The outlier column list, in one block so that it comes out in ascending order (the outlier
// product then sums its columns in a fixed order: results do not change from run to run):
// list[0] = number of flagged columns, list[1 + i] = the i-th flagged column, zeros after.
constexpr int kListThreads = 1024;
constexpr int kListPerThread = 8;

__global__ void __launch_bounds__(kListThreads)
list_outlier_columns_kernel(const bool* __restrict__ flags, int64_t cols, int32_t* __restrict__ list) {
  using Scan = cub::BlockScan<int, kListThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  int base = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += int64_t(kListThreads) * kListPerThread) {
    const int64_t c = c0 + int64_t(threadIdx.x) * kListPerThread;
    bool f[kListPerThread];
    int n = 0;
#pragma unroll
    for (int j = 0; j < kListPerThread; ++j) {
      f[j] = c + j < cols && flags[c + j];
      n += f[j];
    }
    int offset, total;
    Scan(scan_storage).ExclusiveSum(n, offset, total);
    int pos = base + offset;
#pragma unroll
    for (int j = 0; j < kListPerThread; ++j)
      if (f[j]) list[1 + pos++] = int32_t(c + j);
    base += total;
    __syncthreads();  // scan_storage is reused by the next tile
  }
  if (threadIdx.x == 0) list[0] = base;
  for (int64_t i = base + threadIdx.x; i < cols; i += kListThreads) list[1 + i] = 0;  // unused: zero
}

// Zeroes the listed columns in every row; the count is read here, on the device.
__global__ void zero_outlier_columns_kernel(int8_t* __restrict__ out, int64_t rows, int64_t cols,
                                            const int32_t* __restrict__ scratch) {
  const int n = scratch[0];
  if (n == 0) return;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[r * cols + scratch[1 + i]] = 0;
}

// Column absmax of the regular values, NaN and Inf as a row's (bnb/nonfinite.h): threads own
// columns (coalesced rows), blocks in y split the rows and merge with an atomic merge.
template <typename T>
__global__ void col_stats_kernel(const T* __restrict__ A, int64_t rows, int64_t cols, float threshold,
                                 float* __restrict__ col_stats, int64_t rows_per_block) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = blockIdx.y * rows_per_block, r1 = min(rows, r0 + rows_per_block);
  float m = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float x = fabsf(to_float(A[r * cols + c]));
    if (int8_regular(x, threshold)) m = int8_absmax_merge(m, x);
  }
  atomic_int8_absmax_merge(col_stats + c, m);
}

template <typename T>
__global__ void col_quant_kernel(const T* __restrict__ A, int64_t rows, int64_t cols, float threshold,
                                 const bool* __restrict__ outlier_cols, const float* __restrict__ col_stats,
                                 int8_t* __restrict__ out) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols;
    const float x = to_float(A[i]);
    const bool zero = (outlier_cols && outlier_cols[c]) || !int8_regular(fabsf(x), threshold);
    out[i] = zero ? int8_t(0) : int8_round(x, int8_scale(col_stats[c]));
  }
}

__global__ void row_dequant_kernel(const int8_t* __restrict__ A, const float* __restrict__ stats, int64_t rows,
                                   int64_t cols, float* __restrict__ out) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float s = __fmul_rn(stats[r], kInt8Inv127);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = __fmul_rn(float(A[r * cols + c]), s);
  }
}

int grid_for(int64_t work, int64_t cap = 65535) { return int(std::max<int64_t>(1, std::min(work, cap))); }

template <typename T>
cudaError_t vectorwise_quant_typed(const T* A, int64_t rows, int64_t cols, float threshold, int8_t* out,
                                   float* row_stats, bool* outlier_cols, int32_t* scratch, cudaStream_t stream) {
  const bool find = threshold > 0.f;
  if (outlier_cols && cols > 0) {  // cleared even for an empty A: the caller reads every flag
    cudaError_t e = cudaMemsetAsync(outlier_cols, 0, size_t(cols), stream);
    if (e != cudaSuccess) return e;
  }
  if (scratch && (!find || rows == 0 || cols == 0)) {  // an empty list: nothing can be flagged
    cudaError_t e = cudaMemsetAsync(scratch, 0, size_t(cols + 1) * sizeof(int32_t), stream);
    if (e != cudaSuccess) return e;
  }
  if (rows == 0) return cudaSuccess;
  if (cols == 0) {
    return cudaMemsetAsync(row_stats, 0, size_t(rows) * sizeof(float), stream);
  }
  const bool vector_ok = cols % Vec<T>::kElems == 0 && aligned16(A) &&
                         (reinterpret_cast<uintptr_t>(out) % Vec<T>::kElems) == 0;
  bool* flags = find ? outlier_cols : nullptr;
  const int64_t pieces = (cols + Vec<T>::kElems - 1) / Vec<T>::kElems;  // 16-byte pieces of a row
  const int per = int((pieces + kQuantThreads - 1) / kQuantThreads);
  if (vector_ok && per <= 8) {
    const int grid = int(std::min<int64_t>(rows, 0x7fffffff));
    if (per <= 1)
      row_quant_regs_kernel<T, 1><<<grid, kQuantThreads, 0, stream>>>(A, rows, cols, threshold, out, row_stats, flags);
    else if (per <= 2)
      row_quant_regs_kernel<T, 2><<<grid, kQuantThreads, 0, stream>>>(A, rows, cols, threshold, out, row_stats, flags);
    else if (per <= 4)
      row_quant_regs_kernel<T, 4><<<grid, kQuantThreads, 0, stream>>>(A, rows, cols, threshold, out, row_stats, flags);
    else
      row_quant_regs_kernel<T, 8><<<grid, kQuantThreads, 0, stream>>>(A, rows, cols, threshold, out, row_stats, flags);
  } else {
    const auto kernel = row_quant_kernel<T>;
    const int grid = int(std::min<int64_t>(rows, persistent_grid((const void*)kernel, kQuantThreads, 0)));
    kernel<<<grid, kQuantThreads, 0, stream>>>(A, rows, cols, threshold, out, row_stats, flags, vector_ok);
  }
  if (!find || outlier_cols == nullptr || scratch == nullptr) return cudaGetLastError();
  list_outlier_columns_kernel<<<1, kListThreads, 0, stream>>>(outlier_cols, cols, scratch);
  zero_outlier_columns_kernel<<<grid_for(rows, 4096), 128, 0, stream>>>(out, rows, cols, scratch);
  return cudaGetLastError();
}

template <typename T>
cudaError_t colwise_quant_typed(const T* A, int64_t rows, int64_t cols, float threshold, const bool* outlier_cols,
                                int8_t* out, float* col_stats, cudaStream_t stream) {
  if (cols == 0) return cudaSuccess;
  cudaError_t e = cudaMemsetAsync(col_stats, 0, size_t(cols) * sizeof(float), stream);
  if (e != cudaSuccess || rows == 0) return e;
  const int64_t rows_per_block = 256;
  const int64_t row_blocks = std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, 65535);
  const dim3 grid(unsigned((cols + 255) / 256), unsigned(row_blocks));
  const int64_t rpb = (rows + grid.y - 1) / grid.y;
  col_stats_kernel<T><<<grid, 256, 0, stream>>>(A, rows, cols, threshold, col_stats, rpb);
  col_quant_kernel<T><<<grid_for((rows * cols + 255) / 256, 65535), 256, 0, stream>>>(A, rows, cols, threshold,
                                                                                       outlier_cols, col_stats, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t int8_vectorwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                                  int8_t* out, float* row_stats, bool* outlier_cols, int32_t* scratch,
                                  cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return vectorwise_quant_typed(static_cast<const float*>(A), rows, cols, threshold, out, row_stats, outlier_cols,
                                    scratch, stream);
    case DType::Float16:
      return vectorwise_quant_typed(static_cast<const __half*>(A), rows, cols, threshold, out, row_stats,
                                    outlier_cols, scratch, stream);
    case DType::BFloat16:
      return vectorwise_quant_typed(static_cast<const __nv_bfloat16*>(A), rows, cols, threshold, out, row_stats,
                                    outlier_cols, scratch, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t int8_colwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                               const bool* outlier_cols, int8_t* out, float* col_stats, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return colwise_quant_typed(static_cast<const float*>(A), rows, cols, threshold, outlier_cols, out, col_stats,
                                 stream);
    case DType::Float16:
      return colwise_quant_typed(static_cast<const __half*>(A), rows, cols, threshold, outlier_cols, out, col_stats,
                                 stream);
    case DType::BFloat16:
      return colwise_quant_typed(static_cast<const __nv_bfloat16*>(A), rows, cols, threshold, outlier_cols, out,
                                 col_stats, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t int8_vectorwise_dequant(const int8_t* A, const float* stats, int64_t rows, int64_t cols, float* out,
                                    cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  row_dequant_kernel<<<grid_for(rows, 65535), 256, 0, stream>>>(A, stats, rows, cols, out);
  return cudaGetLastError();
}

}  // namespace bnb::cuda
