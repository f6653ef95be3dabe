"""LLM.int8() ops against a plain-torch reference: quantization with outlier columns,
the int8 GEMM, dequantization with fused bias, the int8-weight linear; opcheck; bad input."""
import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F

DTYPES = [torch.float16, torch.bfloat16, torch.float32]
SHAPES = [(1, 7), (33, 4099), (3, 5, 13), (257, 64), (9, 4096), (0, 8)]


def ref_quant(A, threshold, dim=-1):
    """int8 quantization along rows (dim=-1) or columns (dim=0) of A as a matrix."""
    K = A.shape[-1]
    X = A.float().reshape(-1, K)
    absx = X.abs()
    outl = absx >= threshold if threshold > 0 else torch.zeros_like(absx, dtype=torch.bool)
    regular = absx.masked_fill(outl, 0)
    axis = 1 if dim == -1 else 0
    stats = regular.amax(dim=axis) if X.shape[axis] else torch.zeros(X.shape[1 - axis])
    # 127 * (1 / absmax) with a correctly rounded reciprocal (tensor / tensor), as the kernels
    # and the reference library round it.
    scale = torch.where(stats > 0, (torch.ones_like(stats) / stats) * 127.0, torch.zeros_like(stats))
    q = torch.round(X * (scale[:, None] if axis == 1 else scale[None, :])).clamp(-127, 127)
    cols = outl.any(dim=0)
    q[outl] = 0
    q[:, cols] = 0
    return q.to(torch.int8).reshape(A.shape), stats, cols


def with_outliers(shape, dtype, device, cols=(2, 5)):
    A = torch.randn(shape) * 2
    if A.numel():
        A = A.reshape(-1, shape[-1])
        for c in cols:
            if c < shape[-1]:
                A[torch.randint(0, A.shape[0], (1,)), c] = 9.5 * (1 if c % 2 else -1)
        A = A.reshape(shape)
    return A.to(dtype).to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_vectorwise_quant(device, dtype, shape, threshold):
    A = with_outliers(shape, dtype, device)
    q, stats, cols = F.int8_vectorwise_quant(A, threshold=threshold)
    rq, rstats, rcols = ref_quant(A.cpu(), threshold)
    assert q.dtype == torch.int8 and q.shape == A.shape and q.device == A.device
    assert stats.shape == (A.numel() // shape[-1],) and stats.dtype == torch.float32
    torch.testing.assert_close(stats.cpu(), rstats, rtol=0, atol=0)
    assert torch.equal(q.cpu(), rq)
    if threshold == 0:
        assert cols is None
    else:
        assert torch.equal(cols.cpu(), torch.nonzero(rcols).view(-1))
        if A.numel() and shape[-1] > 5:
            assert set(cols.tolist()) >= {5}  # the planted positive outlier column


@pytest.mark.parametrize("dtype", DTYPES)
def test_vectorwise_roundtrip(device, dtype):
    A = torch.randn(65, 1031).to(dtype).to(device)
    q, stats, _ = F.int8_vectorwise_quant(A)
    back = F.int8_vectorwise_dequant(q, stats)
    assert back.dtype == torch.float32
    ref = q.cpu().float() * stats.cpu()[:, None] / 127
    torch.testing.assert_close(back.cpu(), ref, rtol=1e-6, atol=0)
    # Half a quantization step per row at most.
    err = (back.cpu() - A.cpu().float()).abs().amax(dim=1)
    assert bool((err <= stats.cpu() / 127 * 0.5 + 1e-6).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_double_quant(device, dtype, threshold):
    A = with_outliers((71, 133), dtype, device)
    out_row, out_col, row_stats, col_stats, cols = F.int8_double_quant(A, threshold=threshold)
    rq, rstats, rcols = ref_quant(A.cpu(), threshold)
    assert torch.equal(out_row.cpu(), rq) and torch.equal(row_stats.cpu(), rstats)
    cq, cstats, _ = ref_quant(A.cpu(), threshold, dim=0)
    assert torch.equal(col_stats.cpu(), cstats)
    assert torch.equal(out_col.cpu(), cq)
    if threshold > 0:
        assert torch.equal(cols.cpu(), torch.nonzero(rcols).view(-1)) and cols.numel() >= 1


@pytest.mark.parametrize("shape", [((1, 7), 5), ((33, 4099), 65), ((2, 3, 13), 17), ((130, 256), 300),
                                   ((0, 16), 4), ((5, 16), 0)])
def test_linear_matmul_exact(device, shape):
    a_shape, n = shape
    A = torch.randint(-127, 128, a_shape, dtype=torch.int8, device=device)
    B = torch.randint(-127, 128, (n, a_shape[-1]), dtype=torch.int8, device=device)
    C = F.int8_linear_matmul(A, B)
    assert C.dtype == torch.int32 and C.shape == (*a_shape[:-1], n)
    ref = (A.cpu().long() @ B.cpu().long().t()).int()
    assert torch.equal(C.cpu(), ref)


def test_linear_matmul_extremes(device):
    # Worst case for the accumulator: every product is 127 * 127 (or -127 * 127).
    A = torch.full((3, 4096), 127, dtype=torch.int8, device=device)
    B = torch.full((5, 4096), -127, dtype=torch.int8, device=device)
    assert bool((F.int8_linear_matmul(A, B).cpu() == -127 * 127 * 4096).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("M,N", [(37, 129), (16, 256)])
def test_mm_dequant(device, dtype, with_bias, M, N):
    C = torch.randint(-2**20, 2**20, (M, N), dtype=torch.int32, device=device)
    rs = torch.rand(M, device=device) * 3
    cs = torch.rand(N, device=device) * 3
    bias = torch.randn(N).to(dtype).to(device) if with_bias else None
    out = F.int8_mm_dequant(C, rs, cs, bias=bias, dtype=dtype)
    ref = C.cpu().double() * rs.cpu().double()[:, None] * cs.cpu().double()[None, :] / 127**2
    if with_bias:
        ref = ref + bias.cpu().double()
    assert out.dtype == dtype
    tol = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol)


def test_mm_dequant_default_dtype(device):
    C = torch.randint(-100, 100, (4, 6), dtype=torch.int32, device=device)
    s = torch.ones(4, device=device), torch.ones(6, device=device)
    assert F.int8_mm_dequant(C, *s).dtype == torch.float16
    assert F.int8_mm_dequant(C, *s, bias=torch.zeros(6, dtype=torch.bfloat16, device=device)).dtype == torch.bfloat16


def test_mm_dequant_schema_defaults(device):
    """The reference's schema: dtype defaults to float16; a bias of another float dtype is cast."""
    C = torch.randint(-2**16, 2**16, (19, 70), dtype=torch.int32, device=device)
    rs, cs = torch.rand(19, device=device), torch.rand(70, device=device)
    ref = C.cpu().double() * rs.cpu().double()[:, None] * cs.cpu().double() / 127**2
    out = torch.ops.bitsandbytes.int8_mm_dequant(C, rs, cs)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.cpu().double(), ref, rtol=2e-3, atol=2e-3)
    bias = torch.randn(70, device=device)
    out = torch.ops.bitsandbytes.int8_mm_dequant(C, rs, cs, torch.bfloat16, bias=bias)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.cpu().double(), ref + bias.cpu().double(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("with_bias", [False, True])
def test_scaled_mm_is_matmul_then_dequant(device, with_bias):
    A = torch.randint(-128, 128, (10, 20), dtype=torch.int8, device=device)
    B = torch.randint(-128, 128, (30, 20), dtype=torch.int8, device=device)
    rs, cs = torch.rand(10, device=device), torch.rand(30, device=device)
    bias = torch.randn(30, dtype=torch.float16, device=device) if with_bias else None
    ops = torch.ops.bitsandbytes
    out = ops.int8_scaled_mm(A, B, rs, cs, bias)
    want = ops.int8_mm_dequant(ops.int8_linear_matmul(A, B), rs, cs, None, bias)
    assert out.dtype == torch.float16 and torch.equal(out, want)
    ref = (A.cpu().double() @ B.cpu().double().t()) * rs.cpu().double()[:, None] * cs.cpu().double() / 127**2
    if with_bias:
        ref = ref + bias.cpu().double()
    torch.testing.assert_close(out.cpu().double(), ref, rtol=2e-3, atol=2e-3)
    assert ops.int8_scaled_mm(A, B, rs, cs, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_out_overloads(device):
    """int8_linear_matmul.out writes the product into out, and refuses an out of another shape
    or dtype."""
    A = torch.randint(-128, 128, (10, 20), dtype=torch.int8, device=device)
    B = torch.randint(-128, 128, (30, 20), dtype=torch.int8, device=device)
    out = torch.empty(10, 30, dtype=torch.int32, device=device)
    assert torch.ops.bitsandbytes.int8_linear_matmul.out(A, B, out) is None
    assert torch.equal(out.cpu(), (A.cpu().long() @ B.cpu().long().t()).int())
    assert F.int8_linear_matmul(A, B, out=out) is out
    with pytest.raises(ValueError, match="shape"):
        torch.ops.bitsandbytes.int8_linear_matmul.out(A, B, torch.empty(10, 31, dtype=torch.int32, device=device))
    with pytest.raises(TypeError, match="int32|Int"):
        torch.ops.bitsandbytes.int8_linear_matmul.out(A, B, torch.empty(10, 30, device=device))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [((1, 13), 7), ((16, 1000), 257), ((2, 3, 64), 33), ((20, 1040), 45),
                                   ((3, 2048), 16), ((0, 32), 8)])
def test_weight_linear(device, dtype, shape):
    a_shape, n = shape
    A = torch.randn(a_shape).to(dtype).to(device)
    CB = torch.randint(-127, 128, (n, a_shape[-1]), dtype=torch.int8, device=device)
    SCB = torch.rand(n, device=device) + 0.1
    bias = torch.randn(n).to(dtype).to(device)
    out = F.int8_weight_linear(A, CB, SCB, bias)
    W = CB.cpu().double() * SCB.cpu().double()[:, None] / 127
    ref = A.cpu().double() @ W.t() + bias.cpu().double()
    assert out.dtype == dtype and out.shape == (*a_shape[:-1], n)
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    largest = ref.abs().amax().item() if ref.numel() else 1.0
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol * max(1.0, largest))


def _opcheck_samples(device):
    A = with_outliers((9, 21), torch.float16, device)
    q = torch.randint(-127, 128, (9, 21), dtype=torch.int8, device=device)
    B = torch.randint(-127, 128, (6, 21), dtype=torch.int8, device=device)
    C = torch.randint(-1000, 1000, (9, 6), dtype=torch.int32, device=device)
    rs, cs = torch.rand(9, device=device), torch.rand(6, device=device)
    bias = torch.randn(6, dtype=torch.float16, device=device)
    ops = torch.ops.bitsandbytes
    return [
        (ops.int8_vectorwise_quant.default, (A, 6.0)),
        (ops.int8_vectorwise_quant.default, (A.float(), 0.0)),
        (ops.int8_vectorwise_dequant.default, (q, rs)),
        (ops.int8_double_quant.default, (A.to(torch.bfloat16), 6.0)),
        (ops.int8_linear_matmul.default, (q, B)),
        (ops.int8_mm_dequant.default, (C, rs, cs, torch.float16, bias)),
        (ops.int8_mm_dequant.default, (C, rs, cs)),
        (ops.int8_mm_dequant.default, (C, rs, cs, torch.bfloat16, bias)),
        (ops.int8_weight_linear.default, (A, B, cs, bias)),
    ]


def test_opcheck(device):
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_weight_linear_gradient(device, dtype):
    """int8_weight_linear is differentiable in A and bias (the int8 weight is frozen)."""
    A = torch.randn(5, 3, 24).to(dtype).to(device).requires_grad_()
    CB = torch.randint(-127, 128, (10, 24), dtype=torch.int8, device=device)
    SCB = torch.rand(10, device=device) + 0.1
    bias = torch.randn(10).to(dtype).to(device).requires_grad_()
    torch.library.opcheck(torch.ops.bitsandbytes.int8_weight_linear.default, (A, CB, SCB, bias))
    g = torch.randn(5, 3, 10).to(dtype).to(device)
    F.int8_weight_linear(A, CB, SCB, bias).backward(g)
    W = CB.double().cpu() * SCB.double().cpu()[:, None] / 127
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    torch.testing.assert_close(A.grad.double().cpu(), g.double().cpu() @ W, rtol=tol, atol=tol * 10)
    torch.testing.assert_close(bias.grad.double().cpu(), g.double().cpu().sum((0, 1)), rtol=tol, atol=tol * 10)


def test_bad_input(device):
    A = torch.randn(4, 8, dtype=torch.float16, device=device)
    q = torch.randint(-127, 128, (4, 8), dtype=torch.int8, device=device)
    with pytest.raises(TypeError, match="int8_vectorwise_quant: A must be float32, float16 or bfloat16"):
        F.int8_vectorwise_quant(q)
    with pytest.raises(ValueError, match="must equal B's second dimension"):
        F.int8_linear_matmul(q, torch.zeros(3, 7, dtype=torch.int8, device=device))
    with pytest.raises(TypeError, match="B must be Char"):
        F.int8_linear_matmul(q, torch.zeros(3, 8, device=device))
    with pytest.raises(ValueError, match="dtype must be torch.int32"):
        F.int8_linear_matmul(q, q, dtype=torch.float16)
    with pytest.raises(ValueError, match="stats must hold 4 values"):
        F.int8_vectorwise_dequant(q, torch.ones(3, device=device))
    C = torch.zeros(4, 5, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="col_stats must hold 5 values"):
        F.int8_mm_dequant(C, torch.ones(4, device=device), torch.ones(6, device=device))
    with pytest.raises(ValueError, match="SCB must hold 3 values"):
        F.int8_weight_linear(A, torch.zeros(3, 8, dtype=torch.int8, device=device), torch.ones(4, device=device))
    with pytest.raises(ValueError, match="scalar"):
        F.int8_vectorwise_quant(torch.tensor(1.0, device=device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_wrong_device():
    q = torch.zeros(4, 8, dtype=torch.int8, device="cuda")
    with pytest.raises(ValueError, match="same device"):
        F.int8_linear_matmul(q, torch.zeros(3, 8, dtype=torch.int8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("M", [1, 16, 33])
def test_weight_linear_tensor_cores_match_cuda_cores(dtype, M):
    """16-bit activations take the tensor-core kernel, float32 ones the CUDA-core kernel:
    both must agree on the same (16-bit representable) data."""
    K, N = 4112, 300
    A = torch.randn(M, K, device="cuda").to(dtype)
    CB = torch.randint(-127, 128, (N, K), dtype=torch.int8, device="cuda")
    SCB = torch.rand(N, device="cuda") + 0.5
    bias = torch.randn(N, device="cuda").to(dtype)
    tc = F.int8_weight_linear(A, CB, SCB, bias).float()
    cc = F.int8_weight_linear(A.float(), CB, SCB, bias.float())
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    torch.testing.assert_close(tc, cc, rtol=tol, atol=tol * cc.abs().amax().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_synchronisation():
    """The decode path of bnb.matmul never waits for the device (its outlier columns stay there;
    the raw int8_vectorwise_quant op returns their indices, in the reference's schema, and so
    must wait)."""
    A = with_outliers((64, 512), torch.float16, "cuda")
    CB = torch.randint(-127, 128, (96, 512), dtype=torch.int8, device="cuda")
    state = bnb.MatmulLtState(has_fp16_weights=False, threshold=6.0)
    state.CB, state.SCB = CB, torch.rand(96, device="cuda") + 0.5
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            bnb.matmul(A[:8], CB, state=state, threshold=6.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")



def test_nan_threshold_is_refused(device):
    # NaN flags no value as regular: every row quantized to zeros with a zero scale, silently
    A = torch.randn(4, 8, device=device)
    for call in (lambda: F.int8_vectorwise_quant(A, threshold=float("nan")),
                 lambda: F.int8_double_quant(A, threshold=float("nan")),
                 lambda: torch.ops.bitsandbytes.int8_vectorwise_quant_outliers(A, float("nan"))):
        with pytest.raises(ValueError, match="threshold must be a number \\(0 for no outliers\\), got nan"):
            call()
