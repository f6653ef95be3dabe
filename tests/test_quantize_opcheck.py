"""Every quantization op passes torch.library.opcheck (schema, fake kernel, autograd
registration and torch.compile tracing agree with the real kernel)."""
import pytest
import torch

import bitsandbytes.functional as F

ops = torch.ops.bitsandbytes


def samples(device):
    code = F.create_dynamic_map().to(device)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for shape in ((4097,), (3, 129)):
            A = torch.randn(shape, dtype=dtype, device=device)
            for bs in (64, 4096) if device == "cuda" else (64, 100, 4096):  # the CPU: any block size
                q, absmax = ops.quantize_blockwise(A, code, bs)
                yield ops.quantize_blockwise.default, (A, code, bs)
                yield ops.dequantize_blockwise.default, (q, absmax, code, bs, dtype)
            q, absmax = ops.quantize(A, code)
            yield ops.quantize.default, (A, code)
            yield ops.dequantize.default, (q, absmax, code, dtype)
            yield ops.quantize_no_absmax.default, (A, code)
            yield ops.dequantize_no_absmax.default, (ops.quantize_no_absmax(A, code), code, dtype)


def test_opcheck(device):
    for op, args in samples(device):
        torch.library.opcheck(op, args)


def test_compiled_round_trip(device):
    code = F.create_dynamic_map().to(device)

    def f(x):
        q, absmax = ops.quantize_blockwise(x, code, 256)
        return ops.dequantize_blockwise(q, absmax, code, 256, x.dtype)

    x = torch.randn(1000, device=device)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), f(x))
