"""4-bit quantization (NF4, FP4) of QLoRA: block-wise absmax scaling, two codes a byte.

`quantize_4bit` returns the packed codes ([ceil(n/2) bytes, 1], viewed as `quant_storage`) and
a QuantState; `dequantize_4bit` inverts it; `gemv_4bit` multiplies activations by a packed
weight without writing the dequantized weight to memory. With compress_statistics the block
absmax (minus its mean, `offset`) is itself quantized 8-bit block-wise with blocksize 256.

The ops check the tensors (dtype: TypeError; size, block size, quant type, device:
ValueError); these wrappers check what the ops cannot see: Python types, a missing state.
"""
import torch

from .._formats import FLOAT_DTYPES, FORMAT_4BIT, dtype_list
from .._ops import check_out
from ._args import check_tensor, into
from .blockwise import block_absmax, nest_absmax
from .quant_state import QuantState, nested_stats_missing

QUANT_TYPES = ("nf4", "fp4")
NESTED_BLOCKSIZE = 256  # block size of the 8-bit absmax of compressed statistics

# NF4: the 16 quantiles of N(0, 1) scaled to [-1, 1], with an exact zero (QLoRA, Dettmers et al.).
_NF4 = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0)
# FP4 (1 sign, 2 exponent, 1 mantissa bits) by code: bit 3 is the sign; the magnitudes are those
# of the format's values divided by the largest (12).
_FP4_MAGNITUDES = (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0)

_tables = {}


def get_4bit_type(typename, device=None, blocksize=64):
    """The 16-value code table of `typename` ("nf4" or "fp4"), float32, on `device`; entry i is
    the value of code i. `blocksize` is accepted for the reference library's signature."""
    if typename not in QUANT_TYPES:
        raise ValueError(f"get_4bit_type: typename must be one of {QUANT_TYPES}, got {typename!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (typename, device)
    if key not in _tables:
        if typename == "nf4":
            table = torch.tensor(_NF4, dtype=torch.float32)
        else:
            mags = torch.tensor(_FP4_MAGNITUDES, dtype=torch.float32)
            table = torch.cat([mags, -mags]) / 12.0
        _tables[key] = table.to(device)
    return _tables[key].clone()


def _check_quant_type(quant_type, fn):
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"{fn}: quant_type must be one of {QUANT_TYPES}, got {quant_type!r}")


def quantize_4bit(A, absmax=None, out=None, blocksize=64, compress_statistics=False, quant_type="fp4",
                  quant_storage=torch.uint8):
    """Quantizes A block-wise to 4-bit codes of `quant_type`. Returns (packed codes of shape
    [ceil(ceil(n/2) / itemsize), 1] and dtype quant_storage, QuantState)."""
    fn = "quantize_4bit"
    check_tensor(A, "A", fn)
    _check_quant_type(quant_type, fn)
    packed, amax = torch.ops.bitsandbytes.quantize_4bit(A, blocksize, quant_type, quant_storage)
    packed = into(out, packed, "out", fn)
    amax = into(absmax, amax, "absmax", fn)
    code = get_4bit_type(quant_type, device=A.device)
    if not compress_statistics:
        return packed, QuantState(absmax=amax, shape=A.shape, dtype=A.dtype, blocksize=blocksize, code=code,
                                  quant_type=quant_type)
    qabsmax, offset, state2 = nest_absmax(amax, NESTED_BLOCKSIZE)
    return packed, QuantState(absmax=qabsmax, shape=A.shape, dtype=A.dtype, blocksize=blocksize, code=code,
                              quant_type=quant_type, offset=offset, state2=state2)


def quantize_fp4(A, absmax=None, out=None, blocksize=64, compress_statistics=False, quant_storage=torch.uint8):
    return quantize_4bit(A, absmax, out, blocksize, compress_statistics, "fp4", quant_storage)


def quantize_nf4(A, absmax=None, out=None, blocksize=64, compress_statistics=False, quant_storage=torch.uint8):
    return quantize_4bit(A, absmax, out, blocksize, compress_statistics, "nf4", quant_storage)


def dequantize_4bit(A, quant_state=None, absmax=None, out=None, blocksize=64, quant_type="fp4"):
    """Inverse of quantize_4bit: the values in the state's shape and dtype (or `out`'s). Give the
    QuantState, or absmax and `out` (whose shape and dtype say what to produce). A packed tensor
    passed transposed (one row, as `weight.t()` is) gives the transposed result."""
    fn = "dequantize_4bit"
    check_tensor(A, "A", fn)
    if quant_state is None:
        if absmax is None or out is None:
            raise ValueError(f"{fn}: pass quant_state, or absmax and out")
        _check_quant_type(quant_type, fn)
        quant_state = QuantState(absmax=absmax, shape=out.shape, dtype=out.dtype, blocksize=blocksize,
                                 quant_type=quant_type)
    elif not isinstance(quant_state, QuantState):
        raise TypeError(f"{fn}: quant_state must be a QuantState, got {type(quant_state).__name__}")
    elif quant_state.quant_type not in QUANT_TYPES:
        raise ValueError(f"{fn}: quant_state is not a 4-bit state (its quant_type is {quant_state.quant_type!r}, "
                         f"not one of {QUANT_TYPES}); a block-wise 8-bit state is read by dequantize_blockwise")
    dtype = out.dtype if out is not None else quant_state.dtype
    result = torch.ops.bitsandbytes.dequantize_4bit(A, block_absmax(quant_state), quant_state.blocksize,
                                                    quant_state.quant_type, list(quant_state.shape), dtype)
    if A.dim() == 2 and A.shape[0] == 1 and result.dim() == 2:  # the packed weight transposed
        result = result.t()
    return into(out, result, "out", fn)


def dequantize_fp4(A, quant_state=None, absmax=None, out=None, blocksize=64):
    return dequantize_4bit(A, quant_state, absmax, out, blocksize, "fp4")


def dequantize_nf4(A, quant_state=None, absmax=None, out=None, blocksize=64):
    return dequantize_4bit(A, quant_state, absmax, out, blocksize, "nf4")


def gemv_4bit(A, B, out=None, transposed_A=False, transposed_B=False, state=None):
    """A[..., K] @ dequant(B)^T for a packed 4-bit weight B of shape state.shape = [N, K]: the
    weight is read once and dequantized in registers. Returns [..., N] in A's dtype."""
    fn = "gemv_4bit"
    check_tensor(A, "A", fn)
    check_tensor(B, "B", fn)
    if state is None:
        raise ValueError(f"{fn}: state (the QuantState of B from quantize_4bit) is required")
    result = torch.ops.bitsandbytes.gemv_4bit(A, B, list(state.shape), block_absmax(state),
                                              state.code.to(A.device), state.blocksize)
    return into(out, result, "out", fn)


# The op's overload itself: a decode step calls it for every layer, and the namespace lookup
# and the overload packet's dispatch cost about a microsecond of host time a call.
_linear_4bit_op = torch.ops.bitsandbytes.linear_4bit.default


def linear_4bit(A, B, quant_state, bias=None):
    """A[..., K] @ dequant(B)^T (+ bias) for the packed 4-bit weight B of shape quant_state.shape
    = [N, K], with its scales as stored (nested ones are dequantized inside the kernel). A few rows
    of A take the fused kernel; more take dequantize + torch's linear (the op decides)."""
    qs = quant_state
    absmax = qs.absmax
    if bias is not None and bias.dtype != A.dtype:
        bias = bias.to(A.dtype)
    if not qs.nested:
        if absmax.dtype != torch.float32:
            if not absmax.is_floating_point():
                raise ValueError(f"linear_4bit: {nested_stats_missing(absmax)}")
            absmax = absmax.float()
        return _linear_4bit_op(A, B, qs.shape, absmax, qs.code, qs.blocksize, bias)
    s2 = qs.state2
    offset = qs.offset
    if not isinstance(offset, torch.Tensor) or offset.dtype != torch.float32:
        offset = torch.as_tensor(offset, dtype=torch.float32, device=A.device)
    return _linear_4bit_op(A, B, qs.shape, absmax, qs.code, qs.blocksize, bias, s2.code, s2.absmax, offset,
                           s2.blocksize)


# Fake kernels (torch.compile, meta tensors): shapes and dtypes of each op's results.

def _packed_rows(n, storage):
    return -(-(-(-n // 2)) // storage.itemsize)


@torch.library.register_fake("bitsandbytes::quantize_4bit")
def _quantize_4bit_fake(A, blocksize, quant_type, quant_storage):
    op = "quantize_4bit"
    torch._check_type(A.dtype in FLOAT_DTYPES, lambda: f"{op}: A must be {dtype_list(FLOAT_DTYPES)}, got {A.dtype}")
    torch._check_value(FORMAT_4BIT.is_supported_blocksize(blocksize),
                       lambda: f"{op}: blocksize must be one of {', '.join(map(str, FORMAT_4BIT.blocksizes))} for "
                               f"{FORMAT_4BIT.name} codes, got {blocksize}")
    torch._check_value(quant_type in QUANT_TYPES, lambda: f"{op}: quant_type must be nf4 or fp4, got {quant_type}")
    n = A.numel()
    packed = torch.empty((_packed_rows(n, quant_storage), 1), dtype=quant_storage, device=A.device)
    absmax = torch.empty((-(-n // blocksize),), dtype=torch.float32, device=A.device)
    return packed, absmax


@torch.library.register_fake("bitsandbytes::dequantize_4bit")
def _dequantize_4bit_fake(A, absmax, blocksize, quant_type, shape, dtype):
    op = "dequantize_4bit"
    torch._check_type(dtype in FLOAT_DTYPES, lambda: f"{op}: dtype must be {dtype_list(FLOAT_DTYPES)}, got {dtype}")
    torch._check_value(FORMAT_4BIT.is_supported_blocksize(blocksize),
                       lambda: f"{op}: blocksize must be one of {', '.join(map(str, FORMAT_4BIT.blocksizes))} for "
                               f"{FORMAT_4BIT.name} codes, got {blocksize}")
    return torch.empty(shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::gemv_4bit")
def _gemv_4bit_fake(A, B, shapeB, absmax, code, blocksize):
    op = "gemv_4bit"
    torch._check_type(A.dtype in FLOAT_DTYPES, lambda: f"{op}: A must be {dtype_list(FLOAT_DTYPES)}, got {A.dtype}")
    torch._check_value(len(shapeB) == 2 and A.shape[-1] == shapeB[1],
                       lambda: f"{op}: A must be [..., K] for a weight of shape [N, K] = {list(shapeB)}")
    return torch.empty((*A.shape[:-1], shapeB[0]), dtype=A.dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize_4bit.out")
def _dequantize_4bit_out_fake(A, absmax, blocksize, quant_type, shape, dtype, out):
    result = _dequantize_4bit_fake(A, absmax, blocksize, quant_type, shape, dtype)
    check_out(out, result.shape, dtype, A.device, "dequantize_4bit.out")


@torch.library.register_fake("bitsandbytes::gemv_4bit.out")
def _gemv_4bit_out_fake(A, B, shapeB, absmax, code, blocksize, out):
    result = _gemv_4bit_fake(A, B, shapeB, absmax, code, blocksize)
    check_out(out, result.shape, A.dtype, A.device, "gemv_4bit.out")


@torch.library.register_fake("bitsandbytes::linear_4bit")
def _linear_4bit_fake(A, B, shapeB, absmax, code, blocksize, bias=None, nested_code=None, nested_absmax=None,
                      nested_offset=None, nested_blocksize=256):
    op = "linear_4bit"
    torch._check_type(A.dtype in FLOAT_DTYPES, lambda: f"{op}: A must be {dtype_list(FLOAT_DTYPES)}, got {A.dtype}")
    torch._check_value(len(shapeB) == 2 and A.shape[-1] == shapeB[1],
                       lambda: f"{op}: A must be [..., K] for a weight of shape [N, K] = {list(shapeB)}")
    torch._check_value(FORMAT_4BIT.is_supported_blocksize(blocksize),
                       lambda: f"{op}: blocksize must be one of {', '.join(map(str, FORMAT_4BIT.blocksizes))} for "
                               f"{FORMAT_4BIT.name} codes, got {blocksize}")
    return torch.empty((*A.shape[:-1], shapeB[0]), dtype=A.dtype, device=A.device)
