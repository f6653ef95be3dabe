"""The outlier path that stays on the device: int8_vectorwise_quant_outliers (the column list,
count + ascending indices) and int8_mm_dequant_outliers (dequantization with the 16-bit
product of the listed columns fused), against plain torch; and bnb.matmul's forward with
outliers, which must not synchronise with the host."""
import pytest
import torch

import bitsandbytes as bnb

from test_int8_ops import ref_quant, with_outliers

ops = torch.ops.bitsandbytes
DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def listed(outlier_list):
    lst = outlier_list.cpu()
    return lst[1:1 + int(lst[0])].long()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 7), (33, 4099), (3, 5, 13), (0, 8), (40, 9000)])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_quant_outlier_list(device, dtype, shape, threshold):
    A = with_outliers(shape, dtype, device, cols=(2, 5, 8191, 8999))
    q, stats, lst = ops.int8_vectorwise_quant_outliers(A, threshold)
    rq, rstats, rcols = ref_quant(A.cpu(), threshold)
    assert lst.dtype == torch.int32 and lst.shape == (shape[-1] + 1,) and lst.device == A.device
    assert torch.equal(q.cpu(), rq)
    torch.testing.assert_close(stats.cpu(), rstats, rtol=0, atol=0)
    assert torch.equal(listed(lst), torch.nonzero(rcols).view(-1))  # ascending, all of them


def test_quant_outlier_list_many_columns(device):
    """Every column an outlier: the list is the full ascending range (more than one tile of the
    CUDA compaction)."""
    A = torch.full((3, 9000), 10.0, device=device)
    A[1, ::2] = 7.0
    _, _, lst = ops.int8_vectorwise_quant_outliers(A, 6.0)
    assert torch.equal(listed(lst), torch.arange(9000))


def ref_dequant_outliers(C, rs, cs, bias, X, W, cols, dtype):
    """Plain torch, in the dtype's precision where the forward rounds: the int8 weight
    columns dequantized as CB.to(dtype) * (SCB.to(dtype) / 127)."""
    v = C.double() * rs.double()[:, None] * cs.double()[None, :] / 127 ** 2
    if bias is not None:
        v = v + bias.double()
    if cols.numel():
        sub_A = X[:, cols].cpu()
        if W.dtype == torch.int8:
            sub_B = (W[:, cols].cpu().to(dtype) * (cs.cpu().to(dtype)[:, None] / 127)).to(dtype)
        else:
            sub_B = W[:, cols].cpu()
        v = v + sub_A.double() @ sub_B.double().t()
    return v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("w_int8", [False, True])
@pytest.mark.parametrize("M,N,K,n_out", [(5, 12, 16, 3), (70, 1030, 300, 0), (33, 257, 130, 80), (2, 8, 70, 70)])
def test_mm_dequant_outliers(device, dtype, w_int8, M, N, K, n_out):
    """n_out columns listed: 80 and 70 are more than the CUDA kernel gathers (64), the rest
    are read in place."""
    C = torch.randint(-20000, 20000, (M, N), dtype=torch.int32)
    rs, cs = torch.rand(M) * 3, torch.rand(N) * 2 + 0.1
    bias = torch.randn(N).to(dtype)
    X = torch.randn(M, K).to(dtype)
    W = torch.randint(-127, 128, (N, K), dtype=torch.int8) if w_int8 else torch.randn(N, K).to(dtype)
    cols = torch.randperm(K)[:n_out].sort().values
    lst = torch.zeros(K + 1, dtype=torch.int32)
    lst[0] = n_out
    lst[1:1 + n_out] = cols.int()
    d = lambda t: t.to(device)
    out = ops.int8_mm_dequant_outliers(d(C), d(rs), d(cs), d(bias), d(X), d(W), d(lst), dtype)
    assert out.dtype == dtype and out.shape == (M, N) and out.device.type == device
    ref = ref_dequant_outliers(C, rs, cs, bias, X, W, cols, dtype)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol * max(1.0, ref.abs().max().item()))


def test_mm_dequant_outliers_matches_host_path(device):
    """The dequantized product plus the listed columns' 16-bit product, as the host-indexed path
    (int8_mm_dequant, then the gathered columns multiplied) computes it."""
    M, N, K = 40, 96, 64
    C = torch.randint(-20000, 20000, (M, N), dtype=torch.int32, device=device)
    rs, cs = torch.rand(M, device=device), torch.rand(N, device=device) + 0.1
    X = torch.randn(M, K, device=device).half()
    W = torch.randn(N, K, device=device).half()
    cols = torch.tensor([3, 17, 40], device=device)
    lst = torch.zeros(K + 1, dtype=torch.int32, device=device)
    lst[0] = 3
    lst[1:4] = cols.int()
    a = ops.int8_mm_dequant_outliers(C, rs, cs, None, X, W, lst, torch.float16)
    b = (ops.int8_mm_dequant(C, rs, cs, torch.float32).double()
         + X[:, cols].double() @ W[:, cols].double().t())
    torch.testing.assert_close(a.double(), b, rtol=2e-3, atol=2e-3)


def test_opcheck_outlier_ops(device):
    A = with_outliers((9, 21), torch.float16, device)
    C = torch.randint(-1000, 1000, (9, 6), dtype=torch.int32, device=device)
    rs, cs = torch.rand(9, device=device), torch.rand(6, device=device)
    bias = torch.randn(6, dtype=torch.float16, device=device)
    CB = torch.randint(-127, 128, (6, 21), dtype=torch.int8, device=device)
    _, _, lst = ops.int8_vectorwise_quant_outliers(A, 6.0)
    torch.library.opcheck(ops.int8_vectorwise_quant_outliers.default, (A, 6.0))
    torch.library.opcheck(ops.int8_vectorwise_quant_outliers.default, (A.float(), 0.0))
    torch.library.opcheck(ops.int8_mm_dequant_outliers.default, (C, rs, cs, bias, A, CB, lst, torch.float16))
    torch.library.opcheck(ops.int8_mm_dequant_outliers.default,
                          (C, rs, cs, None, A, torch.randn(6, 21, device=device).half(), lst, torch.float16))


def test_mm_dequant_outliers_errors(device):
    C = torch.zeros(4, 6, dtype=torch.int32, device=device)
    rs, cs = torch.ones(4, device=device), torch.ones(6, device=device)
    X = torch.zeros(4, 8, dtype=torch.float16, device=device)
    lst = torch.zeros(9, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="W must be"):
        ops.int8_mm_dequant_outliers(C, rs, cs, None, X, torch.zeros(6, 7, dtype=torch.int8, device=device), lst,
                                     torch.float16)
    with pytest.raises(ValueError, match="outlier_list must hold 9 values"):
        ops.int8_mm_dequant_outliers(C, rs, cs, None, X, torch.zeros(6, 8, dtype=torch.int8, device=device),
                                     lst[:5], torch.float16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("int8_weight", [False, True])
def test_matmul_outliers_match_host_indexed(device, dtype, int8_weight):
    """bnb.matmul with outliers against the same decomposition written in plain torch."""
    A = with_outliers((70, 96), dtype, device, cols=(3, 50, 77)) * 2
    W = (torch.randn(40, 96) * 0.1).to(dtype).to(device)
    bias = torch.randn(40).to(dtype).to(device)
    state = bnb.MatmulLtState()
    if int8_weight:
        state.has_fp16_weights = False
    out = bnb.matmul(A, W, state=state, threshold=6.0, bias=bias)
    cols = state.idx.cpu()
    rq, rstats, rcols = ref_quant(A.cpu(), 6.0)
    assert torch.equal(cols, torch.nonzero(rcols).view(-1))
    wq, wstats, _ = ref_quant(W.cpu(), 0.0)
    C = rq.int() @ wq.int().t()
    Wsub = wq if int8_weight else W.cpu()
    ref = ref_dequant_outliers(C, rstats, wstats, bias.cpu(), A.cpu(), Wsub, cols, dtype)
    tol = 2e-3 if dtype == torch.float16 else 1.6e-2
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("int8_weight", [False, True])
def test_forward_with_outliers_does_not_synchronise(int8_weight):
    layer = bnb.nn.Linear8bitLt(256, 128, has_fp16_weights=not int8_weight, threshold=6.0).cuda().half()
    x = torch.randn(64, 256, device="cuda") * 0.5  # |x| < 6 but for the planted columns
    x[5, [1, 9, 200]] = torch.tensor([30.0, -25.0, 40.0], device="cuda")
    x = x.half()
    with torch.no_grad():
        layer(x)  # first call: weight quantization and one-time set-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(2):
                out = layer(x)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(out).all()
    assert set(layer.state.idx.tolist()) == {1, 9, 200}


# Shapes of int8_weight_linear that select each kernel for 16-bit activations: on sm_90 the
# cluster kernel up to 32 rows of A while a slice of K fits its shared memory, else (and on
# every other device) the split-K kernel. Tails of K (not a multiple of the split-K slice, of
# 256, of 16, of 8), of N and of the 8-token groups included; ((32, 1024), 8200) gives each
# cluster many weight tiles.
WEIGHT_LINEAR_CLUSTER_SHAPES = [((1, 13), 7), ((16, 1000), 257), ((2, 3, 64), 33), ((20, 1040), 45), ((3, 2056), 16),
                                ((9, 4100), 40), ((16, 8192), 64), ((32, 4608), 200), ((5, 36864), 24),
                                ((7, 2064), 300), ((24, 4096), 129), ((32, 1024), 8200)]
WEIGHT_LINEAR_SPLITK_SHAPES = [((40, 520), 70), ((33, 4100), 45), ((2, 20, 1000), 257),
                               ((32, 24576), 40)]  # the last: K past the cluster kernel's shared memory


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", WEIGHT_LINEAR_CLUSTER_SHAPES + WEIGHT_LINEAR_SPLITK_SHAPES)
def test_weight_linear_16bit_kernels(dtype, shape):
    """The tensor-core kernels of int8_weight_linear against plain torch."""
    a_shape, n = shape
    A = torch.randn(a_shape).to(dtype).cuda()
    CB = torch.randint(-127, 128, (n, a_shape[-1]), dtype=torch.int8, device="cuda")
    SCB = torch.rand(n, device="cuda") + 0.1
    bias = torch.randn(n).to(dtype).cuda()
    out = ops.int8_weight_linear(A, CB, SCB, bias)
    W = CB.cpu().double() * SCB.cpu().double()[:, None] / 127
    ref = A.cpu().double() @ W.t() + bias.cpu().double()
    tol = 2e-3 if dtype == torch.float16 else 1.6e-2
    torch.testing.assert_close(out.cpu().double(), ref, rtol=tol, atol=tol * max(1.0, ref.abs().amax().item()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("M, K", [(16, 1024), (40, 2048)])  # the cluster kernel on sm_90; the split-K one
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_weight_linear_converts_every_int8_exactly(M, K, dtype):
    """Row n of the weight holds the value n - 127 (all of -127..127); one-hot activations
    read the weight back through each tensor-core kernel: exactly the integers, so the
    int8 -> 16-bit conversion in registers is exact for every byte."""
    values = torch.arange(-127, 128, dtype=torch.int8)
    CB = values[:, None].repeat(1, K).cuda()
    SCB = torch.full((255,), 127.0, device="cuda")
    A = torch.zeros(M, K, dtype=dtype, device="cuda")
    A[torch.arange(M), torch.arange(M) * 37] = 1  # token m reads column 37 m
    out = ops.int8_weight_linear(A, CB, SCB, None)
    expected = values.to(dtype)[None, :].expand(M, 255)
    assert torch.equal(out.cpu(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("M", [12, 40])  # the cluster kernel on sm_90; the split-K one
@pytest.mark.parametrize("offset", [1, 4])
def test_weight_linear_unaligned_input(M, offset):
    """Activations that start 2 or 8 bytes past an aligned address (views into a larger
    buffer): 2 bytes take the element-wise staging; same result as plain torch."""
    K, N = 1536, 160
    buf = torch.randn(M * K + offset).half().cuda()
    A = buf[offset:].view(M, K)
    CB = torch.randint(-127, 128, (N, K), dtype=torch.int8, device="cuda")
    SCB = torch.rand(N, device="cuda") + 0.1
    out = ops.int8_weight_linear(A, CB, SCB, None)
    ref = A.cpu().double() @ (CB.cpu().double() * SCB.cpu().double()[:, None] / 127).t()
    torch.testing.assert_close(out.cpu().double(), ref, rtol=2e-3, atol=2e-3 * ref.abs().amax().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_linear8bitlt_decode_fast_path(dtype):
    """The decode shortcut of Linear8bitLt.forward gives the general path's result."""
    layer = bnb.nn.Linear8bitLt(256, 96, has_fp16_weights=False, threshold=6.0).to(dtype).cuda()
    x = torch.randn(3, 5, 256).to(dtype).cuda()
    with torch.no_grad():
        fast = layer(x)
        general = layer._forward_general(x)
    assert fast.shape == (3, 5, 96) and torch.equal(fast, general)
    # with gradients the general path runs, same numbers
    xg = x.clone().requires_grad_()
    assert torch.equal(layer(xg).detach(), fast)
