"""The self-checks themselves: small inputs, plain-torch float64 references."""
import torch

from .. import functional as F
from .registry import self_check


@self_check("quantize_blockwise", "dequantize_blockwise")
def check_blockwise(device):
    code = F.create_dynamic_map().to(device)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        A = torch.randn(3, 1000, device=device).to(dtype)
        q, state = F.quantize_blockwise(A, code=code, blocksize=256)
        flat = A.double().reshape(-1)
        absmax = torch.nn.functional.pad(flat.abs(), (0, (-flat.numel()) % 256)).reshape(-1, 256).amax(1)
        assert torch.equal(state.absmax.double(), absmax), "absmax differs from max |A| per block"
        scaled = flat / absmax.repeat_interleave(256)[: flat.numel()]
        nearest = (scaled.unsqueeze(1) - code.double().unsqueeze(0)).abs().min(1).values
        chosen = (scaled - code.double()[q.reshape(-1).long()]).abs()
        assert torch.all(chosen <= nearest + 1e-6), "a code is not the nearest one"
        back = F.dequantize_blockwise(q, state)
        want = (code.double()[q.reshape(-1).long()] * absmax.repeat_interleave(256)[: flat.numel()]).to(dtype)
        assert back.dtype == dtype and torch.equal(back.reshape(-1), want), "dequantize differs"


@self_check("quantize", "dequantize", "quantize_no_absmax", "dequantize_no_absmax")
def check_tensorwise(device):
    A = torch.randn(5000, device=device)
    q, (absmax, code) = F.quantize(A)
    assert absmax.item() == A.abs().max().item()
    err = (F.dequantize(q, (absmax, code)) - A).abs().max().item()
    assert err <= 0.02 * absmax.item(), f"round-trip error {err}"
    lin = F.create_linear_map().to(device)
    x = torch.rand(5000, device=device) * 2 - 1
    back = F.dequantize_no_absmax(F.quantize_no_absmax(x, lin), lin)
    assert (back - x).abs().max().item() <= 1.0 / 254 + 1e-6


@self_check("estimate_quantiles")
def check_estimate_quantiles(device):
    A = torch.randn(10007, device=device)
    q = F.estimate_quantiles(A)
    s = A.double().sort().values
    ranks = torch.linspace(1 / 512, 1 - 1 / 512, 256, dtype=torch.float64, device=device) * (A.numel() - 1)
    exact = s[(ranks + 1e-6).floor().long()]
    # The estimate shares the exact order statistic's final bin: relative width 2^-12.
    assert torch.all((q.double() - exact).abs() <= exact.abs() * 2.5e-4), "quantile off by more than its bin"
    h = F.estimate_quantiles(A.half())
    hs = A.half().double().sort().values
    assert torch.equal(h.double(), hs[(ranks + 1e-6).floor().long()]), "float16 quantiles are not exact"
