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


@torch.library.register_fake("bitsandbytes::optimizer_update")
def _optimizer_update_fake(algorithm, params, grads, state1, state2, absmax1, absmax2, qmap1, qmap2, gnorm_scale,
                           workspace, table, table_host, lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay,
                           bias_correction1, bias_correction2, dampening, nesterov, step, max_unorm, block_wise):
    torch._check(len(grads) == len(params), lambda: "grads must hold one tensor per parameter")
    torch._check(len(state1) == len(params), lambda: "state1 must hold one tensor per parameter")
    return None


@torch.library.register_fake("bitsandbytes::paged_zeros")
def _paged_zeros_fake(like, size, dtype):
    return torch.empty(size, dtype=dtype, device=like.device)


@torch.library.register_fake("bitsandbytes::prefetch_to_device")
def _prefetch_to_device_fake(tensors):
    return None
