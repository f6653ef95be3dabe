"""Loads the compiled operator library and registers the fake kernels torch.compile uses.

Each op lives in the `torch.ops.bitsandbytes` namespace; its schema is in csrc/schemas.cpp,
its CPU and CUDA kernels in csrc/*_cpu.cpp and csrc/*_cuda.cpp.
"""
import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

from ._formats import FLOAT_DTYPES, FORMAT_8BIT, QUANTILES_MAX, QUANTILES_MIN_VALUES, dtype_list

# Kept for callers that read these names here; the facts live in _formats.py.
BLOCKSIZES = FORMAT_8BIT.blocksizes

# The fake kernels check what they can see (dtypes, sizes, block sizes) and raise what the real
# kernels raise for the same input (csrc/checks.h): TypeError for a dtype, ValueError for a
# value. torch._check_type / torch._check_value also accept symbolic conditions.


def _num_blocks(n, blocksize):
    return -(n // -blocksize)


def _check_dtype(t, want, op, arg):
    torch._check_type(t.dtype == want, lambda: f"{op}: {arg} must be {want}, got {t.dtype}")


def _check_float(dtype, op, arg):
    torch._check_type(dtype in FLOAT_DTYPES, lambda: f"{op}: {arg} must be {dtype_list(FLOAT_DTYPES)}, got {dtype}")


def _check_code(code, fmt, op):
    _check_dtype(code, torch.float32, op, "code")
    torch._check_value(code.numel() == fmt.map_size,
                       lambda: f"{op}: code must hold {fmt.map_size} values (one per {fmt.name} code), got "
                               f"{code.numel()}")


def _check_blocksize(blocksize, fmt, op):
    torch._check_value(fmt.is_supported_blocksize(blocksize),
                       lambda: f"{op}: blocksize must be one of {', '.join(map(str, fmt.blocksizes))} for "
                               f"{fmt.name} codes, got {blocksize}")


def _check_absmax(absmax, A, expected, op):
    _check_dtype(absmax, torch.float32, op, "absmax")
    torch._check_value(absmax.numel() == expected,
                       lambda: f"{op}: absmax must hold {expected} values for {A.numel()} elements, got "
                               f"{absmax.numel()}")


@torch.library.register_fake("bitsandbytes::quantize_blockwise")
def _quantize_blockwise_fake(A, code, blocksize):
    op = "quantize_blockwise"
    _check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    _check_blocksize(blocksize, FORMAT_8BIT, op)
    out = torch.empty(A.shape, dtype=torch.uint8, device=A.device)
    absmax = torch.empty(_num_blocks(A.numel(), blocksize), dtype=torch.float32, device=A.device)
    return out, absmax


@torch.library.register_fake("bitsandbytes::dequantize_blockwise")
def _dequantize_blockwise_fake(A, absmax, code, blocksize, dtype):
    op = "dequantize_blockwise"
    _check_dtype(A, torch.uint8, op, "A")
    _check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    _check_blocksize(blocksize, FORMAT_8BIT, op)
    _check_absmax(absmax, A, _num_blocks(A.numel(), blocksize), op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::quantize")
def _quantize_fake(A, code):
    op = "quantize"
    _check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device), torch.empty((), dtype=torch.float32,
                                                                                   device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize")
def _dequantize_fake(A, absmax, code, dtype):
    op = "dequantize"
    _check_dtype(A, torch.uint8, op, "A")
    _check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    _check_absmax(absmax, A, 1, op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::quantize_no_absmax")
def _quantize_no_absmax_fake(A, code):
    op = "quantize_no_absmax"
    _check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize_no_absmax")
def _dequantize_no_absmax_fake(A, code, dtype):
    op = "dequantize_no_absmax"
    _check_dtype(A, torch.uint8, op, "A")
    _check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::estimate_quantiles")
def _estimate_quantiles_fake(A, offset, num_quantiles):
    op = "estimate_quantiles"
    _check_float(A.dtype, op, "A")
    torch._check_value(A.numel() >= QUANTILES_MIN_VALUES,
                       lambda: f"{op}: A must hold at least {QUANTILES_MIN_VALUES} values to estimate quantiles "
                               f"from, got {A.numel()}")
    torch._check_value(1 <= num_quantiles <= QUANTILES_MAX,
                       lambda: f"{op}: num_quantiles must be between 1 and {QUANTILES_MAX}, got {num_quantiles}")
    torch._check_value(0.0 <= offset <= 0.5, lambda: f"{op}: offset must be in [0, 0.5], got {offset}")
    return torch.empty(num_quantiles, dtype=torch.float32, device=A.device)


# LLM.int8() ops (csrc/int8_ops.h).


def _rows(A):
    n = 1
    for s in A.shape[:-1]:
        n *= s
    return n


def _check_matrix_like(A, op, arg):
    torch._check_value(A.dim() >= 1,
                       lambda: f"{op}: {arg} must have at least one dimension (rows x columns), got a scalar")


def _check_vector(t, n, dtype, op, arg):
    _check_dtype(t, dtype, op, arg)
    torch._check_value(t.numel() == n, lambda: f"{op}: {arg} must hold {n} values, got {t.numel()}")


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant")
def _int8_vectorwise_quant_fake(A, threshold, op="int8_vectorwise_quant"):
    _check_float(A.dtype, op, "A")
    _check_matrix_like(A, op, "A")
    return (torch.empty(A.shape, dtype=torch.int8, device=A.device),
            torch.empty(_rows(A), dtype=torch.float32, device=A.device),
            torch.empty(A.shape[-1], dtype=torch.bool, device=A.device))


@torch.library.register_fake("bitsandbytes::int8_vectorwise_dequant")
def _int8_vectorwise_dequant_fake(A, stats):
    op = "int8_vectorwise_dequant"
    _check_dtype(A, torch.int8, op, "A")
    _check_matrix_like(A, op, "A")
    _check_vector(stats, _rows(A), torch.float32, op, "stats")
    return torch.empty(A.shape, dtype=torch.float32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_double_quant")
def _int8_double_quant_fake(A, threshold):
    out_row, row_stats, outliers = _int8_vectorwise_quant_fake(A, threshold, op="int8_double_quant")
    return (out_row, torch.empty(A.shape, dtype=torch.int8, device=A.device), row_stats,
            torch.empty(A.shape[-1], dtype=torch.float32, device=A.device), outliers)


@torch.library.register_fake("bitsandbytes::int8_linear_matmul")
def _int8_linear_matmul_fake(A, B):
    op = "int8_linear_matmul"
    _check_dtype(A, torch.int8, op, "A")
    _check_dtype(B, torch.int8, op, "B")
    _check_matrix_like(A, op, "A")
    torch._check_value(B.dim() == 2, lambda: f"{op}: B must be a 2-D [N, K] weight, got {B.dim()} dimensions")
    torch._check_value(A.shape[-1] == B.shape[1],
                       lambda: f"{op}: A's last dimension (K = {A.shape[-1]}) must equal B's second dimension "
                               f"({B.shape[1]}); B is [N, K]")
    return torch.empty((*A.shape[:-1], B.shape[0]), dtype=torch.int32, device=A.device)


def _check_int32_product(A, row_stats, col_stats, op):
    _check_dtype(A, torch.int32, op, "A")
    _check_matrix_like(A, op, "A")
    _check_vector(row_stats, _rows(A), torch.float32, op, "row_stats")
    _check_vector(col_stats, A.shape[-1], torch.float32, op, "col_stats")


@torch.library.register_fake("bitsandbytes::int8_mm_dequant")
def _int8_mm_dequant_fake(A, row_stats, col_stats, bias, sub_A, sub_B, dtype):
    op = "int8_mm_dequant"
    _check_int32_product(A, row_stats, col_stats, op)
    _check_float(dtype, op, "dtype")
    if bias is not None:
        _check_vector(bias, A.shape[-1], dtype, op, "bias")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant_outliers")
def _int8_vectorwise_quant_outliers_fake(A, threshold):
    out, row_stats, _ = _int8_vectorwise_quant_fake(A, threshold, op="int8_vectorwise_quant_outliers")
    return out, row_stats, torch.empty(A.shape[-1] + 1, dtype=torch.int32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_mm_dequant_outliers")
def _int8_mm_dequant_outliers_fake(A, row_stats, col_stats, bias, X, W, outlier_list, dtype):
    op = "int8_mm_dequant_outliers"
    _check_int32_product(A, row_stats, col_stats, op)
    _check_float(dtype, op, "dtype")
    torch._check_value(W.dim() == 2 and W.shape[0] == A.shape[-1] and W.shape[1] == X.shape[-1],
                       lambda: f"{op}: W must be [N, K] for A [..., N] and X [..., K], got {tuple(W.shape)}")
    torch._check_type(W.dtype in (dtype, torch.int8), lambda: f"{op}: W must be int8 or {dtype}, got {W.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_weight_linear")
def _int8_weight_linear_fake(A, CB, SCB, bias):
    op = "int8_weight_linear"
    _check_float(A.dtype, op, "A")
    _check_dtype(CB, torch.int8, op, "CB")
    torch._check_value(CB.dim() == 2, lambda: f"{op}: CB must be a 2-D [N, K] int8 weight, got {CB.dim()} dimensions")
    torch._check_value(A.shape[-1] == CB.shape[1], lambda: f"{op}: A must be [..., K] and CB [N, K]")
    _check_dtype(SCB, torch.float32, op, "SCB")
    torch._check_value(SCB.numel() == CB.shape[0], lambda: f"{op}: SCB must hold {CB.shape[0]} values, got "
                                                           f"{SCB.numel()}")
    return torch.empty((*A.shape[:-1], CB.shape[0]), dtype=A.dtype, device=A.device)


# int8_weight_linear's Autograd kernel (gradients of A and bias) is in csrc/autograd_kernels.cpp.


@torch.library.register_fake("bitsandbytes::optimizer_update")
def _optimizer_update_fake(algorithm, params, grads, state1, state2, absmax1, absmax2, qmap1, qmap2, gnorm_scale, lr,
                           beta1, beta2, eps, weight_decay, decoupled_weight_decay, bias_correction1, bias_correction2,
                           dampening, nesterov, step, max_unorm, block_wise):
    torch._check_value(len(grads) == len(params), lambda: "optimizer_update: grads must hold one tensor per parameter")
    torch._check_value(len(state1) == len(params),
                       lambda: "optimizer_update: state1 must hold one tensor per parameter")
    return None


@torch.library.register_fake("bitsandbytes::paged_zeros")
def _paged_zeros_fake(like, size, dtype):
    return torch.empty(size, dtype=dtype, device=like.device)


@torch.library.register_fake("bitsandbytes::prefetch_to_device")
def _prefetch_to_device_fake(tensors):
    return None
