"""8-bit quantization with a 256-value map: block-wise, tensor-wise and unscaled.

The ops check the tensors (dtype: TypeError; size, block size, map size, device: ValueError);
these wrappers check only what the ops cannot see: Python types and which keywords go together."""
import torch

from .._formats import FORMAT_8BIT
from .._ops import check_dtype, check_float, check_out
from ._args import check_tensor, into
from .maps import create_dynamic_map, create_optimizer_4bit_map
from .quant_state import QuantState, nested_stats_missing

_default_codes = {}


def default_code(device, signed=True, bits=8):
    """The dynamic map (signed or unsigned) on `device`, made once per device; bits=4: the maps
    of 4-bit optimizer state (create_optimizer_4bit_map)."""
    key = (torch.device(device), signed, bits)
    if key not in _default_codes:
        code = create_dynamic_map(signed=signed) if bits == 8 else create_optimizer_4bit_map(signed=signed)
        _default_codes[key] = code.to(key[0])
    return _default_codes[key]


def _code_for(code, A, fn):
    # The map's dtype and size are the op's to check (csrc/ops/checks.h); a map on another device is
    # moved for the caller, as earlier releases did. Its values are checked here, once per
    # version of the tensor: finite.
    if code is None:
        return default_code(A.device)
    check_tensor(code, "code", fn)
    check_code_values(code, fn, search=False)
    return code.to(A.device)


def _searched_code_for(code, A, fn):
    """(the map as _code_for gives it, the map quantization searches, the way back to the
    first's indices or None): _search_order, found on the caller's own tensor (so that a map
    moved to A's device for each call is still sorted only once)."""
    moved = _code_for(code, A, fn)
    ordered, back = _search_order(code if code is not None else moved)
    if back is None:
        return moved, moved, None
    return moved, ordered.to(A.device), back.to(A.device)


def _search_order(code):
    """The map quantization searches (ascending) for `code`, and the way back to `code`'s own
    indices: None where `code` is ascending, else the uint8 position in `code` of each entry of
    the sorted map. Maps of fewer than 8 bits fill their 256 entries with zeros that need not sit
    in order (create_linear_map puts them between its halves, beside a value that rounds to
    -4.5e-8); the nearest entry of the sorted map is a nearest entry of the map itself. Found
    once per version of the tensor."""
    if torch.compiler.is_compiling():
        return code, None  # a traced map has no values to read
    cached = getattr(code, "_bnb_search", None)
    if cached is not None and cached[0] == code._version:
        return cached[1] if cached[1] is not None else code, cached[2]
    if code.numel() < 2 or bool((code[1:] >= code[:-1]).all()):
        ordered, back = None, None
    else:
        ordered, position = torch.sort(code, stable=True)
        back = position.to(torch.uint8)
    code._bnb_search = (code._version, ordered, back)
    return ordered if ordered is not None else code, back


def _codes_of(codes, back):
    """Codes found in the sorted map, as indices into the caller's map (_search_order)."""
    return codes if back is None else back[codes.int()]


def check_code_values(code, fn, search, name="code"):
    """A ValueError naming `name` where a map's values cannot be quantized into: not finite, or
    (search: a kernel searches it as it is, as the optimizers do their state's maps) not
    ascending. Checked once per version of the tensor."""
    if torch.compiler.is_compiling():
        return  # a traced map has no values to read
    key = (code._version, search)
    if getattr(code, "_bnb_checked", None) == key or code.dtype != torch.float32:
        return  # checked already, or a dtype the op rejects with its own error
    if not bool(torch.isfinite(code).all()):
        raise ValueError(f"{fn}: {name} must hold finite values only, got NaN or Inf")
    if search and code.numel() > 1 and not bool((code[1:] >= code[:-1]).all()):
        raise ValueError(f"{fn}: {name} must be sorted in ascending order (quantization searches it)")
    code._bnb_checked = key


def quantize_blockwise(A, code=None, absmax=None, out=None, blocksize=4096, nested=False):
    """Quantizes A in blocks of `blocksize` values, each scaled by its absmax, to the nearest
    entry of `code` (default: the signed dynamic map). Returns (uint8 codes shaped like A,
    QuantState). With nested=True the absmax vector is quantized again (less memory)."""
    fn = "quantize_blockwise"
    check_tensor(A, "A", fn)
    code, searched, back = _searched_code_for(code, A, fn)
    codes, amax = torch.ops.bitsandbytes.quantize_blockwise(A, searched, blocksize)
    codes = _codes_of(codes, back)
    amax = into(absmax, amax, "absmax", fn)
    codes = into(out, codes, "out", fn)
    if not nested:
        return codes, QuantState(absmax=amax, shape=A.shape, code=code, blocksize=blocksize, dtype=A.dtype)
    qabsmax, offset, state2 = nest_absmax(amax, blocksize)
    return codes, QuantState(absmax=qabsmax, shape=A.shape, code=code, blocksize=blocksize, dtype=A.dtype,
                             offset=offset, state2=state2)


def nest_absmax(amax, blocksize):
    """The nested form of a block absmax vector: (8-bit codes of amax - offset, offset, their
    QuantState). A block marked as holding a non-finite value (a negative absmax) is stored as
    NaN: a lossy 8-bit absmax cannot keep the mark's sign reliably, so the whole block
    dequantizes to NaN instead."""
    marked = torch.signbit(amax)
    if marked.any():
        amax = amax.masked_fill(marked, float("nan"))
        offset = torch.nan_to_num(amax.nanmean(), nan=0.0)
    else:
        offset = amax.mean() if amax.numel() else amax.new_zeros(())
    qabsmax, state2 = quantize_blockwise(amax - offset, blocksize=blocksize)
    return qabsmax, offset, state2


def block_absmax(quant_state):
    """The float32 absmax of each block of a QuantState (dequantized when nested). A nested
    value that rounds below zero is an all-but-zero block, not a marked one: it reads as +0.0."""
    absmax = quant_state.absmax
    if not isinstance(absmax, torch.Tensor):
        raise TypeError(f"quant_state.absmax must be a tensor, got {type(absmax).__name__}")
    if quant_state.nested:
        absmax = (dequantize_blockwise(absmax, quant_state.state2) + quant_state.offset).clamp_min(0.0) + 0.0
    elif not absmax.is_floating_point():
        raise ValueError(nested_stats_missing(absmax))
    return absmax if absmax.dtype == torch.float32 else absmax.float()


def dequantize_blockwise(A, quant_state=None, absmax=None, code=None, out=None, blocksize=4096, nested=False):
    """Inverse of quantize_blockwise. Give the QuantState it returned, or absmax (and code,
    blocksize) directly; the result has the original dtype, or `out`'s dtype when given."""
    fn = "dequantize_blockwise"
    check_tensor(A, "A", fn)
    if isinstance(quant_state, (tuple, list)):  # the older (absmax, code) pair
        absmax, code = quant_state
        quant_state = None
    if quant_state is None:
        if absmax is None:
            raise ValueError(f"{fn}: pass quant_state, or absmax (with code and blocksize)")
        quant_state = QuantState(absmax=absmax, code=_code_for(code, A, fn), blocksize=blocksize,
                                 dtype=out.dtype if out is not None else torch.float32)
    elif not isinstance(quant_state, QuantState):
        raise TypeError(f"{fn}: quant_state must be a QuantState or an (absmax, code) pair, got "
                        f"{type(quant_state).__name__}")
    amax = block_absmax(quant_state)
    dtype = out.dtype if out is not None else quant_state.dtype
    result = torch.ops.bitsandbytes.dequantize_blockwise(A, amax, _code_for(quant_state.code, A, fn),
                                                         quant_state.blocksize, dtype)
    return into(out, result, "out", fn)


def quantize(A, code=None, out=None):
    """Quantizes A with one absmax for the whole tensor: returns (codes, (absmax, code))."""
    fn = "quantize"
    check_tensor(A, "A", fn)
    code, searched, back = _searched_code_for(code, A, fn)
    codes, amax = torch.ops.bitsandbytes.quantize(A, searched)
    return into(out, _codes_of(codes, back), "out", fn), (amax, code)


def dequantize(A, state=None, absmax=None, code=None, out=None):
    """Inverse of quantize: float32 (or `out`'s dtype)."""
    fn = "dequantize"
    check_tensor(A, "A", fn)
    if state is not None:
        absmax, code = state
    if absmax is None:
        raise ValueError(f"{fn}: pass state=(absmax, code) or absmax")
    if not isinstance(absmax, torch.Tensor):
        absmax = torch.tensor(float(absmax), device=A.device)
    dtype = out.dtype if out is not None else torch.float32
    result = torch.ops.bitsandbytes.dequantize(A, absmax.float(), _code_for(code, A, fn), dtype)
    return into(out, result, "out", fn)


def quantize_no_absmax(A, code, out=None):
    """The nearest entry of `code` to each value of A, no scaling."""
    fn = "quantize_no_absmax"
    check_tensor(A, "A", fn)
    _, searched, back = _searched_code_for(code, A, fn)
    return into(out, _codes_of(torch.ops.bitsandbytes.quantize_no_absmax(A, searched), back), "out", fn)


def dequantize_no_absmax(A, code, out=None):
    """code[A], float32 (or `out`'s dtype)."""
    fn = "dequantize_no_absmax"
    check_tensor(A, "A", fn)
    dtype = out.dtype if out is not None else torch.float32
    result = torch.ops.bitsandbytes.dequantize_no_absmax(A, _code_for(code, A, fn), dtype)
    return into(out, result, "out", fn)


# Fake kernels of the ops above (torch.compile, opcheck): shapes and dtypes of the outputs, and
# the checks the real kernels make that need no values.


def _num_blocks(n, blocksize):
    return -(n // -blocksize)


def _check_code(code, fmt, op):
    check_dtype(code, torch.float32, op, "code")
    torch._check_value(code.numel() == fmt.map_size,
                       lambda: f"{op}: code must hold {fmt.map_size} values (one per {fmt.name} code), got "
                               f"{code.numel()}")


def _check_blocksize(blocksize, fmt, op, device):
    if fmt.any_blocksize_on_cpu and device.type == "cpu":
        torch._check_value(fmt.accepts_blocksize(blocksize, "cpu"),
                           lambda: f"{op}: blocksize must be a positive number of values, got {blocksize}")
        return
    torch._check_value(fmt.is_supported_blocksize(blocksize),
                       lambda: f"{op}: blocksize must be one of {', '.join(map(str, fmt.blocksizes))} for "
                               f"{fmt.name} codes, got {blocksize}")


def _check_absmax(absmax, A, expected, op):
    check_dtype(absmax, torch.float32, op, "absmax")
    torch._check_value(absmax.numel() == expected,
                       lambda: f"{op}: absmax must hold {expected} values for {A.numel()} elements, got "
                               f"{absmax.numel()}")


@torch.library.register_fake("bitsandbytes::quantize_blockwise")
def _quantize_blockwise_fake(A, code, blocksize):
    op = "quantize_blockwise"
    check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    _check_blocksize(blocksize, FORMAT_8BIT, op, A.device)
    out = torch.empty(A.shape, dtype=torch.uint8, device=A.device)
    absmax = torch.empty(_num_blocks(A.numel(), blocksize), dtype=torch.float32, device=A.device)
    return out, absmax


@torch.library.register_fake("bitsandbytes::dequantize_blockwise")
def _dequantize_blockwise_fake(A, absmax, code, blocksize, dtype):
    op = "dequantize_blockwise"
    check_dtype(A, torch.uint8, op, "A")
    check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    _check_blocksize(blocksize, FORMAT_8BIT, op, A.device)
    _check_absmax(absmax, A, _num_blocks(A.numel(), blocksize), op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize_blockwise.out")
def _dequantize_blockwise_out_fake(A, absmax, code, blocksize, dtype, out):
    result = _dequantize_blockwise_fake(A, absmax, code, blocksize, dtype)
    check_out(out, result.shape, dtype, A.device, "dequantize_blockwise.out")


@torch.library.register_fake("bitsandbytes::quantize")
def _quantize_fake(A, code):
    op = "quantize"
    check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device), torch.empty((), dtype=torch.float32,
                                                                                   device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize")
def _dequantize_fake(A, absmax, code, dtype):
    op = "dequantize"
    check_dtype(A, torch.uint8, op, "A")
    check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    _check_absmax(absmax, A, 1, op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)


@torch.library.register_fake("bitsandbytes::quantize_no_absmax")
def _quantize_no_absmax_fake(A, code):
    op = "quantize_no_absmax"
    check_float(A.dtype, op, "A")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=torch.uint8, device=A.device)


@torch.library.register_fake("bitsandbytes::dequantize_no_absmax")
def _dequantize_no_absmax_fake(A, code, dtype):
    op = "dequantize_no_absmax"
    check_dtype(A, torch.uint8, op, "A")
    check_float(dtype, op, "dtype")
    _check_code(code, FORMAT_8BIT, op)
    return torch.empty(A.shape, dtype=dtype, device=A.device)
