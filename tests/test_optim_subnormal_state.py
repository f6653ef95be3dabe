"""A block whose new state maximum is subnormal (below about 2.9e-39 its reciprocal overflows
to Inf) is requantized as faithfully as any other: the codes scaled by the stored absmax give
the state back within the map's resolution, on the CPU and on CUDA."""
import pytest
import torch

import bitsandbytes as bnb

N = 4096 + 300
TINY = slice(256, 512)  # an 8-bit block (and two 4-bit blocks) of subnormal gradients


def codes_of(state, bits, n):
    if bits == 8:
        return state.long()
    hi, lo = (state >> 4).long(), (state & 15).long()
    return torch.stack([hi, lo], dim=1).flatten()[:n]


@pytest.mark.parametrize("cls,bits,block,tol", [(bnb.optim.Adam8bit, 8, 256, 0.02), (bnb.optim.AdamW4bit, 4, 128, 0.2)],
                         ids=["Adam8bit", "AdamW4bit"])
def test_subnormal_block_maximum_requantizes_faithfully(device, cls, bits, block, tol):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(N, device=device))
    g = torch.randn(N, device=device)
    g[TINY] *= 5e-39  # first moment 0.1 g: at most about 2e-39, subnormal
    p.grad = g
    opt = cls([p], lr=1e-3, betas=(0.9, 0.999))
    opt.step()
    st = opt.state[p]
    m = 0.1 * g.double().cpu()  # the first moment after one step (it starts at zero)
    code = st["qmap1"].double().cpu()
    absmax = st["absmax1"].double().cpu().repeat_interleave(block)[:N]
    got = code[codes_of(st["state1"].cpu(), bits, N)] * absmax
    assert 0 < absmax[TINY].max() < 2.9e-39
    err = (got - m).abs() / absmax
    assert err[TINY].max() < tol, err[TINY].max()
    assert err.max() < tol
