"""The Python side's code formats (bitsandbytes/_formats.py) state the same rules as the op
layer's (kernels/include/bnb/dtype.h): which block sizes and map sizes the ops accept."""
import pytest
import torch

import bitsandbytes.functional as F
from bitsandbytes._formats import FLOAT_DTYPES, FORMAT_4BIT, FORMAT_8BIT, dtype_list

ops = torch.ops.bitsandbytes


def _accepts(call):
    try:
        call()
    except ValueError:
        return False
    return True


def test_8bit_block_sizes_are_the_ops(device):
    A, code = torch.randn(300, device=device), F.create_dynamic_map().to(device)
    for b in (-64, 0, 1, 16, 32, 48, 64, 96, 100, 128, 256, 512, 1024, 2048, 4096, 8192):
        want = FORMAT_8BIT.accepts_blocksize(b, A.device.type)
        assert _accepts(lambda: ops.quantize_blockwise(A, code, b)) == want, b
        assert want == (b > 0 if device == "cpu" else FORMAT_8BIT.is_supported_blocksize(b)), b
    assert FORMAT_8BIT.blocksizes == (64, 128, 256, 512, 1024, 2048, 4096)


def test_8bit_map_size_is_the_ops():
    A = torch.randn(300)
    for n in (FORMAT_4BIT.map_size, FORMAT_8BIT.map_size - 1, FORMAT_8BIT.map_size, FORMAT_8BIT.map_size + 1):
        code = torch.linspace(-1, 1, n)
        assert _accepts(lambda: ops.quantize_blockwise(A, code, 64)) == (n == FORMAT_8BIT.map_size), n


def test_4bit_format():
    assert FORMAT_4BIT.map_size == 16 and FORMAT_4BIT.blocksizes[0] == 32 and FORMAT_4BIT.blocksizes[-1] == 4096


def test_messages_are_built_from_the_formats():
    with pytest.raises(ValueError, match=", ".join(map(str, FORMAT_4BIT.blocksizes))):
        ops.quantize_4bit(torch.randn(10), 100, "nf4", torch.uint8)
    with pytest.raises(TypeError, match=dtype_list(FLOAT_DTYPES)):
        ops.quantize_blockwise(torch.arange(10), F.create_dynamic_map(), 64)
