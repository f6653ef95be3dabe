"""quantize/dequantize (one absmax) and the unscaled no_absmax pair."""
import pytest
import torch

import bitsandbytes.functional as F
from reference_quant import nearest_code, tie_tolerant_equal

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def reference_tensorwise_codes(A, code, divide=True):
    """The reference library's tensor-wise codes, written from its rule: A divided by its absmax
    in float32 (not with quantize_no_absmax), then the nearest entry of `code`, a value exactly
    on a midpoint (computed in float32) taking the even index of its two neighbours."""
    x = A.float().cpu()
    x = (x / x.abs().max() if divide else x).reshape(-1)
    code = code.float().cpu()
    mids = 0.5 * (code[:-1] + code[1:])  # float32, as the map's neighbours average there
    idx = torch.searchsorted(mids, x, side="left")  # midpoints strictly below x
    tie = (idx < 255) & (idx % 2 == 1) & (x == mids[idx.clamp(max=254)])
    return (idx + tie.long()).to(torch.uint8).reshape(A.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 1000, 65537])
def test_quantize_one_absmax(device, dtype, n):
    A = (torch.randn(n) * 5).to(dtype).to(device)
    q, (absmax, code) = F.quantize(A)
    assert absmax.numel() == 1
    assert absmax.item() == A.float().abs().max().item()
    scaled = A.double().cpu() / absmax.item()
    ok, differ = tie_tolerant_equal(q, nearest_code(scaled, code), scaled, code)
    assert ok, "a code differs from the nearest one by more than a tie"
    if dtype == torch.float32:  # 16-bit inputs land exactly on midpoints far more often
        assert differ <= n // 1000 + 1
    assert torch.equal(q.cpu(), reference_tensorwise_codes(A, code))  # ties included
    out = F.dequantize(q, (absmax, code))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), (code.cpu()[q.cpu().long()] * absmax.cpu()), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_absmax(device, dtype):
    code = F.create_linear_map(signed=True).to(device)
    A = (torch.rand(10007) * 2 - 1).to(dtype).to(device)
    q = F.quantize_no_absmax(A, code)
    assert torch.equal(q.cpu(), reference_tensorwise_codes(A, code, divide=False))
    back = F.dequantize_no_absmax(q, code)
    torch.testing.assert_close(back.cpu(), code.cpu()[q.cpu().long()], rtol=0, atol=0)
    out = torch.empty(10007, dtype=torch.uint8, device=device)
    assert F.quantize_no_absmax(A, code, out=out).data_ptr() == out.data_ptr()


def test_empty(device):
    A = torch.empty(0, device=device)
    q, (absmax, code) = F.quantize(A)
    assert q.numel() == 0 and absmax.item() == 0
    assert F.dequantize(q, (absmax, code)).numel() == 0
    assert F.quantize_no_absmax(A, code).numel() == 0


def test_quantize_gives_the_reference_codes(device):
    """Bit for bit, ties included: random N(0, 1) data, and values placed exactly on every
    midpoint of the map (absmax 1, so that the division keeps them there)."""
    torch.manual_seed(0)
    A = torch.randn(1024, 1024)
    code = F.create_dynamic_map()
    mids = 0.5 * (code[:-1] + code[1:])
    A[0, :255] = mids
    A[1, :255] = -mids
    A[2, 0] = 1.0
    A = A / A.abs().max()  # absmax 1: the midpoints stay exact
    q, (absmax, got_code) = F.quantize(A.to(device))
    assert absmax.item() == 1.0 and torch.equal(got_code.cpu(), code)
    assert torch.equal(q.cpu(), reference_tensorwise_codes(A, code))
    B = torch.randn(1024, 1024)
    q, state = F.quantize(B.to(device))
    assert torch.equal(q.cpu(), reference_tensorwise_codes(B, code))
    # the reference's own accuracy bound for this data
    assert (F.dequantize(q, state).cpu() - B).abs().mean().item() < 0.0135
