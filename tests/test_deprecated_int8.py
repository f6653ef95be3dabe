"""The deprecated int8 API of the reference's 0.45 release: each function warns and computes
the reference's documented math, checked against plain torch (float64 where it is exact)."""
import warnings

import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.autograd import get_inverse_transform_indices, undo_layout


def _int8(*shape, device):
    return torch.randint(-127, 128, shape, dtype=torch.int8, device=device)


def _exact_mm(a, b):
    return (a.double() @ b.double()).to(torch.int32)


def _no_ties(A, threshold):
    # Values exactly at the threshold are outliers (>=) here; keep the data clear of them.
    return A.masked_fill((A.abs().float() - threshold).abs() < 1e-2, 0.5)


@pytest.mark.parametrize("call", [
    lambda d: F.vectorwise_quant(torch.randn(4, 8, device=d)),
    lambda d: F.get_row_absmax(torch.randn(4, 8, device=d, dtype=torch.half)),
    lambda d: F.igemm(_int8(3, 4, device=d), _int8(4, 5, device=d)),
    lambda d: bnb.mm_cublas(torch.randn(3, 4, device=d), torch.randn(4, 5, device=d)),
    lambda d: get_inverse_transform_indices(lambda t: t, (2, 3)),
])
def test_each_warns_deprecated_and_future(call, device):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        call(device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the reference's category: filters for it still apply
        with pytest.raises(FutureWarning):
            call(device)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
class TestFunctions:
    # bfloat16 is left out: the reference's arithmetic in bf16 can reach 128 and wrap in int8.
    @pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
    def test_vectorwise_quant_rows(self, device, dtype):
        x = torch.randn(13, 37, device=device, dtype=dtype)
        for dim in (0, 1):
            q, s = F.vectorwise_quant(x, dim=dim)
            absmax = x.abs().amax(dim=dim, keepdim=True)
            assert s.dtype == dtype and torch.equal(s, absmax)
            expected = (x.double() * (127.0 / absmax.double())).round()
            # computed in x's dtype as the reference did: at most one code off the exact value
            assert q.dtype == torch.int8 and (q.double() - expected).abs().max() <= 1
            if dtype == torch.float32:
                assert (q.double() != expected).float().mean() < 1e-3

    def test_vectorwise_quant_linear_and_zeropoint(self, device):
        x = torch.randn(8, 16, device=device)
        q, m = F.vectorwise_quant(x, quant_type="linear")
        assert m == x.abs().max() and torch.equal(q, torch.round(x / m * 127).to(torch.int8))
        z, qx = F.vectorwise_quant(x, dim=1, quant_type="row-zeropoint")
        lo = x.double().amin(1, keepdim=True)
        scale = 255.0 / (x.double().amax(1, keepdim=True) - lo)
        assert torch.allclose(qx.double(), scale, rtol=1e-6)
        # z - zero point spans at most 255 levels
        assert (z - torch.round(lo.float() * qx)).min() >= -1 and (z - torch.round(lo.float() * qx)).max() <= 256
        assert F.vectorwise_quant(x, quant_type="nonsense") is None

    def test_vectorwise_quant_truncated_leaves_input(self, device):
        x = torch.randn(6, 32, device=device)
        before = x.clone()
        q, limit = F.vectorwise_quant(x, dim=1, quant_type="truncated-vector")
        assert torch.equal(x, before)
        exp = torch.clamp(x.double(), -limit.double(), limit.double()) / limit.double() * 127
        assert (q.double() - exp.round()).abs().max() <= 1

    def test_vectorwise_dequant_and_mm_dequant(self, device):
        A = torch.randn(9, 20, device=device, dtype=torch.half)
        B = torch.randn(20, 11, device=device, dtype=torch.half)
        qA, sA = F.vectorwise_quant(A, dim=1)
        qB, sB = F.vectorwise_quant(B, dim=0)
        deq = F.vectorwise_dequant(qA, sA)
        assert deq.dtype == torch.float32
        assert torch.allclose(deq.double(), qA.double() / 127 * sA.double(), rtol=1e-3)
        prod = F.igemm(qA, qB)
        assert torch.equal(prod, _exact_mm(qA, qB))
        out = F.vectorwise_mm_dequant(prod, sA, sB)
        ref = prod.double() * sA.double() / 127 * sB.double() / 127
        assert out.dtype == torch.half and torch.allclose(out.double(), ref, rtol=2e-3, atol=1e-3)
        assert torch.allclose(out.double(), A.double() @ B.double(), atol=0.15 * 20 ** 0.5)
        row = F.vectorwise_mm_dequant(prod, sA, sB, torch.float32, quant_type="row")
        assert torch.allclose(row.double(), ref, rtol=1e-3)

    @pytest.mark.parametrize("threshold", [0.0, 1.5])
    def test_colrow_and_row_absmax(self, device, threshold):
        A = _no_ties(torch.randn(2, 7, 33, device=device).half(), threshold)
        rows, cols, mask = F.get_colrow_absmax(A, threshold=threshold)
        a = A.double().abs().reshape(-1, 33)
        if threshold:
            assert torch.equal(mask, a >= threshold)
            a = a.masked_fill(a >= threshold, 0)
        else:
            assert mask is None
        assert rows.dtype == cols.dtype == torch.float32
        assert torch.equal(rows.double(), a.amax(1)) and torch.equal(cols.double(), a.amax(0))
        assert torch.equal(F.get_row_absmax(A, threshold), rows)
        given = torch.ones(14)
        assert F.get_colrow_absmax(A, row_stats=given, col_stats=given)[0] is given

    @pytest.mark.parametrize("threshold", [0.0, 2.0])
    def test_double_quant(self, device, threshold):
        A = _no_ties(torch.randn(16, 40, device=device).half() * 1.5, threshold)
        q_row, q_col, r, c, coo = F.double_quant(A, threshold=threshold)
        ref = F.int8_double_quant(A, threshold=threshold)
        for got, want in zip((q_row, q_col, r), ref[:3]):
            assert torch.equal(got, want)
        assert torch.equal(c, ref[3].flatten().float())
        if threshold == 0.0:
            assert coo is None
        else:
            mask = A.abs() >= threshold
            where = mask.nonzero()
            assert (coo.rows, coo.cols, coo.nnz) == (16, 40, int(mask.sum()))
            assert coo.rowidx.dtype == coo.colidx.dtype == torch.int32
            assert torch.equal(coo.rowidx.long(), where[:, 0]) and torch.equal(coo.colidx.long(), where[:, 1])
            assert torch.equal(coo.values, A[mask])

    def test_mm_dequant_igemmlt_row_layout(self, device):
        A, B = _int8(5, 24, device=device), _int8(7, 24, device=device)
        C, state = F.igemmlt(A, B, (A.shape, "row"), (B.shape, "row"))
        assert torch.equal(C, _exact_mm(A, B.t())) and state == (C.shape, "row")
        rs, cs = torch.rand(5, device=device) * 3, torch.rand(7, device=device) * 3
        bias = torch.randn(7, device=device).half()
        out = F.mm_dequant(C, state, rs, cs, bias=bias)
        ref = C.double() * rs.double()[:, None] * cs.double()[None] / 127 ** 2 + bias.double()
        assert out.dtype == torch.half and torch.allclose(out.double(), ref, rtol=2e-3, atol=2e-3)
        with pytest.raises(NotImplementedError, match="SB layout 'col_turing'"):
            F.igemmlt(A, B, (A.shape, "row"), (B.shape, "col_turing"))

    def test_transform_and_extract_outliers(self, device):
        A = _int8(6, 10, device=device)
        out, state = F.transform(A, "row")
        assert torch.equal(out, A) and state == ((6, 10), "row")
        out_t, state_t = F.transform(A, "row", transpose=True)
        assert torch.equal(out_t, A.t()) and out_t.is_contiguous() and state_t == ((10, 6), "row")
        with pytest.raises(NotImplementedError, match="to_order='col32'"):
            F.transform(A, "col32")
        idx = torch.tensor([1, 7, 3], device=device)
        assert torch.equal(F.extract_outliers(A, (A.shape, "row"), idx), A[:, [1, 7, 3]])
        with pytest.raises(ValueError, match="A must be a 2-D int8"):
            F.extract_outliers(A.float(), (A.shape, "row"), idx)

    def test_igemm_shapes(self, device):
        A, B = _int8(5, 9, device=device), _int8(9, 4, device=device)
        assert torch.equal(F.igemm(A, B), _exact_mm(A, B))
        assert torch.equal(F.igemm(A.t().contiguous(), B, transposed_A=True), _exact_mm(A, B))
        assert torch.equal(F.igemm(A, B.t().contiguous(), transposed_B=True), _exact_mm(A, B))
        A3 = _int8(2, 5, 9, device=device)
        assert torch.equal(F.igemm(A3, B), _exact_mm(A3, B))
        Bb = _int8(2, 9, 3, device=device)
        assert torch.equal(F.igemm(A3, Bb), _exact_mm(A3, Bb))
        assert torch.equal(F.batched_igemm(A3, Bb), _exact_mm(A3, Bb))
        # [b, s, i] x [b, s, o] -> [i, o], summed over b and s
        G = _int8(2, 5, 6, device=device)
        out = torch.empty(9, 6, dtype=torch.int32, device=device)
        F.igemm(A3.transpose(1, 2).contiguous().transpose(1, 2).contiguous(), G, out=out)
        ref = torch.einsum("bsi,bso->io", A3.double(), G.double()).to(torch.int32)
        assert torch.equal(out, ref)
        with pytest.raises(ValueError, match="dimensions do not match"):
            F.igemm(A, A)
        with pytest.raises(TypeError, match="B must be an int8 tensor"):
            F.igemm(A, B.float())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("shapes", [((6, 16), (16, 5)), ((2, 6, 16), (16, 5)), ((2, 6, 16), (2, 16, 5))])
@pytest.mark.parametrize("fn", ["mm_cublas", "bmm_cublas", "matmul_cublas"])
def test_matmul_cublas(device, shapes, fn):
    A = torch.randn(*shapes[0], device=device, requires_grad=True)
    B = torch.randn(*shapes[1], device=device, requires_grad=True)
    out = getattr(bnb, fn)(A, B)
    # forward: A quantized per row, B per column, int32 product, both scales applied
    sA = A.detach().double().abs().amax(-1, keepdim=True)
    sB = B.detach().double().abs().amax(-2, keepdim=True)
    qA = (A.detach().double() * 127 / sA).round()
    qB = (B.detach().double() * 127 / sB).round()
    ref = (qA @ qB) * (sA / 127) * (sB / 127)
    assert out.shape == ref.shape and torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    exact_A = g.double() @ B.detach().double().transpose(-1, -2)
    assert torch.allclose(A.grad.double(), exact_A, atol=0.05 * exact_A.abs().max().item())
    if len(shapes[0]) == len(shapes[1]) or len(shapes[1]) == 2:
        exact_B = A.detach().double().transpose(-1, -2) @ g.double()
        if exact_B.dim() > B.dim():
            exact_B = exact_B.sum(0)
        assert B.grad.shape == B.shape
        assert torch.allclose(B.grad.double(), exact_B, atol=0.05 * exact_B.abs().max().item())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("tile, shape", [((8, 32), (16, 64)), ((32, 32), (64, 96)), ((4, 4), (4, 8))])
def test_undo_layout_inverts_a_tiled_permutation(device, tile, shape):
    tr, tc = tile
    perm = torch.randperm(tr * tc)

    def transform_tile(t):  # a fixed permutation of the tile's values
        return t.flatten()[perm].view(tr, tc)

    idx = get_inverse_transform_indices(transform_tile, tile)
    assert torch.equal(idx.flatten(), perm)
    rows, cols = shape
    X = torch.randn(rows, cols, device=device)
    # the tiled layout: tiles ordered column of tiles by column of tiles, each one permuted
    tiles = [transform_tile(X[r:r + tr, c:c + tc]).flatten()
             for c in range(0, cols, tc) for r in range(0, rows, tr)]
    permuted = torch.cat(tiles).view(rows, cols)
    assert torch.equal(undo_layout(permuted, idx), X)
    with pytest.raises(ValueError, match="whole number"):
        undo_layout(permuted[:, :cols - 1], idx)
