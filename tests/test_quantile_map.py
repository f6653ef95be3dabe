"""create_quantile_map, and quantization with it through quantize_blockwise and
quantize_no_absmax, against the dynamic and linear maps."""
import pytest
import torch

import bitsandbytes.functional as F
from test_quantiles import exact_quantiles

N = 2 ** 18 + 13


def make_data(kind, n=N):
    if kind == "normal":
        return torch.randn(n)
    if kind == "uniform":
        return torch.rand(n) * 2 - 1
    if kind == "heavy":  # Student-t with 3 degrees of freedom
        return torch.distributions.StudentT(torch.tensor(3.0)).sample((n,))
    if kind == "lognormal":
        return torch.randn(n).exp()
    raise ValueError(kind)


def test_map_shape(device):
    A = torch.randn(10000, device=device)
    code = F.create_quantile_map(A)
    assert code.shape == (256,) and code.dtype == torch.float32 and code.device == A.device
    c = code.cpu()
    assert (c[1:] >= c[:-1]).all()
    assert c.abs().max().item() == 1.0
    assert (c == 0).any()
    # 255 quantiles at the centres of equal-mass bins (offset 1/510; their accuracy is
    # tested in test_quantiles.py), plus zero, scaled by the largest magnitude.
    q = F.estimate_quantiles(A, offset=1 / 510, num_quantiles=255).cpu()
    expected = torch.cat([q, torch.zeros(1)]).sort().values
    expected = expected / expected.abs().max()
    torch.testing.assert_close(c, expected, rtol=1e-6, atol=0)
    # The extremes sit at the 1/510 and 509/510 quantiles: ranks within a few values of them.
    s = A.cpu().sort().values
    lo = torch.searchsorted(s, q[0]).item() / A.numel()
    assert abs(lo - 1 / 510) < 2e-4 + 2 / A.numel()


@pytest.mark.parametrize("total_bits", [2, 4, 7])
def test_map_fewer_bits(device, total_bits):
    A = torch.rand(5000, device=device) + 1  # all positive: zero is an extra code
    code = F.create_quantile_map(A, total_bits=total_bits).cpu()
    assert code.shape == (256,)
    assert (code[1:] >= code[:-1]).all()
    # 2^bits - 1 quantiles, the rest zero padding.
    assert (code > 0).sum().item() == 2 ** total_bits - 1
    assert code.max().item() == 1.0


def test_map_bad_input(device):
    with pytest.raises(ValueError, match="total_bits"):
        F.create_quantile_map(torch.randn(1000, device=device), total_bits=9)
    with pytest.raises(ValueError, match="at least 256"):
        F.create_quantile_map(torch.randn(10, device=device))


def test_map_of_zeros(device):
    code = F.create_quantile_map(torch.zeros(1000, device=device))
    assert (code == 0).all()


def ecdf_error(A, B):
    """Mean distance between the data's ranks of the values and of their reconstructions."""
    s = A.flatten().sort().values
    n = s.numel()
    return (torch.searchsorted(s, B.flatten().contiguous()) - torch.searchsorted(s, A.flatten().contiguous())) \
        .abs().double().mean().item() / n


@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy", "lognormal"])
def test_no_absmax_quantile_map_is_best(device, kind):
    # The quantile map gives every code the same share of the values, which is the map that
    # minimises the error measured in the data's own ranks. The data is expressed in units of
    # the map (divided by the largest quantile), as create_quantile_map normalises it.
    A = make_data(kind).to(device)
    code_q = F.create_quantile_map(A)
    scale = F.estimate_quantiles(A, num_quantiles=255).abs().max()
    X = A / scale
    errors = {}
    for name, code in [("quantile", code_q), ("dynamic", F.create_dynamic_map().to(device)),
                       ("linear", F.create_linear_map().to(device))]:
        B = F.dequantize_no_absmax(F.quantize_no_absmax(X, code), code)
        errors[name] = ecdf_error(X.cpu(), B.cpu())
    # Equal-mass codes: the mean rank error is a quarter of a code's share, 1 / (4 * 256).
    assert errors["quantile"] < 1.2 / 1024, errors
    assert errors["quantile"] < errors["dynamic"], errors
    if kind == "uniform":  # on uniform data the quantiles are the linear map
        assert errors["quantile"] <= errors["linear"] * 1.02, errors
    else:
        assert errors["quantile"] < errors["linear"], errors


@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blockwise_quantile_map_is_best(device, kind, dtype):
    # Through quantize_blockwise (each block scaled by its absmax) the quantile map of the
    # data also has the smallest mean absolute error of the three maps.
    A = make_data(kind).to(dtype).to(device)
    errors = {}
    for name, code in [("quantile", F.create_quantile_map(A)), ("dynamic", F.create_dynamic_map().to(device)),
                       ("linear", F.create_linear_map().to(device))]:
        q, state = F.quantize_blockwise(A, code=code, blocksize=4096)
        B = F.dequantize_blockwise(q, state)
        assert B.dtype == dtype
        errors[name] = (B.float() - A.float()).abs().mean().item()
    assert errors["quantile"] < errors["dynamic"], errors
    if kind == "uniform":
        assert errors["quantile"] <= errors["linear"] * 1.02, errors
    else:
        assert errors["quantile"] < errors["linear"], errors
