"""Loads the compiled operator library and registers the fake kernels torch.compile uses.

Each op lives in the `torch.ops.bitsandbytes` namespace; its schema is in csrc/schemas.cpp,
its CPU and CUDA kernels in csrc/*_cpu.cpp and csrc/*_cuda.cpp.
"""
import torch

from . import _C  # noqa: F401  (loading the library registers the ops)

BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _num_blocks(n, blocksize):
    return -(n // -blocksize)


@torch.library.register_fake("bitsandbytes::quantize_blockwise")
def _quantize_blockwise_fake(A, code, blocksize):
    torch._check(blocksize in BLOCKSIZES, lambda: f"blocksize must be one of {BLOCKSIZES}, got {blocksize}")
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float32, float16 or bfloat16, got {A.dtype}")
    torch._check(code.numel() == 256, lambda: "code must hold 256 values")
    out = torch.empty(A.shape, dtype=torch.uint8, device=A.device)
    absmax = torch.empty(_num_blocks(A.numel(), blocksize), dtype=torch.float32, device=A.device)
    return out, absmax


@torch.library.register_fake("bitsandbytes::dequantize_blockwise")
def _dequantize_blockwise_fake(A, absmax, code, blocksize, dtype):
    torch._check(blocksize in BLOCKSIZES, lambda: f"blocksize must be one of {BLOCKSIZES}, got {blocksize}")
    torch._check(A.dtype == torch.uint8, lambda: f"A must be uint8, got {A.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::quantize")
def _quantize_fake(A, code):
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float32, float16 or bfloat16, got {A.dtype}")
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device), torch.empty((), dtype=torch.float32,
                                                                                   device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize")
def _dequantize_fake(A, absmax, code, dtype):
    torch._check(A.dtype == torch.uint8, lambda: f"A must be uint8, got {A.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::quantize_no_absmax")
def _quantize_no_absmax_fake(A, code):
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float32, float16 or bfloat16, got {A.dtype}")
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize_no_absmax")
def _dequantize_no_absmax_fake(A, code, dtype):
    torch._check(A.dtype == torch.uint8, lambda: f"A must be uint8, got {A.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::estimate_quantiles")
def _estimate_quantiles_fake(A, offset, num_quantiles):
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float32, float16 or bfloat16, got {A.dtype}")
    torch._check(A.numel() >= 256, lambda: f"A must hold at least 256 values, got {A.numel()}")
    torch._check(1 <= num_quantiles <= 256, lambda: f"num_quantiles must be between 1 and 256, got {num_quantiles}")
    return torch.empty(num_quantiles, dtype=torch.float32, device=A.device)
# LLM.int8() ops (csrc/int8_ops.h).
def _rows(A):
    n = 1
    for s in A.shape[:-1]:
        n *= s
    return n


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant")
def _int8_vectorwise_quant_fake(A, threshold):
    torch._check(A.dtype in FLOAT_DTYPES, lambda: f"A must be float32, float16 or bfloat16, got {A.dtype}")
    torch._check(A.dim() >= 1, lambda: "A must have at least one dimension")
    return (torch.empty(A.shape, dtype=torch.int8, device=A.device),
            torch.empty(_rows(A), dtype=torch.float32, device=A.device),
            torch.empty(A.shape[-1], dtype=torch.bool, device=A.device))


@torch.library.register_fake("bitsandbytes::int8_vectorwise_dequant")
def _int8_vectorwise_dequant_fake(A, stats):
    torch._check(A.dtype == torch.int8, lambda: f"A must be int8, got {A.dtype}")
    return torch.empty(A.shape, dtype=torch.float32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_double_quant")
def _int8_double_quant_fake(A, threshold):
    out_row, row_stats, outliers = _int8_vectorwise_quant_fake(A, threshold)
    return (out_row, torch.empty(A.shape, dtype=torch.int8, device=A.device), row_stats,
            torch.empty(A.shape[-1], dtype=torch.float32, device=A.device), outliers)


@torch.library.register_fake("bitsandbytes::int8_linear_matmul")
def _int8_linear_matmul_fake(A, B):
    torch._check(A.dtype == torch.int8 and B.dtype == torch.int8, lambda: "A and B must be int8")
    torch._check(B.dim() == 2 and A.shape[-1] == B.shape[1], lambda: "A must be [..., K] and B [N, K]")
    return torch.empty((*A.shape[:-1], B.shape[0]), dtype=torch.int32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_mm_dequant")
def _int8_mm_dequant_fake(A, row_stats, col_stats, bias, sub_A, sub_B, dtype):
    torch._check(A.dtype == torch.int32, lambda: f"A must be int32, got {A.dtype}")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_vectorwise_quant_outliers")
def _int8_vectorwise_quant_outliers_fake(A, threshold):
    out, row_stats, _ = _int8_vectorwise_quant_fake(A, threshold)
    return out, row_stats, torch.empty(A.shape[-1] + 1, dtype=torch.int32, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_mm_dequant_outliers")
def _int8_mm_dequant_outliers_fake(A, row_stats, col_stats, bias, X, W, outlier_list, dtype):
    torch._check(A.dtype == torch.int32, lambda: f"A must be int32, got {A.dtype}")
    torch._check(W.dim() == 2 and W.shape[0] == A.shape[-1] and W.shape[1] == X.shape[-1],
                 lambda: "W must be [N, K] for A [..., N] and X [..., K]")
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::int8_weight_linear")
def _int8_weight_linear_fake(A, CB, SCB, bias):
    torch._check(CB.dtype == torch.int8 and CB.dim() == 2, lambda: "CB must be a 2-D int8 weight")
    torch._check(A.shape[-1] == CB.shape[1], lambda: "A must be [..., K] and CB [N, K]")
    return torch.empty((*A.shape[:-1], CB.shape[0]), dtype=A.dtype, device=A.device)


# int8_weight_linear's Autograd kernel (gradients of A and bias) is in csrc/autograd_kernels.cpp.


@torch.library.register_fake("bitsandbytes::optimizer_update")
def _optimizer_update_fake(algorithm, params, grads, state1, state2, absmax1, absmax2, qmap1, qmap2, gnorm_scale, lr,
                           beta1, beta2, eps, weight_decay, decoupled_weight_decay, bias_correction1, bias_correction2,
                           dampening, nesterov, step, max_unorm, block_wise):
    torch._check(len(grads) == len(params), lambda: "grads must hold one tensor per parameter")
    torch._check(len(state1) == len(params), lambda: "state1 must hold one tensor per parameter")
    return None


@torch.library.register_fake("bitsandbytes::paged_zeros")
def _paged_zeros_fake(like, size, dtype):
    return torch.empty(size, dtype=dtype, device=like.device)


@torch.library.register_fake("bitsandbytes::prefetch_to_device")
def _prefetch_to_device_fake(tensors):
    return None
