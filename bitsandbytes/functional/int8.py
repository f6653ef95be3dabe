"""LLM.int8() building blocks: row-wise int8 quantization with outlier columns, the int8
GEMM (int32 result) and its dequantization with the bias fused.

Conventions (those of the library this one replaces): a row's statistic is its absmax, the
int8 value is round(x * 127 / absmax), and dequantization multiplies by absmax / 127. With a
threshold > 0, values with |x| >= threshold are outliers: they are left out of the statistics
and their whole column is zeroed in the int8 output, so that the caller can multiply those
columns in 16-bit instead.
"""
import torch

from .._ops import check_dtype, check_float, check_out
from ._args import check_tensor, into


def int8_vectorwise_quant(A, threshold=0.0):
    """Row-wise absmax int8 quantization of A[..., K].

    Returns (A_int8 shaped like A, float32 row_stats of A.numel() / K values, outlier_cols):
    outlier_cols is None when threshold is 0, else the int64 indices of the columns holding any
    |value| >= threshold (those columns are zero in A_int8, and outliers are not in row_stats)."""
    fn = "int8_vectorwise_quant"
    check_tensor(A, "A", fn)
    # finding the outlier columns waits for the device; bnb.matmul keeps them there instead
    return torch.ops.bitsandbytes.int8_vectorwise_quant(A, float(threshold))


def int8_weight_quant(W):
    """(CB, SCB): a weight quantized row-wise as the reference library quantizes weights, a
    float32 weight through its float16 rounding, so that its int8 codes are the reference's
    for every weight dtype (rounding first moves 0.6% of them by one). Values float16 cannot
    hold keep their float32 value rather than become inf."""
    if W.dtype == torch.float32:
        w16 = W.to(torch.float16)
        W = torch.where(torch.isinf(w16) & torch.isfinite(W), W, w16.to(torch.float32))
    CB, SCB, _ = int8_vectorwise_quant(W)
    return CB, SCB


def int8_vectorwise_dequant(A, stats):
    """float32 A * stats / 127, one statistic per row of A[..., K]."""
    fn = "int8_vectorwise_dequant"
    check_tensor(A, "A", fn)
    check_tensor(stats, "stats", fn)
    return torch.ops.bitsandbytes.int8_vectorwise_dequant(A, stats.reshape(-1).float())


def int8_double_quant(A, col_stats=None, row_stats=None, out_col=None, out_row=None, threshold=0.0):
    """Row-wise and column-wise int8 quantization in one call.

    Returns (out_row, out_col, row_stats, col_stats, outlier_cols); the outlier columns are zero
    in both int8 outputs. col_stats/row_stats/out_col/out_row, when given, receive the results."""
    fn = "int8_double_quant"
    check_tensor(A, "A", fn)
    o_row, o_col, r_stats, c_stats, cols = torch.ops.bitsandbytes.int8_double_quant(A, float(threshold))
    return (into(out_row, o_row, "out_row", fn), into(out_col, o_col, "out_col", fn),
            into(row_stats, r_stats, "row_stats", fn), into(col_stats, c_stats, "col_stats", fn), cols)


def int8_linear_matmul(A, B, out=None, dtype=torch.int32):
    """int8 A[..., K] x int8 B[N, K]^T -> int32 [..., N] (exact integer arithmetic)."""
    fn = "int8_linear_matmul"
    check_tensor(A, "A", fn)
    check_tensor(B, "B", fn)
    if dtype != torch.int32:
        raise ValueError(f"{fn}: dtype must be torch.int32 (the exact accumulator), got {dtype}")
    if out is None:
        return torch.ops.bitsandbytes.int8_linear_matmul(A, B)
    check_tensor(out, "out", fn)
    torch.ops.bitsandbytes.int8_linear_matmul.out(A, B, out)
    return out


def int8_mm_dequant(A, row_stats, col_stats, out=None, bias=None, dtype=None):
    """Dequantizes the int32 product of int8_linear_matmul: A * row_stats * col_stats / 127^2
    (+ bias), in `dtype` (default: out's dtype, else bias's, else float16)."""
    fn = "int8_mm_dequant"
    check_tensor(A, "A", fn)
    if dtype is None:
        dtype = out.dtype if out is not None else (bias.dtype if bias is not None else torch.float16)
    if bias is not None:
        check_tensor(bias, "bias", fn)
    result = torch.ops.bitsandbytes.int8_mm_dequant(A, row_stats.reshape(-1).float(), col_stats.reshape(-1).float(),
                                                    dtype, bias)
    return into(out, result, "out", fn)


def int8_weight_linear(A, CB, SCB, bias=None):
    """A[..., K] x (CB * SCB / 127)^T (+ bias) in A's dtype, accumulated in float32: the
    16-bit activations meet the int8 weight directly (no outliers to split off). Fast when A
    has few rows, since the int8 weight is read once."""
    fn = "int8_weight_linear"
    check_tensor(A, "A", fn)
    if bias is not None:
        bias = bias.to(A.dtype)
    return torch.ops.bitsandbytes.int8_weight_linear(A, CB, SCB.reshape(-1).float(), bias)


# Fake kernels of the int8 ops (torch.compile, opcheck), those that bnb.matmul calls directly
# (autograd/_functions.py: int8_vectorwise_quant_outliers, int8_mm_dequant_outliers) included.
# int8_weight_linear's Autograd kernel (gradients of A and bias) is in csrc/autograd_kernels.cpp.


def _rows(A):
    n = 1
    for s in A.shape[:-1]:
        n *= s
    return n


def _check_matrix_like(A, op, arg):
    torch._check_value(A.dim() >= 1,
                       lambda: f"{op}: {arg} must have at least one dimension (rows x columns), got a scalar")


def _check_vector(t, n, dtype, op, arg):
    check_dtype(t, dtype, op, arg)
    torch._check_value(t.numel() == n, lambda: f"{op}: {arg} must hold {n} values, got {t.numel()}")


def _row_quant_fake(A, op):
    check_float(A.dtype, op, "A")
    _check_matrix_like(A, op, "A")
    return (torch.empty(A.shape, dtype=torch.int8, device=A.device),
            torch.empty(_rows(A), dtype=torch.float32, device=A.device))


def _outlier_columns_fake(A, threshold):
    """The int64 outlier column indices: as many as the data has, None without a threshold."""
    if threshold <= 0.0:
        return None
    return A.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=torch.int64)


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant")
def _int8_vectorwise_quant_fake(A, threshold=0.0):
    return (*_row_quant_fake(A, "int8_vectorwise_quant"), _outlier_columns_fake(A, threshold))


@torch.library.register_fake("bitsandbytes::int8_vectorwise_dequant")
def _int8_vectorwise_dequant_fake(A, stats):
    op = "int8_vectorwise_dequant"
    check_dtype(A, torch.int8, op, "A")
    _check_matrix_like(A, op, "A")
    _check_vector(stats, _rows(A), torch.float32, op, "stats")
    return torch.empty(A.shape, dtype=torch.float32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_double_quant")
def _int8_double_quant_fake(A, threshold=0.0):
    out_row, row_stats = _row_quant_fake(A, "int8_double_quant")
    return (out_row, torch.empty(A.shape, dtype=torch.int8, device=A.device), row_stats,
            torch.empty(A.shape[-1], dtype=torch.float32, device=A.device), _outlier_columns_fake(A, threshold))


def _int8_product_shape(A, B, op):
    check_dtype(A, torch.int8, op, "A")
    check_dtype(B, torch.int8, op, "B")
    _check_matrix_like(A, op, "A")
    torch._check_value(B.dim() == 2, lambda: f"{op}: B must be a 2-D [N, K] weight, got {B.dim()} dimensions")
    torch._check_value(A.shape[-1] == B.shape[1],
                       lambda: f"{op}: A's last dimension (K = {A.shape[-1]}) must equal B's second dimension "
                               f"({B.shape[1]}); B is [N, K]")
    return (*A.shape[:-1], B.shape[0])


@torch.library.register_fake("bitsandbytes::int8_linear_matmul")
def _int8_linear_matmul_fake(A, B):
    return torch.empty(_int8_product_shape(A, B, "int8_linear_matmul"), dtype=torch.int32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_linear_matmul.out")
def _int8_linear_matmul_out_fake(A, B, out):
    check_out(out, _int8_product_shape(A, B, "int8_linear_matmul.out"), torch.int32, A.device,
              "int8_linear_matmul.out")


def _check_int32_product(A, row_stats, col_stats, op):
    check_dtype(A, torch.int32, op, "A")
    _check_matrix_like(A, op, "A")
    _check_vector(row_stats, _rows(A), torch.float32, op, "row_stats")
    _check_vector(col_stats, A.shape[-1], torch.float32, op, "col_stats")


@torch.library.register_fake("bitsandbytes::int8_mm_dequant")
def _int8_mm_dequant_fake(A, row_stats, col_stats, dtype=None, bias=None):
    op = "int8_mm_dequant"
    dtype = torch.float16 if dtype is None else dtype
    _check_int32_product(A, row_stats, col_stats, op)
    check_float(dtype, op, "dtype")
    if bias is not None:
        check_float(bias.dtype, op, "bias")
        torch._check_value(bias.numel() == A.shape[-1],
                           lambda: f"{op}: bias must hold {A.shape[-1]} values, got {bias.numel()}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant_outliers")
def _int8_vectorwise_quant_outliers_fake(A, threshold):
    out, row_stats = _row_quant_fake(A, "int8_vectorwise_quant_outliers")
    return out, row_stats, torch.empty(A.shape[-1] + 1, dtype=torch.int32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_mm_dequant_outliers")
def _int8_mm_dequant_outliers_fake(A, row_stats, col_stats, bias, X, W, outlier_list, dtype):
    op = "int8_mm_dequant_outliers"
    _check_int32_product(A, row_stats, col_stats, op)
    check_float(dtype, op, "dtype")
    torch._check_value(W.dim() == 2 and W.shape[0] == A.shape[-1] and W.shape[1] == X.shape[-1],
                       lambda: f"{op}: W must be [N, K] for A [..., N] and X [..., K], got {tuple(W.shape)}")
    torch._check_type(W.dtype in (dtype, torch.int8), lambda: f"{op}: W must be int8 or {dtype}, got {W.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_weight_linear")
def _int8_weight_linear_fake(A, CB, SCB, bias):
    op = "int8_weight_linear"
    check_float(A.dtype, op, "A")
    check_dtype(CB, torch.int8, op, "CB")
    torch._check_value(CB.dim() == 2, lambda: f"{op}: CB must be a 2-D [N, K] int8 weight, got {CB.dim()} dimensions")
    torch._check_value(A.shape[-1] == CB.shape[1], lambda: f"{op}: A must be [..., K] and CB [N, K]")
    check_dtype(SCB, torch.float32, op, "SCB")
    torch._check_value(SCB.numel() == CB.shape[0], lambda: f"{op}: SCB must hold {CB.shape[0]} values, got "
                                                           f"{SCB.numel()}")
    return torch.empty((*A.shape[:-1], CB.shape[0]), dtype=A.dtype, device=A.device)
