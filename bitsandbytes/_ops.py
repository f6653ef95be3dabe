"""Loads the compiled operator library, and the checks that the ops' fake kernels share.

Each op lives in the `torch.ops.bitsandbytes` namespace; its schema is in csrc/schemas.cpp,
its CPU and CUDA kernels in csrc/cpu/ and csrc/cuda/ (*_registration.cpp). Its fake kernel,
which torch.compile and torch.library.opcheck use, sits beside the Python wrapper that calls
the op (bitsandbytes/functional/): each of those modules imports this one first, so that
the library is loaded before a fake is registered.
"""
import torch

from . import _extension  # noqa: F401  (it loads the compiled library, which registers the ops)

from ._formats import FLOAT_DTYPES, FORMAT_8BIT, dtype_list

# Kept for callers that read these names here; the facts live in _formats.py.
BLOCKSIZES = FORMAT_8BIT.blocksizes

# The fake kernels check what they can see (dtypes, sizes, block sizes) and raise what the real
# kernels raise for the same input (csrc/ops/checks.h): TypeError for a dtype, ValueError for a
# value. torch._check_type / torch._check_value also accept symbolic conditions.


def check_dtype(t, want, op, arg):
    torch._check_type(t.dtype == want, lambda: f"{op}: {arg} must be {want}, got {t.dtype}")


def check_float(dtype, op, arg):
    torch._check_type(dtype in FLOAT_DTYPES, lambda: f"{op}: {arg} must be {dtype_list(FLOAT_DTYPES)}, got {dtype}")


def check_out(out, shape, dtype, device, op):
    """The `out` of an op's `.out` overload: the result's shape, dtype and device."""
    torch._check_value(tuple(out.shape) == tuple(shape),
                       lambda: f"{op}: out must have shape {torch.Size(shape)}, got {out.shape}")
    torch._check_type(out.dtype == dtype, lambda: f"{op}: out must be {dtype}, got {out.dtype}")
    torch._check_value(out.device == device, lambda: f"{op}: out must be on {device}, got {out.device}")
