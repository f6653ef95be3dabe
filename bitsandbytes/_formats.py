"""The facts that argument checks on the Python side read: the dtypes the kernels take, the
code formats (bits, map size, block sizes) and the limits of quantile estimation. The C++
side holds the same facts in kernels/include/bnb/dtype.h and bnb/quantiles.h; the op layer
checks tensors against those, and the fake kernels and wrappers (bitsandbytes/functional/)
against these, with messages built from them.

Imports torch only, so that both _ops.py and bitsandbytes.functional can read it without an
import cycle.
"""
from dataclasses import dataclass

import torch

# The element types a quantization kernel reads and writes, in the order messages list them.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def dtype_list(dtypes):
    """'float32, float16 or bfloat16': dtypes as an error message names them."""
    names = [str(d).removeprefix("torch.") for d in dtypes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class QuantFormat:
    """A code format: the bits of one code, its map (2^bits float32 values, sorted
    ascending) and the block sizes block-wise quantization accepts (the powers of two from
    min_blocksize to max_blocksize)."""

    name: str
    bits: int
    min_blocksize: int
    max_blocksize: int
    any_blocksize_on_cpu: bool = False

    @property
    def map_size(self):
        return 1 << self.bits

    @property
    def blocksizes(self):
        sizes, b = [], self.min_blocksize
        while b <= self.max_blocksize:
            sizes.append(b)
            b *= 2
        return tuple(sizes)

    def is_supported_blocksize(self, blocksize):
        return blocksize in self.blocksizes

    def accepts_blocksize(self, blocksize, device_type):
        """Whether a block-wise op of this format on `device_type` takes `blocksize`: on the CPU
        any positive one where the format allows it (its kernels take blocks of any length, as
        the reference library's CPU path does), elsewhere the powers of two of `blocksizes`."""
        if self.any_blocksize_on_cpu and device_type == "cpu":
            return blocksize > 0
        return self.is_supported_blocksize(blocksize)


# 8-bit codes (dynamic, linear, fp8 and quantile maps) and 4-bit codes (NF4, FP4).
FORMAT_8BIT = QuantFormat("8-bit", bits=8, min_blocksize=64, max_blocksize=4096, any_blocksize_on_cpu=True)
FORMAT_4BIT = QuantFormat("4-bit", bits=4, min_blocksize=32, max_blocksize=4096)

# estimate_quantiles: the fewest input values and the most quantiles (bnb/quantiles.h).
QUANTILES_MIN_VALUES = 256
QUANTILES_MAX = 256
