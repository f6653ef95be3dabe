"""LLM.int8() with NaN and Inf: a row's absmax is NaN when it holds a NaN, else Inf when it holds an
Inf, so outputs are NaN where F.linear's are and keep the sign of Inf; bad raw arguments (an
outlier list out of range, a K the int32 sums cannot hold) are errors, never reads out of bounds."""
import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes._formats import INT8_MAX_K

ops = torch.ops.bitsandbytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_vectorwise_quant_rows_with_nan_or_inf(device, dtype):
    A = torch.randn(6, 300, device=device).to(dtype)
    clean_q, clean_stats, _ = F.int8_vectorwise_quant(A)
    A[1, 7] = float("nan")
    A[3, 9] = float("-inf")
    A[4, 1], A[4, 2] = float("inf"), float("inf")  # two Infs: Inf - Inf may meet in a product
    q, stats, _ = F.int8_vectorwise_quant(A)
    assert stats[1].isnan() and stats[3] == float("inf") and stats[4].isnan()
    ok = torch.tensor([0, 2, 5], device=device)
    assert torch.equal(q[ok], clean_q[ok]) and torch.equal(stats[ok], clean_stats[ok])
    back = F.int8_vectorwise_dequant(q, stats)
    assert back[1].isnan().all() and back[4].isnan().all()
    assert back[3, 9] == float("-inf")
    others = torch.arange(300, device=device) != 9
    assert back[3][others].isnan().all()  # 0 * Inf: NaN, not a finite value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_double_quant_columns_with_nan_or_inf(device, dtype):
    """The column statistics follow the row rule (NaN, one Inf, two Infs in far-apart rows),
    so a column dequantizes to NaN or keeps its Inf rather than coming back finite."""
    A = (torch.randn(700, 40, device=device) * 2).to(dtype)
    _, clean_col, _, clean_stats, _ = F.int8_double_quant(A)
    A[600, 1] = float("nan")
    A[3, 2] = float("-inf")
    A[10, 3], A[690, 3] = float("inf"), float("-inf")
    row_q, col_q, row_stats, col_stats, _ = F.int8_double_quant(A)
    assert col_stats[1].isnan() and col_stats[2] == float("inf") and col_stats[3].isnan()
    ok = torch.ones(40, dtype=torch.bool, device=device)
    ok[1:4] = False
    assert torch.equal(col_q[:, ok], clean_col[:, ok]) and torch.equal(col_stats[ok], clean_stats[ok])
    # the row statistics are the vectorwise ones
    assert torch.equal(row_stats.isnan(), F.int8_vectorwise_quant(A)[1].isnan())
    back = col_q.float() * col_stats / 127
    assert back[:, 1].isnan().all() and back[:, 3].isnan().all()
    assert back[3, 2] == float("-inf") and back[torch.arange(700, device=device) != 3, 2].isnan().all()
    # with a threshold they are outliers: their columns are left to the 16-bit product
    _, col_q6, _, col_stats6, cols6 = F.int8_double_quant(A, threshold=6.0)
    assert {1, 2, 3} <= set(cols6.tolist()) and col_stats6.isfinite().all()
    assert not col_q6[:, 1:4].any()


def agrees_with_linear(out, ref):
    """out is NaN wherever ref is; elsewhere out is NaN (an Inf's row or column that the int8
    format cannot hold), the same Inf, or close to ref."""
    out, ref = out.float(), ref.float()
    assert out[ref.isnan()].isnan().all()
    inf = ref.isinf() & ~out.isnan()
    assert torch.equal(out[inf], ref[inf])
    fin = ref.isfinite() & out.isfinite()
    torch.testing.assert_close(out[fin], ref[fin], rtol=0.05, atol=0.05 * ref[fin].abs().max().item() + 1e-3)
    assert not (ref.isfinite() & out.isinf()).any()


@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("rows", [5, 64])  # the weight-streaming product, and the int8 GEMM
def test_linear8bitlt_follows_f_linear_with_nonfinite_input_and_weight(device, threshold, rows):
    dtype = torch.float16
    lin = torch.nn.Linear(64, 24).to(device)
    with torch.no_grad():
        lin.weight[2, 3] = float("nan")
        lin.weight[5, 1] = float("inf")
    layer = bnb.nn.Linear8bitLt(64, 24, has_fp16_weights=False, threshold=threshold)
    layer.load_state_dict(lin.state_dict())
    layer = layer.to(device)
    x = torch.randn(rows, 64, device=device)
    x[1, 2] = float("nan")
    x[2, 5] = float("inf")
    x[0, 6] = float("-inf")
    out = layer(x.to(dtype))
    ref = torch.nn.functional.linear(x.double(), lin.weight.double(), lin.bias.double())
    agrees_with_linear(out.detach(), ref.detach())
    # Rows and features that touch no non-finite value are finite.
    clean_rows = torch.ones(rows, dtype=torch.bool, device=device)
    clean_rows[:3] = False
    clean_cols = torch.ones(24, dtype=torch.bool, device=device)
    clean_cols[[2, 5]] = False
    assert out[clean_rows][:, clean_cols].isfinite().all()


@pytest.mark.parametrize("threshold", [0.0, 3.0])
def test_matmul_with_nan_rows(device, threshold):
    A = torch.randn(40, 32, device=device, dtype=torch.float16)
    B = torch.randn(16, 32, device=device, dtype=torch.float16)
    A[4, 0] = float("nan")
    out = bnb.matmul(A, B, threshold=threshold)
    agrees_with_linear(out, A.double() @ B.double().t())
    assert out[4].isnan().all() and out[torch.arange(40, device=device) != 4].isfinite().all()


def test_outlier_list_out_of_range_is_refused_on_cpu():
    M, N, K = 4, 6, 8
    C = torch.randint(-100, 100, (M, N), dtype=torch.int32)
    rs, cs = torch.rand(M) + 1, torch.rand(N) + 1
    X, W = torch.randn(M, K).half(), torch.randn(N, K).half()
    good = torch.zeros(K + 1, dtype=torch.int32)
    good[0], good[1], good[2] = 2, 1, 5
    ops.int8_mm_dequant_outliers(C, rs, cs, None, X, W, good, torch.float16)
    for bad, what in ((torch.tensor([K + 1] + [0] * K, dtype=torch.int32), r"outlier_list\[0\]"),
                      (torch.tensor([-1] + [0] * K, dtype=torch.int32), r"outlier_list\[0\]"),
                      (torch.tensor([2, 1, K] + [0] * (K - 2), dtype=torch.int32), r"outlier_list\[2\]"),
                      (torch.tensor([1, -3] + [0] * (K - 1), dtype=torch.int32), r"outlier_list\[1\]")):
        with pytest.raises(ValueError, match=what):
            ops.int8_mm_dequant_outliers(C, rs, cs, None, X, W, bad, torch.float16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA kernel's reading of a bad list")
def test_outlier_list_out_of_range_reads_nothing_outside_on_cuda():
    M, N, K = 4, 6, 8
    C = torch.randint(-100, 100, (M, N), dtype=torch.int32, device="cuda")
    rs, cs = torch.rand(M, device="cuda") + 1, torch.rand(N, device="cuda") + 1
    X, W = torch.randn(M, K, device="cuda").half(), torch.randn(N, K, device="cuda").half()
    huge = torch.tensor([1 << 30, 1 << 30] + [0] * (K - 1), dtype=torch.int32, device="cuda")
    out = ops.int8_mm_dequant_outliers(C, rs, cs, None, X, W, huge, torch.float16)
    torch.cuda.synchronize()
    assert out.isnan().all()  # a column outside X shows as NaN


def test_int8_gemm_refuses_a_k_its_int32_sums_cannot_hold(device):
    K = INT8_MAX_K + 1
    A = torch.full((1, K), -128, dtype=torch.int8, device=device)
    with pytest.raises(ValueError, match="K = 131072"):
        F.int8_linear_matmul(A, A)
    ok = F.int8_linear_matmul(A[:, :INT8_MAX_K], A[:, :INT8_MAX_K])
    assert ok.item() == INT8_MAX_K * 128 * 128


def test_matmul_past_the_int32_limit_is_exact(device):
    # bnb.matmul takes the float-sum product there instead of wrapping.
    K = INT8_MAX_K + 7
    A = torch.ones(40, K, device=device)
    B = torch.ones(3, K, device=device)
    out = bnb.matmul(A, B, threshold=0.0)
    torch.testing.assert_close(out.float(), torch.full((40, 3), float(K), device=device), rtol=2e-3, atol=0)
