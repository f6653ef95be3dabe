"""quantize/dequantize (one absmax) and the unscaled no_absmax pair."""
import pytest
import torch

import bitsandbytes.functional as F
from reference_quant import nearest_code, tie_tolerant_equal

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


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
    out = F.dequantize(q, (absmax, code))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), (code.cpu()[q.cpu().long()] * absmax.cpu()), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_absmax(device, dtype):
    code = F.create_linear_map(signed=True).to(device)
    A = (torch.rand(10007) * 2 - 1).to(dtype).to(device)
    q = F.quantize_no_absmax(A, code)
    ok, differ = tie_tolerant_equal(q, nearest_code(A.cpu(), code), A.cpu(), code)
    assert ok and differ <= 10
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
