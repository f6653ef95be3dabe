"""One owner for argument checks: the same bad input raises the same exception type through
the Python wrapper (bitsandbytes.functional), through torch.ops directly and through the
fake kernel torch.compile uses (meta tensors). A bad dtype is a TypeError; a bad value
(shape, size, block size, map size, device) a ValueError; both name the op."""
import pytest
import torch

import bitsandbytes.functional as F

ops = torch.ops.bitsandbytes


def _f32(*shape, device):
    return torch.randn(*shape, device=device)


def _u8(*shape, device):
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)


def _i8(*shape, device):
    return torch.randint(-127, 128, shape, dtype=torch.int8, device=device)


def _code(n=256, dtype=torch.float32, device="cpu"):
    return torch.linspace(-1, 1, n, dtype=dtype, device=device)


# name: (exception, wrapper call, op call); each call takes the device. The op call builds
# the same bad input as the wrapper call, as the wrapper would hand it to the op.
CASES = {
    "quantize_blockwise/A dtype": (
        TypeError,
        lambda d: F.quantize_blockwise(torch.arange(100, device=d)),
        lambda d: ops.quantize_blockwise(torch.arange(100, device=d), _code(device=d), 4096)),
    "quantize_blockwise/blocksize": (
        ValueError,
        lambda d: F.quantize_blockwise(_f32(100, device=d), blocksize=0),
        lambda d: ops.quantize_blockwise(_f32(100, device=d), _code(device=d), 0)),
    "quantize_blockwise/code size": (
        ValueError,
        lambda d: F.quantize_blockwise(_f32(100, device=d), code=_code(16, device=d)),
        lambda d: ops.quantize_blockwise(_f32(100, device=d), _code(16, device=d), 4096)),
    "quantize_blockwise/code dtype": (
        TypeError,
        lambda d: F.quantize_blockwise(_f32(100, device=d), code=_code(dtype=torch.float64, device=d)),
        lambda d: ops.quantize_blockwise(_f32(100, device=d), _code(dtype=torch.float64, device=d), 4096)),
    "dequantize_blockwise/A dtype": (
        TypeError,
        lambda d: F.dequantize_blockwise(_f32(100, device=d), absmax=_f32(2, device=d), blocksize=64),
        lambda d: ops.dequantize_blockwise(_f32(100, device=d), _f32(2, device=d), _code(device=d), 64,
                                           torch.float32)),
    "dequantize_blockwise/absmax size": (
        ValueError,
        lambda d: F.dequantize_blockwise(_u8(100, device=d), absmax=_f32(3, device=d), blocksize=64),
        lambda d: ops.dequantize_blockwise(_u8(100, device=d), _f32(3, device=d), _code(device=d), 64,
                                           torch.float32)),
    "dequantize_blockwise/blocksize": (
        ValueError,
        lambda d: F.dequantize_blockwise(_u8(100, device=d), absmax=_f32(2, device=d), blocksize=0),
        lambda d: ops.dequantize_blockwise(_u8(100, device=d), _f32(2, device=d), _code(device=d), 0,
                                           torch.float32)),
    "dequantize_blockwise/code size": (
        ValueError,
        lambda d: F.dequantize_blockwise(_u8(100, device=d), absmax=_f32(2, device=d), code=_code(255, device=d),
                                         blocksize=64),
        lambda d: ops.dequantize_blockwise(_u8(100, device=d), _f32(2, device=d), _code(255, device=d), 64,
                                           torch.float32)),
    "quantize/A dtype": (
        TypeError,
        lambda d: F.quantize(torch.arange(10, device=d)),
        lambda d: ops.quantize(torch.arange(10, device=d), _code(device=d))),
    "quantize/code size": (
        ValueError,
        lambda d: F.quantize(_f32(10, device=d), code=_code(16, device=d)),
        lambda d: ops.quantize(_f32(10, device=d), _code(16, device=d))),
    "dequantize/A dtype": (
        TypeError,
        lambda d: F.dequantize(_f32(10, device=d), absmax=_f32(1, device=d).reshape(())),
        lambda d: ops.dequantize(_f32(10, device=d), _f32(1, device=d).reshape(()), _code(device=d),
                                 torch.float32)),
    "dequantize/absmax size": (
        ValueError,
        lambda d: F.dequantize(_u8(10, device=d), absmax=_f32(2, device=d)),
        lambda d: ops.dequantize(_u8(10, device=d), _f32(2, device=d), _code(device=d), torch.float32)),
    "quantize_no_absmax/A dtype": (
        TypeError,
        lambda d: F.quantize_no_absmax(torch.arange(10, device=d), _code(device=d)),
        lambda d: ops.quantize_no_absmax(torch.arange(10, device=d), _code(device=d))),
    "quantize_no_absmax/code size": (
        ValueError,
        lambda d: F.quantize_no_absmax(_f32(10, device=d), _code(16, device=d)),
        lambda d: ops.quantize_no_absmax(_f32(10, device=d), _code(16, device=d))),
    "dequantize_no_absmax/A dtype": (
        TypeError,
        lambda d: F.dequantize_no_absmax(_f32(10, device=d), _code(device=d)),
        lambda d: ops.dequantize_no_absmax(_f32(10, device=d), _code(device=d), torch.float32)),
    "dequantize_no_absmax/code size": (
        ValueError,
        lambda d: F.dequantize_no_absmax(_u8(10, device=d), _code(16, device=d)),
        lambda d: ops.dequantize_no_absmax(_u8(10, device=d), _code(16, device=d), torch.float32)),
    "estimate_quantiles/A dtype": (
        TypeError,
        lambda d: F.estimate_quantiles(torch.arange(1000, device=d)),
        lambda d: ops.estimate_quantiles(torch.arange(1000, device=d), 1 / 512, 256)),
    "estimate_quantiles/too few values": (
        ValueError,
        lambda d: F.estimate_quantiles(_f32(100, device=d)),
        lambda d: ops.estimate_quantiles(_f32(100, device=d), 1 / 512, 256)),
    "estimate_quantiles/num_quantiles": (
        ValueError,
        lambda d: F.estimate_quantiles(_f32(1000, device=d), num_quantiles=300),
        lambda d: ops.estimate_quantiles(_f32(1000, device=d), 1 / 512, 300)),
    "estimate_quantiles/offset": (
        ValueError,
        lambda d: F.estimate_quantiles(_f32(1000, device=d), offset=0.75),
        lambda d: ops.estimate_quantiles(_f32(1000, device=d), 0.75, 256)),
    "int8_vectorwise_quant/A dtype": (
        TypeError,
        lambda d: F.int8_vectorwise_quant(_i8(4, 8, device=d)),
        lambda d: ops.int8_vectorwise_quant(_i8(4, 8, device=d), 0.0)),
    "int8_vectorwise_quant/scalar": (
        ValueError,
        lambda d: F.int8_vectorwise_quant(torch.tensor(1.0, device=d)),
        lambda d: ops.int8_vectorwise_quant(torch.tensor(1.0, device=d), 0.0)),
    "int8_vectorwise_dequant/A dtype": (
        TypeError,
        lambda d: F.int8_vectorwise_dequant(_f32(4, 8, device=d), _f32(4, device=d)),
        lambda d: ops.int8_vectorwise_dequant(_f32(4, 8, device=d), _f32(4, device=d))),
    "int8_vectorwise_dequant/stats size": (
        ValueError,
        lambda d: F.int8_vectorwise_dequant(_i8(4, 8, device=d), _f32(3, device=d)),
        lambda d: ops.int8_vectorwise_dequant(_i8(4, 8, device=d), _f32(3, device=d))),
    "int8_double_quant/A dtype": (
        TypeError,
        lambda d: F.int8_double_quant(_i8(4, 8, device=d)),
        lambda d: ops.int8_double_quant(_i8(4, 8, device=d), 0.0)),
    "int8_double_quant/scalar": (
        ValueError,
        lambda d: F.int8_double_quant(torch.tensor(1.0, device=d)),
        lambda d: ops.int8_double_quant(torch.tensor(1.0, device=d), 0.0)),
    "int8_linear_matmul/B dtype": (
        TypeError,
        lambda d: F.int8_linear_matmul(_i8(4, 8, device=d), _f32(3, 8, device=d)),
        lambda d: ops.int8_linear_matmul(_i8(4, 8, device=d), _f32(3, 8, device=d))),
    "int8_linear_matmul/K": (
        ValueError,
        lambda d: F.int8_linear_matmul(_i8(4, 8, device=d), _i8(3, 7, device=d)),
        lambda d: ops.int8_linear_matmul(_i8(4, 8, device=d), _i8(3, 7, device=d))),
    "int8_mm_dequant/A dtype": (
        TypeError,
        lambda d: F.int8_mm_dequant(_f32(4, 5, device=d), _f32(4, device=d), _f32(5, device=d)),
        lambda d: ops.int8_mm_dequant(_f32(4, 5, device=d), _f32(4, device=d), _f32(5, device=d))),
    "int8_mm_dequant/col_stats size": (
        ValueError,
        lambda d: F.int8_mm_dequant(torch.zeros(4, 5, dtype=torch.int32, device=d), _f32(4, device=d),
                                    _f32(6, device=d)),
        lambda d: ops.int8_mm_dequant(torch.zeros(4, 5, dtype=torch.int32, device=d), _f32(4, device=d),
                                      _f32(6, device=d))),
    "int8_weight_linear/CB dtype": (
        TypeError,
        lambda d: F.int8_weight_linear(_f32(4, 8, device=d), _f32(3, 8, device=d), _f32(3, device=d)),
        lambda d: ops.int8_weight_linear(_f32(4, 8, device=d), _f32(3, 8, device=d), _f32(3, device=d), None)),
    "int8_weight_linear/SCB size": (
        ValueError,
        lambda d: F.int8_weight_linear(_f32(4, 8, device=d), _i8(3, 8, device=d), _f32(4, device=d)),
        lambda d: ops.int8_weight_linear(_f32(4, 8, device=d), _i8(3, 8, device=d), _f32(4, device=d), None)),
}

# Fake kernels that do not check these inputs yet, or raise another type for them.
FAKE_EXCEPTIONS = set()


def _raised(call, device):
    try:
        call(device)
    except Exception as e:  # noqa: BLE001 (the type is what is compared)
        return e
    return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrapper_and_op_raise_the_same_type(case, device):
    want, wrapper_call, op_call = CASES[case]
    op = case.split("/")[0]
    from_op = _raised(op_call, device)
    from_wrapper = _raised(wrapper_call, device)
    assert isinstance(from_op, want), f"torch.ops raised {from_op!r}"
    assert isinstance(from_wrapper, want), f"the wrapper raised {from_wrapper!r}"
    assert str(from_op).startswith(op + ":") and str(from_wrapper).startswith(op + ":")


@pytest.mark.parametrize("case", sorted(CASES))
def test_fake_kernel_raises_the_same_type(case):
    if case in FAKE_EXCEPTIONS:
        pytest.skip("this fake kernel does not follow the convention yet")
    want, _, op_call = CASES[case]
    from_fake = _raised(op_call, "meta")  # meta tensors run the fake kernel
    assert isinstance(from_fake, want), f"the fake kernel raised {from_fake!r}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_mismatch_is_a_value_error():
    A = torch.randn(1000, device="cuda")
    q, state = F.quantize_blockwise(A, blocksize=256)
    for call in (lambda: ops.dequantize_blockwise(q, state.absmax.cpu(), state.code, 256, torch.float32),
                 lambda: F.dequantize_blockwise(q, absmax=state.absmax.cpu(), blocksize=256),
                 lambda: F.int8_linear_matmul(_i8(4, 8, device="cuda"), _i8(3, 8, device="cpu"))):
        with pytest.raises(ValueError, match="same device"):
            call()
