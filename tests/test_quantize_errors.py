"""Bad input gets an error that names the argument, never a crash or a wrong answer: a bad
dtype is a TypeError, a bad value (size, block size, map size, device) a ValueError, raised by
the op whether it is called through bitsandbytes.functional or torch.ops."""
import pytest
import torch

import bitsandbytes as bnb
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


def test_nested_codes_without_their_statistics(device):
    """A nested state's absmax is 8-bit codes: without state2 and offset it must not be read as
    scales (it used to give values hundreds of times too large)."""
    A = torch.randn(40, 64, device=device)
    packed, state = F.quantize_4bit(A, quant_type="nf4", compress_statistics=True)
    codes8, state8 = F.quantize_blockwise(A, blocksize=256, nested=True)
    bare = F.QuantState(absmax=state.absmax, shape=state.shape, code=state.code, blocksize=64, quant_type="nf4",
                        dtype=torch.float32)
    with pytest.raises(ValueError, match="quant_state.absmax holds torch.uint8 codes of nested statistics"):
        F.dequantize_4bit(packed, bare)
    with pytest.raises(ValueError, match="linear_4bit: quant_state.absmax holds torch.uint8 codes"):
        bnb.matmul_4bit(A[:3], packed.t(), bare)
    bare8 = F.QuantState(absmax=state8.absmax, shape=state8.shape, code=state8.code, blocksize=256,
                         dtype=torch.float32)
    with pytest.raises(ValueError, match="absmax holds torch.uint8 codes"):
        F.dequantize_blockwise(codes8, bare8)
    # from a state dict: every nested entry or none
    for drop in ("nested_absmax", "nested_quant_map", "nested_offset"):
        d = state.as_dict(packed=True)
        if drop in d:
            d.pop(drop)
        else:  # a plain value: inside the packed entry
            d = {k: v for k, v in state.as_dict().items() if k != drop}
        with pytest.raises(ValueError, match=f"nested statistics are incomplete.*without \\['{drop}'\\]"):
            F.QuantState.from_dict(d, device)
    d = {k: v for k, v in state.as_dict().items() if not k.startswith("nested_")}
    with pytest.raises(ValueError, match="absmax holds torch.uint8 codes"):
        F.QuantState.from_dict(d, device)
    again = F.QuantState.from_dict(state.as_dict(packed=True), device)
    assert torch.equal(F.dequantize_4bit(packed, again), F.dequantize_4bit(packed, state))


def test_quant_state_from_bad_dict():
    with pytest.raises(TypeError, match="qs_dict must be a dict"):
        F.QuantState.from_dict(None, "cpu")
    _, state = F.quantize_4bit(torch.randn(64), quant_type="nf4")
    d = state.as_dict(packed=True)
    key = next(k for k in d if "bitsandbytes__" in k)
    d[key] = torch.tensor([1, 2, 3], dtype=torch.uint8)
    with pytest.raises(ValueError, match=f"the packed entry '{key}' is not a serialized state"):
        F.QuantState.from_dict(d, "cpu")


@pytest.mark.parametrize("storage", [torch.uint8, torch.bfloat16, torch.float32])
def test_packed_codes_of_another_size(device, storage):
    """Codes of a larger tensor with a smaller tensor's state, or an unquantized weight passed as
    packed codes, are refused; the codes as made (any storage, or viewed as bytes) are taken."""
    W, W16, A = (torch.randn(*s, device=device) for s in ((32, 64), (16, 64), (5, 64)))
    q, s = F.quantize_4bit(W, quant_storage=storage)
    _, s16 = F.quantize_4bit(W16, quant_storage=storage)
    with pytest.raises(ValueError, match="holds 1024 bytes of packed codes but 1024 values are 512 bytes"):
        F.dequantize_4bit(q, s16)
    with pytest.raises(ValueError, match="B holds 1024 bytes of packed codes but 1024 values are 512 bytes"):
        bnb.matmul_4bit(A, q.t(), s16)
    with pytest.raises(ValueError, match="B holds 4096 bytes of packed codes but 2048 values are 1024 bytes"):
        bnb.matmul_4bit(A, W.half().t(), s)
    for shape in ((3, 5), (7, 9), (1,), (33, 64)):
        x = torch.randn(*shape, device=device)
        qx, sx = F.quantize_4bit(x, quant_storage=storage)
        assert torch.equal(F.dequantize_4bit(qx.view(torch.uint8), sx), F.dequantize_4bit(qx, sx))


def test_wrong_kind_of_state():
    codes8, state8 = F.quantize_blockwise(torch.randn(300))
    with pytest.raises(TypeError, match="dequantize_blockwise: quant_state must be a QuantState or an \\(absmax, "
                                        "code\\) pair, got str"):
        F.dequantize_blockwise(codes8, "foo")
    with pytest.raises(ValueError, match="dequantize_4bit: quant_state is not a 4-bit state \\(its quant_type is "
                                         "None"):
        F.dequantize_4bit(codes8, state8)


def test_linear4bit_compute_dtype_is_checked():
    with pytest.raises(TypeError, match="Linear4bit: compute_dtype must be None or one of float32, float16 or "
                                        "bfloat16, got torch.int8"):
        bnb.nn.Linear4bit(8, 4, compute_dtype=torch.int8)
    assert bnb.nn.Linear4bit(8, 4, compute_dtype=torch.bfloat16).compute_dtype == torch.bfloat16
