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


def _int8_rows_ref(A, threshold=0.0):
    """Row-wise absmax int8 quantization in float64: (codes, row absmax); with a threshold,
    values above it (the outliers) take no part in the row's absmax."""
    a = A.double()
    kept = a.abs() if threshold <= 0 else a.abs().masked_fill(a.abs() >= threshold, 0)
    stats = kept.amax(dim=1)
    return torch.round(a * (127.0 / stats.clamp_min(1e-30)).unsqueeze(1)).clamp(-127, 127), stats


@self_check("int8_vectorwise_quant", "int8_vectorwise_dequant", "int8_double_quant")
def check_int8_quant(device):
    dtype = torch.float16
    A = torch.randn(33, 70, device=device).to(dtype)
    A[:, 5] = 9.0  # an outlier column
    q, stats, cols = F.int8_vectorwise_quant(A, threshold=6.0)
    assert cols.tolist() == [5], f"outlier columns {cols.tolist()}"
    assert torch.all(q[:, 5] == 0), "outlier column not zeroed"
    want, want_stats = _int8_rows_ref(A.cpu(), threshold=6.0)
    assert torch.allclose(stats.double().cpu(), want_stats), "row statistics differ"
    diff = (q.cpu().double() - want).abs()
    diff[:, 5] = 0
    assert diff.max().item() <= 1, "int8 codes differ by more than rounding"
    q0, stats0, _ = F.int8_vectorwise_quant(A)
    back = F.int8_vectorwise_dequant(q0, stats0)
    assert (back.cpu().double() - A.cpu().double()).abs().max().item() <= stats0.max().item() / 127 + 1e-3
    out_row, out_col, row_stats, col_stats, _ = F.int8_double_quant(A)
    assert torch.equal(out_row, q0) and torch.allclose(row_stats, stats0)
    assert torch.allclose(col_stats.double().cpu(), A.cpu().double().abs().amax(dim=0))


@self_check("int8_linear_matmul", "int8_mm_dequant", "int8_scaled_mm", "int8_weight_linear")
def check_int8_matmul(device):
    A = torch.randint(-127, 128, (37, 68), dtype=torch.int8, device=device)
    B = torch.randint(-127, 128, (29, 68), dtype=torch.int8, device=device)
    C = F.int8_linear_matmul(A, B)
    want = A.cpu().long() @ B.cpu().long().t()
    assert C.dtype == torch.int32 and torch.equal(C.cpu().long(), want), "int8 GEMM differs from the exact product"
    rs = torch.rand(37, device=device) + 0.5
    cs = torch.rand(29, device=device) + 0.5
    bias = torch.randn(29, device=device).half()
    out = F.int8_mm_dequant(C, rs, cs, bias=bias)
    ref = want.double() * rs.cpu().double().unsqueeze(1) * cs.cpu().double().unsqueeze(0) / (127 * 127)
    ref += bias.cpu().double()
    assert torch.allclose(out.cpu().double(), ref, rtol=2e-3, atol=2e-3), "mm_dequant differs"
    scaled = torch.ops.bitsandbytes.int8_scaled_mm(A, B, rs, cs, bias)
    assert torch.allclose(scaled.cpu().double(), ref, rtol=2e-3, atol=2e-3), "int8_scaled_mm differs"
    X = torch.randn(5, 68, device=device).half()
    scb = torch.rand(29, device=device) + 0.5
    y = F.int8_weight_linear(X, B, scb, bias)
    w = B.cpu().double() * scb.cpu().double().unsqueeze(1) / 127
    ref = X.cpu().double() @ w.t() + bias.cpu().double()
    assert torch.allclose(y.cpu().double(), ref, rtol=1e-2, atol=1e-2), "int8 weight linear differs"


@self_check("optimizer_update")
def check_optimizer_update(device):
    from .. import optim

    torch.manual_seed(0)
    w0 = torch.randn(64, 80, device=device)
    grads = [torch.randn(64, 80, device=device) for _ in range(5)]
    ref = w0.clone().requires_grad_()
    ref_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.01)
    for bits, tol in ((32, 1e-5), (8, 2e-3), (4, None)):
        w = w0.clone().requires_grad_()
        opt = optim.AdamW([w], lr=1e-2, weight_decay=0.01, optim_bits=bits, min_8bit_size=1)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        if bits == 32:
            for g in grads:
                ref.grad = g.clone()
                ref_opt.step()
        if bits == 4:  # coarse moments: the mean error is a fraction of the distance moved
            err = ((w - ref).abs().mean() / (ref - w0).abs().mean()).item()
            assert err <= 0.25, f"AdamW with 4-bit state is {err:.2f} of its movement from torch.optim.AdamW"
        else:
            err = (w - ref).abs().max().item()
            assert err <= tol, f"AdamW with {bits}-bit state is {err:.2e} from torch.optim.AdamW"
        if bits < 32:
            assert opt.state[w]["state1"].dtype == torch.uint8
    # AdEMAMix: three states (two stacked in state1) and both schedules, against its plain-torch form
    from ..optim.ademamix import _ReferenceAdEMAMix

    ref = w0.clone().requires_grad_()
    ref_opt = _ReferenceAdEMAMix([ref], lr=1e-2, t_alpha=3, t_beta3=3)
    for g in grads:
        ref.grad = g.clone()
        ref_opt.step()
    for bits, tol in ((32, 1e-5), (8, 4e-3)):  # the parameters move about 0.05
        w = w0.clone().requires_grad_()
        opt = optim.AdEMAMix([w], lr=1e-2, t_alpha=3, t_beta3=3, optim_bits=bits, min_8bit_size=1)
        for g in grads:
            w.grad = g.clone()
            opt.step()
        err = (w - ref).abs().max().item()
        assert err <= tol, f"AdEMAMix with {bits}-bit state is {err:.2e} from its plain-torch form"


@self_check("paged_zeros", "prefetch_to_device", "prefetch_to_host")
def check_paged(device):
    t = F.paged_zeros((3, 1000), dtype=torch.float32, device=device)
    assert t.shape == (3, 1000) and t.device.type == torch.device(device).type and torch.all(t == 0)
    t.add_(1.5)
    F.prefetch_to_host(t)  # the values survive the round trip through host memory
    assert torch.all(t == 1.5)
    F.prefetch_to_device(t)
    t.add_(1.0)
    assert torch.all(t == 2.5)


@self_check("cuda_memory_numbers")
def check_cuda_memory_numbers(device):
    t = torch.empty(1 << 20, device=device)  # 4 MB, held by torch's allocator while read
    total, free, reserved, peak = F.optimizer.cuda_memory_numbers(t)
    assert 0 < free <= total, f"free {free} of total {total}"
    assert t.numel() * t.element_size() <= reserved <= peak, f"reserved {reserved}, peak {peak}"
    assert reserved + free <= total, f"reserved {reserved} and free {free} exceed total {total}"


@self_check("int8_vectorwise_quant_outliers", "int8_mm_dequant_outliers")
def check_int8_outliers(device):
    ops = torch.ops.bitsandbytes
    X = torch.randn(9, 40, device=device).half()
    X[:, 7] = 8.0
    X[2, 30] = -9.0  # outlier columns 7 and 30
    q, row_stats, outlier_list = ops.int8_vectorwise_quant_outliers(X, 6.0)
    ol = outlier_list.cpu()
    assert ol[0].item() == 2 and ol[1:3].tolist() == [7, 30], f"outlier list {ol[:4].tolist()}"
    assert torch.all(q[:, 7] == 0) and torch.all(q[:, 30] == 0)
    W = torch.randn(11, 40, device=device).half()
    CB = torch.randint(-127, 128, (11, 40), dtype=torch.int8, device=device)
    C = ops.int8_linear_matmul(q, CB)
    col_stats = torch.rand(11, device=device) + 0.5
    out = ops.int8_mm_dequant_outliers(C, row_stats, col_stats, None, X, W, outlier_list, torch.float16)
    ref = C.cpu().double() * row_stats.cpu().double().unsqueeze(1) * col_stats.cpu().double().unsqueeze(0) / 127**2
    cols = [7, 30]
    ref += X.cpu().double()[:, cols] @ W.cpu().double()[:, cols].t()
    assert torch.allclose(out.cpu().double(), ref, rtol=5e-3, atol=5e-3), "outlier product differs"


@self_check("quantize_4bit", "dequantize_4bit", "gemv_4bit", "linear_4bit")
def check_4bit(device):
    for quant_type in ("nf4", "fp4"):
        code = F.get_4bit_type(quant_type).double()
        A = torch.randn(3, 1001, device=device)
        packed, state = F.quantize_4bit(A, blocksize=64, quant_type=quant_type)
        flat = A.double().reshape(-1).cpu()
        absmax = torch.nn.functional.pad(flat.abs(), (0, (-flat.numel()) % 64)).reshape(-1, 64).amax(1)
        assert torch.equal(state.absmax.double().cpu(), absmax), "absmax differs from max |A| per block"
        b = packed.reshape(-1).cpu()
        codes = torch.stack([b >> 4, b & 15], 1).reshape(-1)[: flat.numel()].long()
        scaled = flat / absmax.repeat_interleave(64)[: flat.numel()]
        nearest = (scaled.unsqueeze(1) - code.unsqueeze(0)).abs().min(1).values
        assert torch.all((scaled - code[codes]).abs() <= nearest + 1e-6), "a 4-bit code is not the nearest one"
        back = F.dequantize_4bit(packed, state)
        want = (code[codes] * absmax.repeat_interleave(64)[: flat.numel()]).float().reshape(A.shape)
        assert torch.equal(back.cpu(), want), "dequantize_4bit differs"
        x = torch.randn(2, 1001, device=device)
        W = torch.randn(40, 1001, device=device)
        pw, sw = F.quantize_4bit(W, quant_type=quant_type)
        Wd = F.dequantize_4bit(pw, sw).double()
        got = F.gemv_4bit(x, pw, state=sw).double()
        ref = x.double() @ Wd.t()
        assert torch.all((got - ref).abs() <= 1e-4 * (x.double().abs() @ Wd.abs().t()) + 1e-6), "gemv_4bit differs"
        # linear_4bit in bf16 with nested scales, few rows (fused kernel) and many (dequantize + linear)
        Wb = torch.randn(40, 1024, device=device, dtype=torch.bfloat16)  # K % 128 == 0: tensor cores on CUDA
        pn, sn = F.quantize_4bit(Wb, quant_type=quant_type, compress_statistics=True)
        Wn = F.dequantize_4bit(pn, sn).double()
        for rows in (3, 100):
            xb = torch.randn(rows, 1024, device=device, dtype=torch.bfloat16)
            got = F.linear_4bit(xb, pn, sn).double()
            ref = xb.double() @ Wn.t()
            bound = 2.0**-6 * (xb.double().abs() @ Wn.abs().t())
            assert torch.all((got - ref).abs() <= bound), "linear_4bit differs"
