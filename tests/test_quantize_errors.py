"""Bad input gets an error that names the argument, never a crash or a wrong answer: a bad
dtype is a TypeError, a bad value (size, block size, map size, device) a ValueError, raised by
the op whether it is called through bitsandbytes.functional or torch.ops."""
import pytest
import torch

import bitsandbytes.functional as F

ops = torch.ops.bitsandbytes


def test_wrong_input_dtype(device):
    for bad in (torch.arange(10, device=device), torch.zeros(10, dtype=torch.float64, device=device)):
        with pytest.raises(TypeError, match="A must be float32, float16 or bfloat16"):
            F.quantize_blockwise(bad)
        with pytest.raises(TypeError, match="A must be float32"):
            F.quantize(bad)
    with pytest.raises(TypeError, match="A must be Byte"):
        F.dequantize_blockwise(torch.zeros(10, device=device), absmax=torch.ones(1, device=device))
    with pytest.raises(TypeError, match="dtype must be float32"):
        ops.dequantize_blockwise(torch.zeros(10, dtype=torch.uint8, device=device), torch.ones(1, device=device),
                                 F.create_dynamic_map().to(device), 4096, torch.int32)


def test_unsupported_blocksize(device):
    """CUDA takes the powers of two 64..4096; the CPU any positive block size."""
    A = torch.randn(100, device=device)
    for bs in (0, -64):
        with pytest.raises(ValueError, match="blocksize must be"):
            F.quantize_blockwise(A, blocksize=bs)
    if device == "cpu":
        return
    for bs in (32, 100, 8192):
        with pytest.raises(ValueError, match="blocksize must be one of 64, 128, 256, 512, 1024, 2048, 4096"):
            F.quantize_blockwise(A, blocksize=bs)
    q, state = F.quantize_blockwise(A, blocksize=64)
    with pytest.raises(ValueError, match="blocksize must be one of"):
        F.dequantize_blockwise(q, absmax=state.absmax, blocksize=96)


def test_bad_code(device):
    A = torch.randn(100, device=device)
    with pytest.raises(ValueError, match="quantize_blockwise: code must hold 256 values"):
        F.quantize_blockwise(A, code=torch.linspace(-1, 1, 255, device=device))
    with pytest.raises(TypeError, match="quantize_blockwise: code must be Float"):
        F.quantize_blockwise(A, code=torch.linspace(-1, 1, 256, device=device, dtype=torch.float64))
    with pytest.raises(ValueError, match="code must hold 256 values"):
        ops.quantize_blockwise(A, torch.zeros(16, device=device), 64)
    with pytest.raises(TypeError, match="code must be Float"):
        ops.quantize_blockwise(A, torch.zeros(256, device=device, dtype=torch.float16), 64)


def test_absmax_wrong_length(device):
    A = torch.randn(1000, device=device)
    q, state = F.quantize_blockwise(A, blocksize=64)
    with pytest.raises(ValueError, match="absmax must hold 16 values"):
        F.dequantize_blockwise(q, absmax=state.absmax[:-1], blocksize=64)
    with pytest.raises(ValueError, match="absmax must hold 1 values"):
        F.dequantize(q, absmax=torch.ones(2, device=device))


def test_out_of_wrong_shape_or_dtype(device):
    A = torch.randn(1000, device=device)
    with pytest.raises(ValueError, match="out must be a torch.uint8 tensor of shape"):
        F.quantize_blockwise(A, out=torch.empty(999, dtype=torch.uint8, device=device))
    with pytest.raises(ValueError, match="out must be a torch.uint8"):
        F.quantize_blockwise(A, out=torch.empty(1000, dtype=torch.int8, device=device))
    with pytest.raises(ValueError, match="absmax must be"):
        F.quantize_blockwise(A, absmax=torch.empty(3, device=device), blocksize=4096 // 4)
    q, state = F.quantize_blockwise(A)
    with pytest.raises(ValueError, match="out must be"):
        F.dequantize_blockwise(q, state, out=torch.empty(10, 100, device=device))
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        F.quantize_blockwise([1.0, 2.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_mismatch():
    A = torch.randn(1000, device="cuda")
    q, state = F.quantize_blockwise(A, blocksize=256)
    with pytest.raises(ValueError, match="absmax is on cpu but A is on cuda"):
        ops.dequantize_blockwise(q, state.absmax.cpu(), state.code, 256, torch.float32)
    with pytest.raises(ValueError, match="code is on cpu but A is on cuda"):
        ops.quantize_blockwise(A, state.code.cpu(), 256)
    with pytest.raises(ValueError, match="absmax is on cpu but A is on cuda"):
        F.dequantize_blockwise(q, absmax=state.absmax.cpu(), blocksize=256)
    # A code on the other device is moved for the caller: the right answer, not an error.
    q2, _ = F.quantize_blockwise(A, code=F.create_dynamic_map(), blocksize=256)
    assert torch.equal(q, q2)
