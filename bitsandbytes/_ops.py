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
