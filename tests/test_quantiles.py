"""estimate_quantiles against exact quantiles (torch.quantile, or a float64 sort where its
input limit is exceeded), measured as rank error: the fraction of values strictly between
the estimate and the exact quantile."""
import os

import pytest
import torch

import bitsandbytes.functional as F

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TORCH_QUANTILE_LIMIT = 2 ** 24
# The method's bound (docs/quantiles.md): the estimate shares the exact order statistic's
# final bin (2048 neighbouring floats, relative width 2^-12), so at most that bin's values
# lie between the two: for a density f, at most 2^-12 * max |x| f(x) of the mass (normal
# 5.9e-5, the uniform below 1.6e-4, lognormal 4.9e-5, Student-t(1.5) 7e-5), plus, by chance,
# another value or two on small inputs.
CONTINUOUS_RANK_BOUND = 2e-4


def continuous_bound(n):
    return CONTINUOUS_RANK_BOUND + 2 / n


def make_data(kind, n, dtype=torch.float32):
    if kind == "normal":
        x = torch.randn(n)
    elif kind == "uniform":
        x = torch.rand(n) * 6 - 2
    elif kind == "heavy":  # Student-t with 1.5 degrees of freedom: infinite variance
        x = torch.distributions.StudentT(torch.tensor(1.5)).sample((n,))
    elif kind == "lognormal":
        x = torch.randn(n).mul(2).exp()
    elif kind == "tied":  # seven distinct values, unevenly used
        x = torch.tensor([-3.25, -0.1, 0.0, 0.3, 0.3001, 2.0, 1e6])[torch.randint(0, 7, (n,)) ** 2 // 7]
    else:
        raise ValueError(kind)
    return x.to(dtype)


def probabilities(num_quantiles, offset):
    if num_quantiles == 1:
        return torch.tensor([offset], dtype=torch.float64)
    return torch.linspace(offset, 1 - offset, num_quantiles, dtype=torch.float64)


def exact_quantiles(A, p):
    """torch.quantile's definition (linear interpolation at p * (n - 1)), in float64, on A's
    device (a GPU sorts 2^26 values in milliseconds)."""
    x = A.detach().flatten().double()
    p = p.to(x.device)
    if x.numel() <= TORCH_QUANTILE_LIMIT:
        return torch.quantile(x, p)
    s = x.sort().values
    pos = p * (x.numel() - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(x.numel() - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def rank_error(sorted_x, estimate, exact):
    """Fraction of values strictly between estimate and exact, per quantile."""
    a = torch.minimum(estimate, exact)
    b = torch.maximum(estimate, exact)
    between = torch.searchsorted(sorted_x, b, side="left") - torch.searchsorted(sorted_x, a, side="right")
    return between.clamp_min(0).double() / sorted_x.numel()


def final_bin(x):
    """The 21-bit prefix of the order-preserving key of float32 values (an independent
    restatement of the kernels' binning, for the data-dependent bound)."""
    u = x.float().view(torch.int32).long() & 0xFFFFFFFF
    key = torch.where(u >= 0x80000000, (~u) & 0xFFFFFFFF, u | 0x80000000)
    return key >> 11


def check_against_exact(A, q, num_quantiles=256, offset=1 / 512, bound=None):
    x = A.detach().flatten().double()
    s = x.sort().values
    p = probabilities(num_quantiles, offset).to(x.device)
    exact = exact_quantiles(A, p)
    est = q.detach().double()
    assert est.shape == exact.shape
    assert torch.isfinite(est).all()
    err = rank_error(s, est, exact)
    # Data-dependent bound: the values in the final bin of the order statistic at or below
    # p (n - 1) (a position within 1e-6 below an integer counts as that integer).
    order = s[(p * (x.numel() - 1) + 1e-6).floor().long()]
    bins = final_bin(s.float())
    lo = torch.searchsorted(bins, final_bin(order.float()), side="left")
    hi = torch.searchsorted(bins, final_bin(order.float()), side="right")
    in_bin = (hi - lo).double() / x.numel()
    assert (err <= in_bin).all(), f"rank error {err.max().item()} above the bin bound"
    if bound is not None:
        assert err.max().item() <= bound, f"rank error {err.max().item()} > {bound}"
    # The estimates are sorted, like the probabilities they estimate.
    assert (est[1:] >= est[:-1]).all()
    return err


@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy", "lognormal"])
@pytest.mark.parametrize("n", [256, 1000, 4097, 65537, 1_000_003])
def test_continuous_rank_error(device, kind, n):
    A = make_data(kind, n).to(device)
    q = F.estimate_quantiles(A)
    assert q.dtype == torch.float32 and q.device == A.device and q.shape == (256,)
    check_against_exact(A, q, bound=continuous_bound(n))


@pytest.mark.parametrize("n", [256, 3001, 1_000_003])
def test_tied_values_exact_rank(device, n):
    A = make_data("tied", n).to(device)
    err = check_against_exact(A, F.estimate_quantiles(A))
    # Each distinct value has a final bin of its own, so nothing lies between.
    assert err.max().item() == 0


def test_all_equal(device):
    A = torch.full((5000,), -1.75, device=device)
    q = F.estimate_quantiles(A)
    assert (q.cpu() == -1.75).all()  # a bin of equal values gives back the value
    check_against_exact(A, q, bound=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["normal", "heavy", "tied"])
def test_half_precision_is_exact(device, dtype, kind):
    # One representable 16-bit value per final bin: the estimate is the order statistic.
    A = make_data(kind, 100_003, dtype).to(device)
    q = F.estimate_quantiles(A)
    s = A.flatten().double().cpu().sort().values
    p = probabilities(256, 1 / 512)
    order = s[(p * (A.numel() - 1) + 1e-6).floor().long()]
    torch.testing.assert_close(q.cpu().double(), order, rtol=0, atol=0)
    check_against_exact(A, q, bound=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_any_shape_and_strides(device, dtype):
    A = torch.randn(37, 41, 9).to(dtype).to(device).transpose(0, 2)  # not contiguous
    q = F.estimate_quantiles(A)
    check_against_exact(A, q, bound=continuous_bound(A.numel()))


@pytest.mark.parametrize("num_quantiles", [1, 2, 7, 15, 100, 255])
def test_fewer_quantiles(device, num_quantiles):
    A = torch.randn(20011, device=device)
    q = F.estimate_quantiles(A, num_quantiles=num_quantiles)
    assert q.shape == (num_quantiles,)
    # The default offset becomes 1 / (2 num_quantiles): centres of equal-mass bins.
    check_against_exact(A, q, num_quantiles, 1 / (2 * num_quantiles), bound=continuous_bound(A.numel()))


@pytest.mark.parametrize("offset", [0.0, 0.01, 0.25, 0.5])
def test_offset(device, offset):
    A = torch.randn(12345, device=device) * 3 + 1
    q = F.estimate_quantiles(A, offset=offset)
    check_against_exact(A, q, 256, offset, bound=continuous_bound(A.numel()))
    if offset == 0.0:  # the extremes are the minimum and maximum, up to their final bins
        torch.testing.assert_close(q[[0, -1]].cpu(), torch.stack([A.min(), A.max()]).cpu(), rtol=2e-4, atol=0)


def test_infinities(device):
    A = torch.randn(10000)
    A[:100] = float("inf")
    A[100:150] = float("-inf")
    A = A[torch.randperm(A.numel())].to(device)
    q = F.estimate_quantiles(A).cpu()
    assert q[0] == float("-inf") and q[-1] == float("inf")
    x = A.cpu().double()
    s = x.sort().values
    p = probabilities(256, 1 / 512)
    finite = torch.isfinite(q)
    exact = exact_quantiles(A.cpu(), p)
    err = rank_error(s, q.double()[finite], exact[finite])
    assert err.max().item() <= continuous_bound(A.numel())


def test_out(device):
    A = torch.randn(3000, device=device)
    out = torch.empty(256, device=device)
    r = F.estimate_quantiles(A, out=out)
    assert r.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, F.estimate_quantiles(A), rtol=0, atol=0)
    with pytest.raises(ValueError, match="out"):
        F.estimate_quantiles(A, out=torch.empty(10, device=device))


def test_bad_input(device):
    with pytest.raises(ValueError, match="at least 256"):
        F.estimate_quantiles(torch.randn(255, device=device))
    with pytest.raises(NotImplementedError):  # what earlier releases raised
        F.estimate_quantiles(torch.empty(0, device=device))
    with pytest.raises(ValueError, match="num_quantiles"):
        F.estimate_quantiles(torch.randn(1000, device=device), num_quantiles=257)
    with pytest.raises(ValueError, match="num_quantiles"):
        F.estimate_quantiles(torch.randn(1000, device=device), num_quantiles=0)
    with pytest.raises(ValueError, match="offset"):
        F.estimate_quantiles(torch.randn(1000, device=device), offset=0.75)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        F.estimate_quantiles(torch.arange(1000, device=device))
    # The op itself checks too, naming the argument.
    with pytest.raises(ValueError, match="num_quantiles"):
        torch.ops.bitsandbytes.estimate_quantiles(torch.randn(1000, device=device), 0.01, 300)
    with pytest.raises(ValueError, match="A must hold at least 256"):
        torch.ops.bitsandbytes.estimate_quantiles(torch.randn(100, device=device), 0.01, 256)
    with pytest.raises(ValueError, match="offset"):
        torch.ops.bitsandbytes.estimate_quantiles(torch.randn(1000, device=device), -0.5, 256)


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(device, dtype):
    A = torch.randn(2, 1500).to(dtype).to(device)
    torch.library.opcheck(torch.ops.bitsandbytes.estimate_quantiles.default, (A, 1 / 512, 256))
    torch.library.opcheck(torch.ops.bitsandbytes.estimate_quantiles.default, (A, 0.1, 15))


def test_compiled(device):
    def f(x):
        return torch.ops.bitsandbytes.estimate_quantiles(x * 2, 1 / 512, 256)

    x = torch.randn(5000, device=device)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), f(x), rtol=0, atol=0)


@pytest.mark.parametrize("n", [2 ** 24 + 17, 2 ** 26 + 3])
@pytest.mark.parametrize("kind", ["normal", "heavy", "tied"])
def test_beyond_torch_quantile_limit(device, n, kind):
    # Above torch.quantile's input limit the reference is a float64 sort. On the CPU that
    # sort takes seconds, so the CPU runs one case just past the limit and the 2^26 cases
    # run on CUDA only.
    if device == "cpu" and (n > 2 ** 25 or kind != "normal"):
        pytest.skip("large inputs: CUDA only, to keep CI short")
    A = make_data(kind, n).to(device)
    q = F.estimate_quantiles(A)
    err = check_against_exact(A, q, bound=0 if kind == "tied" else continuous_bound(n))
    assert err.numel() == 256


@pytest.mark.slow
def test_huge_tensor_64bit_ranks(device):
    # Over 2^31 values: counts and ranks are 64-bit. Known answers, no reference sort.
    n = 2 ** 31 + 4099
    if device == "cuda":
        if torch.cuda.mem_get_info()[0] < n * 2 * 1.5:
            pytest.skip("not enough GPU memory for a 2^31-element tensor")
    elif os.environ.get("BNB_TEST_HUGE_CPU") != "1":
        pytest.skip("several GB on the host: set BNB_TEST_HUGE_CPU=1 to run on the CPU")
    A = torch.zeros(n, dtype=torch.bfloat16, device=device)
    A[-(n // 4 + 8):] = 1.0  # the 3/4 quantile falls among these
    A[-1] = 7.0  # the maximum, at an index past the int32 range
    A[0] = -2.0
    q = F.estimate_quantiles(A, offset=0.0, num_quantiles=5).cpu()  # p = 0, 1/4, 1/2, 3/4, 1
    assert q.tolist() == [-2.0, 0.0, 0.0, 1.0, 7.0]
