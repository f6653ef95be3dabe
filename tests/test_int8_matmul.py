"""bnb.matmul (LLM.int8() with mixed-precision decomposition) forward and backward against
plain-torch references, with and without outliers, odd shapes, fp16/bf16, bad input."""
import pytest
import torch

import bitsandbytes as bnb
from test_int8_ops import ref_quant

DTYPES = [torch.float16, torch.bfloat16]


def make_input(shape, dtype, device, outlier_cols=(1, 4), value=12.0):
    A = torch.randn(shape)
    flat = A.reshape(-1, shape[-1])
    for c in outlier_cols:
        if c < shape[-1]:
            flat[:, c] *= value  # a whole feature dimension with large magnitude, as in LLMs
    return flat.reshape(shape).to(dtype).to(device)


def ref_llm_int8(A, W, bias, threshold):
    """The published algorithm in plain torch (float64): int8 product of the regular columns,
    16-bit (here exact) product of the outlier columns, plus bias."""
    K = A.shape[-1]
    A2 = A.reshape(-1, K).cpu()
    Wc = W.cpu()
    qa, sa, cols = ref_quant(A2, threshold)
    qw, sw, _ = ref_quant(Wc, 0.0)
    C = qa.double() @ qw.double().t()
    out = C * sa.double()[:, None] * sw.double()[None, :] / 127**2
    if threshold > 0 and cols.any():
        out += A2.double()[:, cols] @ Wc.double()[:, cols].t()
    if bias is not None:
        out += bias.cpu().double()
    return out.reshape(*A.shape[:-1], W.shape[0])


def rel_err(x, ref):
    return ((x.double().cpu() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("shape", [(64, 96, 80), (2, 40, 13, 33), (1, 1, 64, 48), (48, 4099, 65)])
def test_matmul_forward(device, dtype, threshold, shape):
    *a_shape, n = shape
    A = make_input(tuple(a_shape), dtype, device)
    W = (torch.randn(n, a_shape[-1]) * 0.1).to(dtype).to(device)
    bias = torch.randn(n).to(dtype).to(device)
    out = bnb.matmul(A, W, threshold=threshold, bias=bias)
    assert out.dtype == dtype and out.shape == (*a_shape[:-1], n) and out.device == A.device
    ref = ref_llm_int8(A, W, bias, threshold)
    # Same decomposition: only the 16-bit rounding of inputs/outputs differs.
    assert rel_err(out, ref) < (3e-3 if dtype == torch.float16 else 1.2e-2)
    exact = (A.double().cpu() @ W.double().cpu().t() + bias.double().cpu())
    assert rel_err(out, exact) < (0.02 if threshold > 0 else 0.06)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outlier_columns_are_16bit(device, dtype):
    A = make_input((96, 256), dtype, device, outlier_cols=(3, 100, 200), value=40.0)
    W = (torch.randn(128, 256) * 0.05).to(dtype).to(device)
    exact = A.double().cpu() @ W.double().cpu().t()
    with_decomp = rel_err(bnb.matmul(A, W, threshold=6.0), exact)
    without = rel_err(bnb.matmul(A, W, threshold=0.0), exact)
    assert with_decomp < 0.012
    assert with_decomp < without / 2  # the outliers no longer crush the other columns' scale
    state = bnb.MatmulLtState()
    bnb.matmul(A, W, state=state, threshold=6.0)
    assert set(state.idx.tolist()) == {3, 100, 200}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 200])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_int8_weight(device, dtype, rows, threshold):
    """B given as int8 CB with state.SCB: few rows take the weight-streaming path, many the GEMM."""
    K, N = 136, 72
    A = make_input((rows, K), dtype, device)
    W = (torch.randn(N, K) * 0.1).to(dtype).to(device)
    CB, SCB, _ = bnb.functional.int8_vectorwise_quant(W)
    state = bnb.MatmulLtState(has_fp16_weights=False, threshold=threshold)
    state.CB, state.SCB = CB, SCB
    out = bnb.matmul(A, CB, state=state, threshold=threshold)
    Wq = CB.double().cpu() * SCB.double().cpu()[:, None] / 127
    exact = A.double().cpu() @ Wq.t()
    assert out.dtype == dtype and out.shape == (rows, N)
    assert rel_err(out, exact) < (0.02 if threshold > 0 or rows <= 32 else 0.06)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_matmul_backward_fp16_weights(device, dtype, threshold):
    A = make_input((3, 40, 72), dtype, device).requires_grad_()
    W = (torch.randn(56, 72) * 0.1).to(dtype).to(device).requires_grad_()
    bias = torch.randn(56).to(dtype).to(device).requires_grad_()
    g = torch.randn(3, 40, 56).to(dtype).to(device)
    bnb.matmul(A, W, threshold=threshold, bias=bias).backward(g)
    A64, W64, b64 = (t.detach().double().cpu().requires_grad_() for t in (A, W, bias))
    torch.nn.functional.linear(A64, W64, b64).backward(g.double().cpu())
    for got, want in ((A.grad, A64.grad), (W.grad, W64.grad), (bias.grad, b64.grad)):
        assert got.dtype == dtype
        assert rel_err(got, want) < 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_backward_int8_weights(device, dtype):
    """A frozen int8 weight still passes gradients to A (so adapters can train)."""
    A = make_input((50, 64), dtype, device).requires_grad_()
    W = (torch.randn(40, 64) * 0.1).to(dtype).to(device)
    CB, SCB, _ = bnb.functional.int8_vectorwise_quant(W)
    state = bnb.MatmulLtState(has_fp16_weights=False, threshold=6.0)
    state.CB, state.SCB = CB, SCB
    g = torch.randn(50, 40).to(dtype).to(device)
    bnb.matmul(A, CB, state=state, threshold=6.0).backward(g)
    Wq = CB.double().cpu() * SCB.double().cpu()[:, None] / 127
    assert A.grad.dtype == dtype
    assert rel_err(A.grad, g.double().cpu() @ Wq) < 1e-2


def test_fp32_input_cpu():
    A = make_input((40, 32), torch.float32, "cpu")
    W = torch.randn(24, 32) * 0.1
    out = bnb.matmul(A, W, threshold=6.0)
    assert out.dtype == torch.float32
    assert rel_err(out, A.double() @ W.double().t()) < 0.02


def test_out_and_empty(device):
    A = make_input((40, 32), torch.float16, device)
    W = (torch.randn(24, 32) * 0.1).half().to(device)
    out = torch.empty(40, 24, dtype=torch.float16, device=device)
    res = bnb.matmul(A, W, out=out)
    assert res.data_ptr() == out.data_ptr()
    empty = bnb.matmul(A[:0], W, threshold=6.0)
    assert empty.shape == (0, 24)


def test_bad_input(device):
    A = torch.randn(4, 8, dtype=torch.float16, device=device)
    CB = torch.zeros(3, 8, dtype=torch.int8, device=device)
    with pytest.raises(ValueError, match="state.SCB"):
        bnb.matmul(A, CB)
    with pytest.raises(ValueError, match="K = 8"):
        bnb.matmul(A, torch.randn(3, 9, dtype=torch.float16, device=device))
    with pytest.raises(ValueError, match="bias must hold 3 values"):
        bnb.matmul(A, torch.randn(3, 8, dtype=torch.float16, device=device),
                   bias=torch.zeros(4, device=device))
    state = bnb.MatmulLtState(has_fp16_weights=False)
    state.SCB = torch.ones(5, device=device)
    with pytest.raises(ValueError, match="one value per row"):
        bnb.matmul(A, CB, state=state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_wrong_device():
    with pytest.raises(ValueError, match="one device"):
        bnb.matmul(torch.randn(4, 8, dtype=torch.float16, device="cuda"), torch.randn(3, 8, dtype=torch.float16))


def test_state_fields():
    s = bnb.MatmulLtState()
    assert s.CB is None and s.SCB is None and s.threshold == 0.0
    assert s.has_fp16_weights and s.is_training and not s.use_pool
    s.CB, s.SCB = torch.zeros(1), torch.zeros(1)
    s.reset_grads()
    assert s.CB is None and s.SCB is None
