"""LLM.int8() building blocks: row-wise int8 quantization with outlier columns, the int8
GEMM (int32 result) and its dequantization with the bias fused.

Conventions (those of the library this one replaces): a row's statistic is its absmax, the
int8 value is round(x * 127 / absmax), and dequantization multiplies by absmax / 127. With a
threshold > 0, values with |x| > threshold are outliers: they are left out of the statistics
and their whole column is zeroed in the int8 output, so that the caller can multiply those
columns in 16-bit instead.
"""
import torch

from ._args import check_tensor, into



def _columns(mask, threshold):
    # Indices of the flagged columns. This one call waits for the device; bnb.matmul keeps the
    # mask on the device instead where it can.
    if threshold <= 0.0:
        return None
    return torch.nonzero(mask).view(-1)


def int8_vectorwise_quant(A, threshold=0.0):
    """Row-wise absmax int8 quantization of A[..., K].

    Returns (A_int8 shaped like A, float32 row_stats of A.numel() / K values, outlier_cols):
    outlier_cols is None when threshold is 0, else the int64 indices of the columns holding any
    |value| > threshold (those columns are zero in A_int8, and outliers are not in row_stats)."""
    fn = "int8_vectorwise_quant"
    check_tensor(A, "A", fn)
    out, stats, mask = torch.ops.bitsandbytes.int8_vectorwise_quant(A, float(threshold))
    return out, stats, _columns(mask, threshold)


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
    o_row, o_col, r_stats, c_stats, mask = torch.ops.bitsandbytes.int8_double_quant(A, float(threshold))
    return (into(out_row, o_row, "out_row", fn), into(out_col, o_col, "out_col", fn),
            into(row_stats, r_stats, "row_stats", fn), into(col_stats, c_stats, "col_stats", fn),
            _columns(mask, threshold))


def int8_linear_matmul(A, B, out=None, dtype=torch.int32):
    """int8 A[..., K] x int8 B[N, K]^T -> int32 [..., N] (exact integer arithmetic)."""
    fn = "int8_linear_matmul"
    check_tensor(A, "A", fn)
    check_tensor(B, "B", fn)
    if dtype != torch.int32:
        raise ValueError(f"{fn}: dtype must be torch.int32 (the exact accumulator), got {dtype}")
    return into(out, torch.ops.bitsandbytes.int8_linear_matmul(A, B), "out", fn)


def int8_mm_dequant(A, row_stats, col_stats, out=None, bias=None, dtype=None):
    """Dequantizes the int32 product of int8_linear_matmul: A * row_stats * col_stats / 127^2
    (+ bias), in `dtype` (default: out's dtype, else bias's, else float16)."""
    fn = "int8_mm_dequant"
    check_tensor(A, "A", fn)
    if dtype is None:
        dtype = out.dtype if out is not None else (bias.dtype if bias is not None else torch.float16)
    if bias is not None:
        check_tensor(bias, "bias", fn)
        bias = bias.to(dtype)
    result = torch.ops.bitsandbytes.int8_mm_dequant(A, row_stats.reshape(-1).float(), col_stats.reshape(-1).float(),
                                                    bias, None, None, dtype)
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
