"""bnb.matmul(..., out=) as torch's out=: the result's exact shape, dtype and device, else a
clear error (no broadcast into a larger out, no rounding into an integer one)."""
import pytest
import torch

import bitsandbytes as bnb


def _inputs(device):
    A = (torch.randn(6, 32, device=device) * 0.5).half()
    W = (torch.randn(24, 32, device=device) * 0.1).half()
    return A, W


def test_matching_out_is_written(device):
    A, W = _inputs(device)
    out = torch.empty(6, 24, dtype=torch.float16, device=device)
    res = bnb.matmul(A, W, out=out)
    assert res is out
    assert torch.equal(out, bnb.matmul(A, W))


@pytest.mark.parametrize("shape,dtype", [
    ((2, 6, 24), torch.float16),  # larger: copy_ would broadcast into it
    ((1, 24), torch.float16),
    ((6, 25), torch.float16),
    ((6, 24), torch.int32),  # copy_ would truncate into it
    ((6, 24), torch.float32),
])
def test_mismatched_out_is_refused(shape, dtype, device):
    A, W = _inputs(device)
    out = torch.zeros(shape, dtype=dtype, device=device)
    with pytest.raises(ValueError, match="out must be a .* tensor of shape"):
        bnb.matmul(A, W, out=out)
    assert not out.any()  # left untouched


def test_out_must_be_a_tensor(device):
    A, W = _inputs(device)
    with pytest.raises(TypeError, match="out must be a torch.Tensor"):
        bnb.matmul(A, W, out=[0.0])
