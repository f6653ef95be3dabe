"""The int8 functions that the reference library's 0.45 release still shipped, deprecated, from
its earlier LLM.int8() API. Code written against them keeps working here: each one computes what
the reference computed (row layout only; the tiled GPU layouts are gone) on top of our int8 ops
and plain torch, and warns that it is deprecated.

The warning is a DeprecationWarning that is also a FutureWarning (the category the reference
used), so filters written for either keep working."""
import functools
import warnings
from dataclasses import dataclass

import torch

from ._args import check_tensor
from .int8 import int8_double_quant, int8_linear_matmul, int8_mm_dequant

# The int8 scale: a value v of a row with absmax m is stored as round(v * C / m).
C = 127.0


class Int8DeprecationWarning(DeprecationWarning, FutureWarning):
    """Raised by the deprecated int8 functions."""


def deprecated(replacement=None):
    def wrap(fn):
        message = f"{fn.__name__} is deprecated and will be removed in a future release"
        message += f"; use {replacement} instead." if replacement else "."

        @functools.wraps(fn)
        def warned(*args, **kwargs):
            warnings.warn(message, Int8DeprecationWarning, stacklevel=2)
            return fn(*args, **kwargs)
        return warned
    return wrap


@dataclass
class COOSparseTensor:
    """Outliers of a matrix in coordinate form, as double_quant returned them: int32 row and
    column indices and the values, row-major order."""
    rows: int
    cols: int
    nnz: int
    rowidx: torch.Tensor
    colidx: torch.Tensor
    values: torch.Tensor


def _check_row_layout(state, name, fn):
    if state is not None and state[1] != "row":
        raise NotImplementedError(f"{fn}: only the row layout is supported, got {name} layout '{state[1]}' "
                                  "(the col32/col_turing/col_ampere layouts were removed)")


@deprecated("int8_double_quant")
def double_quant(A, col_stats=None, row_stats=None, out_col=None, out_row=None, threshold=0.0):
    """(out_row, out_col, row_stats, col_stats, coo_outliers): int8_double_quant, with the outliers
    (|value| >= threshold) of a 2-D A returned as a COOSparseTensor instead of column indices."""
    fn = "double_quant"
    check_tensor(A, "A", fn)
    q_row, q_col, r_stats, c_stats, _ = int8_double_quant(A, col_stats, row_stats, out_col, out_row, threshold)
    coo = None
    if threshold > 0.0:
        if A.dim() != 2:
            raise ValueError(f"{fn}: A must be 2-D to list its outliers, got shape {tuple(A.shape)}")
        mask = A.abs() >= threshold
        where = mask.nonzero()
        values = A[mask]
        coo = COOSparseTensor(A.shape[0], A.shape[1], values.numel(), where[:, 0].int(), where[:, 1].int(), values)
    return q_row, q_col, r_stats, c_stats.flatten().float(), coo


@deprecated("int8_vectorwise_quant")
def vectorwise_quant(x, dim=1, quant_type="vector"):
    """Absmax int8 quantization along `dim` (or of the whole tensor, or with a zero point), in x's
    dtype as the reference computed it. Returns (quantized, scale), or None for an unknown
    quant_type."""
    check_tensor(x, "x", "vectorwise_quant")
    if quant_type == "linear":
        absmax = x.abs().max().float()
        return torch.round(x / absmax * 127).to(torch.int8), absmax
    if quant_type in ("vector", "row"):
        absmax = torch.amax(x.abs(), dim=dim, keepdim=True)
        return torch.round(x * (C / absmax)).to(torch.int8), absmax
    if quant_type in ("zeropoint", "vector-zeropoint", "row-zeropoint"):
        # 255 levels over [min, max] with a rounded zero point; float32 values, not int8.
        x = x.float()
        if quant_type == "zeropoint":
            lo, hi = x.min(), x.max()
            span = hi - lo
            if span == 0:
                span = torch.ones_like(span)
        else:
            lo = torch.amin(x, dim=dim, keepdim=True)
            span = torch.amax(x, dim=dim, keepdim=True) - lo
            span[span == 0] = 1
        scale = 255.0 / span
        zero = torch.round(lo * scale)
        return torch.round(scale * x - zero) + zero, scale
    if quant_type == "truncated-vector":
        # Values beyond 70% of the row's absmax are clipped to it before quantizing.
        with torch.no_grad():
            limit = torch.amax(x.abs(), dim=dim, keepdim=True) * 0.7
            clipped = torch.where(x.abs() > limit, limit.expand_as(x) * torch.sign(x), x)
            return torch.round(clipped / limit * C).to(torch.int8), limit
    return None


@deprecated("int8_vectorwise_dequant")
def vectorwise_dequant(xq, max1, quant_type="vector"):
    """float32 xq / 127 * max1 (None for a quant_type other than 'vector')."""
    check_tensor(xq, "xq", "vectorwise_dequant")
    if quant_type == "vector":
        return (xq / C * max1).to(torch.float32)
    return None


@deprecated("int8_mm_dequant")
def vectorwise_mm_dequant(xq, S1, S2, dtype=torch.half, quant_type="vector"):
    """Dequantizes the int32 product of two vectorwise_quant results with their scales S1 (of
    the left operand) and S2 (of the right), in `dtype`; None for an unknown quant_type."""
    check_tensor(xq, "xq", "vectorwise_mm_dequant")
    if quant_type == "linear":
        return (xq.float() * (S1 * S2 / (C * C))).to(dtype)
    if quant_type in ("zeropoint", "row-zeropoint"):
        return (xq.float() * (1.0 / (S1 * S2))).to(dtype)
    if quant_type not in ("vector-zeropoint", "row", "vector", "truncated-vector"):
        return None
    x = xq.float()
    if x.dim() == 2:  # scales kept with a leading batch dimension of 1
        S1 = S1.squeeze(0) if S1.dim() == 3 else S1
        S2 = S2.squeeze(0) if S2.dim() == 3 else S2
    if quant_type == "vector-zeropoint":
        x *= 1.0 / S1
        x *= 1.0 / S2.t()
    elif quant_type == "row":
        x *= S1 * S2 / (C * C)
    else:  # each scale applied on its own, in this order, as the reference rounds
        x *= S1 / C
        x *= S2 / C
    return x.to(dtype)


def _row_absmax(A, threshold):
    absA = A.abs().reshape(-1, A.shape[-1])
    mask = None
    if threshold > 0.0:
        mask = absA >= threshold  # outliers are left out of the statistics
        absA = absA.masked_fill(mask, 0.0)
    return absA, mask


@deprecated("int8_double_quant")
def get_colrow_absmax(A, row_stats=None, col_stats=None, nnz_block_ptr=None, threshold=0.0):
    """(row_stats, col_stats, outlier_mask): float32 row and column absmax of A[..., K] with
    the values |x| >= threshold left out, and the bool mask of those values (None at threshold 0).
    Statistics passed in are returned as they are; nnz_block_ptr is not used."""
    fn = "get_colrow_absmax"
    check_tensor(A, "A", fn)
    if not A.is_floating_point():
        raise TypeError(f"{fn}: A must be a floating-point tensor, got {A.dtype}")
    mask = None
    if row_stats is None or col_stats is None:
        absA, mask = _row_absmax(A, threshold)
        if row_stats is None:
            row_stats = absA.amax(dim=1).float()
        if col_stats is None:
            col_stats = absA.amax(dim=0).float()
    return row_stats, col_stats, mask


@deprecated("int8_vectorwise_quant")
def get_row_absmax(A, threshold=0.0):
    """float32 absmax of each row of A[..., K], values |x| >= threshold left out."""
    fn = "get_row_absmax"
    check_tensor(A, "A", fn)
    if not A.is_floating_point():
        raise TypeError(f"{fn}: A must be a floating-point tensor, got {A.dtype}")
    return _row_absmax(A, threshold)[0].amax(dim=1).float()


@deprecated("int8_mm_dequant")
def mm_dequant(A, quant_state, row_stats, col_stats, out=None, new_row_stats=None, new_col_stats=None, bias=None):
    """int8_mm_dequant(A, row_stats, col_stats, out, bias) in float16; quant_state and the
    new_* statistics are not used (the layouts they described are gone)."""
    return int8_mm_dequant(A, row_stats, col_stats, out=out, bias=bias)


@deprecated("int8_linear_matmul")
def igemmlt(A, B, SA, SB, out=None, Sout=None, dtype=torch.int32):
    """(A @ B.T as int32, (shape, 'row')) for row-layout int8 A and B."""
    _check_row_layout(SA, "SA", "igemmlt")
    _check_row_layout(SB, "SB", "igemmlt")
    result = int8_linear_matmul(A, B, out=out, dtype=dtype)
    return result, (result.shape, "row")


@deprecated()
def transform(A, to_order, from_order="row", out=None, transpose=False, state=None, ld=None):
    """(A in the row layout, (shape, 'row')): row to row is the only conversion left, a copy
    (transposed if asked)."""
    fn = "transform"
    check_tensor(A, "A", fn)
    if state is not None:
        from_order = state[1]
    if to_order != "row" or from_order != "row":
        raise NotImplementedError(f"{fn}: only from_order='row' to to_order='row' is supported, got "
                                  f"from_order={from_order!r}, to_order={to_order!r} (the tiled layouts were removed)")
    result = (A.transpose(-1, -2) if transpose else A).contiguous()
    shape = tuple(result.shape)
    if out is not None:
        out.copy_(result)
        result = out
    return result, (shape, "row")


@deprecated()
def extract_outliers(A, SA, idx):
    """The columns `idx` of the row-layout int8 matrix A, as a contiguous tensor."""
    fn = "extract_outliers"
    check_tensor(A, "A", fn)
    _check_row_layout(SA, "SA", fn)
    if A.dtype != torch.int8 or A.dim() != 2:
        raise ValueError(f"{fn}: A must be a 2-D int8 matrix, got {A.dtype} of shape {tuple(A.shape)}")
    return A[:, idx].contiguous()


def _int8_product(A, B):
    """Exact int32 A[..., K] @ B[K, N] of int8 tensors, through int8_linear_matmul."""
    return int8_linear_matmul(A.contiguous(), B.t().contiguous())


def _check_int8(fn, **tensors):
    for name, t in tensors.items():
        check_tensor(t, name, fn)
        if t.dtype != torch.int8:
            raise TypeError(f"{fn}: {name} must be an int8 tensor, got {t.dtype}")


def _into(out, result, fn):
    if out is None:
        return result
    if out.shape != result.shape:
        raise ValueError(f"{fn}: out must have shape {tuple(result.shape)}, got {tuple(out.shape)}")
    return out.copy_(result)


def _batched(A, B, out, fn):
    if A.dim() != 3 or B.dim() != 3:
        raise ValueError(f"{fn}: A and B must be 3-D, got shapes {tuple(A.shape)} and {tuple(B.shape)}")
    if A.shape[0] != B.shape[0] or A.shape[2] != B.shape[1]:
        raise ValueError(f"{fn}: A [b, n, k] and B [b, k, m] do not match: {tuple(A.shape)} x {tuple(B.shape)}")
    if A.shape[0] == 0:
        result = torch.zeros((0, A.shape[1], B.shape[2]), dtype=torch.int32, device=A.device)
    else:
        result = torch.stack([_int8_product(a, b) for a, b in zip(A, B)])
    return _into(out, result, fn)


@deprecated("torch.bmm on dequantized tensors")
def batched_igemm(A, B, out=None, transposed_A=False, transposed_B=False):
    """int32 A[b, n, k] @ B[b, k, m], batch by batch (the transposition flags are read from the
    tensors' strides there, so they do not change the result)."""
    _check_int8("batched_igemm", A=A, B=B)
    return _batched(A, B, out, "batched_igemm")


@deprecated("int8_linear_matmul")
def igemm(A, B, out=None, transposed_A=False, transposed_B=False):
    """int32 op(A) @ op(B) of int8 tensors, op transposing the last two dimensions where its
    flag is set: A 2-D or 3-D with B 2-D; A[b, n, k] @ B[b, k, m] batched; and
    out[i, o] = sum over b, s of A[b, s, i] * B[b, s, o] when out of that shape is given."""
    fn = "igemm"
    _check_int8(fn, A=A, B=B)
    if A.dim() == 3 and B.dim() == 3:
        if A.shape[0] == B.shape[0] and A.shape[2] == B.shape[1]:
            return _batched(A, B, out, fn)
        if out is not None and A.shape[:2] == B.shape[:2] and tuple(out.shape) == (A.shape[2], B.shape[2]):
            return _into(out, _int8_product(A.reshape(-1, A.shape[2]).t(), B.reshape(-1, B.shape[2])), fn)
        raise ValueError(f"{fn}: 3-D A and B must be [b, n, k] x [b, k, m], or [b, s, i] x [b, s, o] with out "
                         f"of shape [i, o]; got {tuple(A.shape)} x {tuple(B.shape)}")
    if A.dim() not in (2, 3) or B.dim() != 2:
        raise ValueError(f"{fn}: A must be 2-D or 3-D and B 2-D, got shapes {tuple(A.shape)} and {tuple(B.shape)}")
    opA = A.transpose(-1, -2) if transposed_A else A
    opB = B.t() if transposed_B else B
    if opA.shape[-1] != opB.shape[0]:
        raise ValueError(f"{fn}: A x B dimensions do not match: {tuple(opA.shape)} x {tuple(opB.shape)} "
                         f"(transposed_A={transposed_A}, transposed_B={transposed_B})")
    return _into(out, _int8_product(opA, opB), fn)
