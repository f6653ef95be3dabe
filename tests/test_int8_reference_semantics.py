"""Int8 weights as the reference library makes and uses them: every weight is quantized through
float16 (so fp32, fp16 and bf16 weights of equal values give the same codes), Int8Params
accepts the meta-device SCB placeholder transformers passes, and bnb.matmul with a state that
holds CB uses it whatever B's layout. Checked against plain float64 torch."""
import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.nn import Int8Params, Linear8bitLt


def reference_codes(w):
    """Row-wise int8 codes and absmax of `w` rounded to float16 first, in float64."""
    w = w.to(torch.float16).double()
    absmax = w.abs().amax(dim=1)
    scaled = w * 127 / absmax.unsqueeze(1)
    return torch.round(scaled).to(torch.int8), absmax


def assert_codes_equal(got, want, w):
    """Equal codes; only an exact tie (x.5 in float64) may round either way."""
    scaled = w.to(torch.float16).double() * 127 / w.to(torch.float16).double().abs().amax(1, keepdim=True)
    tie = (scaled.abs() - scaled.abs().floor() - 0.5).abs() < 1e-9
    diff = got.cpu().int() - want.int()
    assert (diff[~tie] == 0).all() and (diff.abs() <= 1).all()


def rel_err(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


def quantized(weight, device):
    return Int8Params(weight.clone(), requires_grad=False, has_fp16_weights=False).to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_codes_are_the_references_for_every_weight_dtype(dtype, device):
    w = (torch.randn(256, 384) * 0.05).to(dtype)
    p = quantized(w, device)
    codes, absmax = reference_codes(w)
    assert_codes_equal(p.data, codes, w)
    assert torch.equal(p.SCB.cpu().double(), absmax)


def test_fp32_weight_gives_the_codes_of_its_fp16_rounding(device):
    w = torch.randn(512, 512)
    assert torch.equal(quantized(w, device).data, quantized(w.half(), device).data)


def test_fp32_values_beyond_fp16_keep_their_value(device):
    w = torch.randn(4, 64)
    w[1, 3] = 1e5
    p = quantized(w, device)
    assert torch.isfinite(p.SCB).all() and p.SCB[1].item() == 1e5 and p.data[1, 3].item() == 127


def test_linear_with_fp16_weights_quantizes_fp32_weight_through_fp16(device):
    """The training path (has_fp16_weights=True) quantizes the weight at each forward: the
    same rounding, so the product is that of the fp16-rounded weight's codes."""
    layer = Linear8bitLt(128, 64, bias=False, has_fp16_weights=True).to(device)
    x = torch.randn(48, 128, device=device)
    codes, absmax = reference_codes(layer.weight.detach().cpu())
    xq_absmax = x.double().abs().amax(1, keepdim=True)
    xq = torch.round(x.double() * 127 / xq_absmax)
    want = (xq @ codes.double().t().to(device)) * xq_absmax * absmax.to(device) / (127 * 127)
    assert rel_err(layer(x), want) < 1e-3


def test_meta_scb_placeholder_with_float_weight(device):
    w = torch.randn(16, 32, dtype=torch.float16)
    p = Int8Params(w, requires_grad=False, has_fp16_weights=False, SCB=torch.empty(16, device="meta")).to(device)
    codes, absmax = reference_codes(w)
    assert_codes_equal(p.data, codes, w)
    assert torch.equal(p.SCB.cpu().double(), absmax)


def test_meta_scb_placeholder_with_int8_weight_then_set(device):
    """transformers: Int8Params(int8 value, requires_grad=False, **old.__dict__) with old's SCB
    on the meta device, moved to the device, then `weight.SCB = statistics`."""
    w = torch.randn(24, 32, dtype=torch.float16)
    codes, absmax = reference_codes(w)
    layer = Linear8bitLt(32, 24, bias=False, has_fp16_weights=False, device="meta")
    old = layer.weight
    old.SCB = torch.empty(24, device="meta")
    new = Int8Params(codes.clone(), requires_grad=False, **old.__dict__).to(device)
    assert new.dtype == torch.int8 and new.device.type == device and new.SCB is None
    new.SCB = absmax.float().to(device)
    layer._parameters["weight"] = new
    layer.to(device)
    x = torch.randn(40, 32, dtype=torch.float16, device=device)
    want = x.double() @ (codes.double() * absmax.unsqueeze(1) / 127).t().to(device)
    assert rel_err(layer(x), want) < 0.02


def test_int8_weight_without_scb_loads_scb_from_state_dict(device):
    w = torch.randn(24, 32, dtype=torch.float16)
    src = Linear8bitLt(32, 24, bias=False, has_fp16_weights=False)
    src.weight = Int8Params(w, requires_grad=False, has_fp16_weights=False)
    src = src.to(device)
    dst = Linear8bitLt(32, 24, bias=False, has_fp16_weights=False, device="meta")
    dst.weight = Int8Params(torch.zeros(24, 32, dtype=torch.int8), requires_grad=False,
                            SCB=torch.empty(24, device="meta")).to(device)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.weight.SCB, src.weight.SCB) and torch.equal(dst.weight.data, src.weight.data)


@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("rows", [8, 64])
@pytest.mark.parametrize("b_dtype", [torch.float16, torch.int8])
def test_matmul_uses_state_cb_whatever_b_layout(threshold, rows, b_dtype, device):
    N, K = 48, 96
    w = torch.randn(N, K, dtype=torch.float16)
    layer = Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=threshold).to(device)
    layer.weight = Int8Params(w, requires_grad=False, has_fp16_weights=False).to(device)
    layer.init_8bit_state()
    state = layer.state
    B = w.to(device) if b_dtype == torch.float16 else state.CB
    x = torch.randn(rows, K, dtype=torch.float16, device=device)
    got_t = bnb.matmul(x, B.t(), state=state)
    got = bnb.matmul(x, B, state=state)
    assert got_t.shape == (rows, N)
    assert torch.equal(got_t, got)
    codes, absmax = reference_codes(w)
    want = x.double() @ (codes.double() * absmax.unsqueeze(1) / 127).t().to(device)
    assert rel_err(got_t, want) < 0.02


def test_matmul_without_state_still_checks_b_layout(device):
    x = torch.randn(4, 96, dtype=torch.float16, device=device)
    B = torch.randn(48, 96, dtype=torch.float16, device=device)
    with pytest.raises(ValueError, match="second dimension"):
        bnb.matmul(x, B.t())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_outliers_are_values_at_or_above_the_threshold(dtype, device):
    """|x| >= threshold is an outlier in every op that decides it (a value exactly at the
    threshold included, one just below it not), on the CPU and CUDA alike."""
    A = torch.randn(37, 70, dtype=dtype).clamp(-3, 3)
    A[4, 9] = 6.0
    A[20, 33] = -6.0
    A[11, 50] = torch.tensor(6.0, dtype=dtype).nextafter(torch.tensor(0.0, dtype=dtype))  # just below
    A = A.to(device)
    want = torch.tensor([9, 33])
    _, row_stats, cols = bnb.functional.int8_vectorwise_quant(A, threshold=6.0)
    assert torch.equal(cols.cpu(), want)
    assert row_stats[4].item() < 6.0 and row_stats[11].item() == pytest.approx(A[11, 50].item())
    out_row, out_col, _, col_stats, cols = bnb.functional.int8_double_quant(A, threshold=6.0)
    assert torch.equal(cols.cpu(), want)
    assert (out_row[:, want.to(device)] == 0).all() and (out_col[:, want.to(device)] == 0).all()
    assert col_stats[9].item() < 6.0 and col_stats[50].item() == pytest.approx(abs(A[11, 50].item()))
    _, _, listed = torch.ops.bitsandbytes.int8_vectorwise_quant_outliers(A, 6.0)
    assert listed[0].item() == 2 and torch.equal(listed[1:3].cpu().long(), want)
    # bnb.matmul: those columns go through the 16-bit product; a threshold just above 6 has none
    from test_int8_matmul import ref_llm_int8
    W = torch.randn(24, 70, dtype=dtype, device=device)
    out = bnb.matmul(A, W, threshold=6.0)
    ref = ref_llm_int8(A, W, None, 6.0)
    assert ((out.double().cpu() - ref).norm() / ref.norm()).item() < 0.02
    assert not torch.equal(out, bnb.matmul(A, W, threshold=6.000001))
