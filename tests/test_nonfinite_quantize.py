"""Non-finite values and subnormal scales in block-wise 8-bit and 4-bit quantization.

The rule (docs/robustness.md): a block's absmax is the largest magnitude of its finite values,
negated when the block holds NaN or +-Inf; in such a block the non-finite values take the
reserved code (8-bit: 0, 4-bit: 8) and dequantize to NaN, a finite value that would take it
takes a neighbour, and every other value keeps the code it has without the non-finite ones."""
import pytest
import torch

import bitsandbytes.functional as F

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NF4_SPLIT = 0.08046510070562363  # halfway between NF4's 0.0 (code 7) and 0.161 (code 9)


def with_nonfinite(n, blocksize, dtype, device):
    """Random values with NaN, +Inf and -Inf in some blocks (one block all zero but a NaN).
    Returns (x, clean: x with its non-finite values replaced by 0, mask of non-finite)."""
    x = torch.randn(n, dtype=torch.float64) * torch.rand(n, dtype=torch.float64).pow(3).mul(8).add(0.1)
    blocks = -(-n // blocksize)
    if blocks > 1:
        x[blocksize: 2 * blocksize] = 0.0
    mask = torch.zeros(n, dtype=torch.bool)
    for b in range(0, blocks, 2):
        lo, hi = b * blocksize, min(n, (b + 1) * blocksize)
        idx = torch.randint(lo, hi, (3,))
        mask[idx] = True
    if blocks > 1:
        mask[blocksize + 5] = True
    kinds = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=torch.float64)
    x[mask] = kinds[torch.randint(0, 3, (int(mask.sum()),))]
    clean = x.masked_fill(mask, 0.0)
    return x.to(dtype).to(device), clean.to(dtype).to(device), mask.to(device)


def block_marks(mask, blocksize):
    n = mask.numel()
    padded = torch.zeros(-(-n // blocksize) * blocksize, dtype=torch.bool, device=mask.device)
    padded[:n] = mask
    return padded.view(-1, blocksize).any(1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocksize", [64, 256, 4096])
@pytest.mark.parametrize("n", [1000, 9000])
def test_quantize_blockwise_keeps_finite_values_of_a_block(device, dtype, blocksize, n):
    x, clean, mask = with_nonfinite(n, blocksize, dtype, device)
    q, state = F.quantize_blockwise(x, blocksize=blocksize)
    q0, state0 = F.quantize_blockwise(clean, blocksize=blocksize)
    marks = block_marks(mask, blocksize)
    assert torch.equal(state.absmax.abs(), state0.absmax)
    assert torch.equal(torch.signbit(state.absmax), marks)
    in_marked = marks.repeat_interleave(blocksize)[:n]
    assert torch.equal(q[mask], torch.zeros_like(q[mask]))
    want = torch.where(in_marked & (q0 == 0), torch.ones_like(q0), q0)
    assert torch.equal(q[~mask], want[~mask])
    out = F.dequantize_blockwise(q, state)
    assert torch.equal(out.isnan(), mask)
    # Every finite value dequantizes as the code it holds times its block's finite absmax.
    code = F.create_dynamic_map().to(device)
    amax = state0.absmax.repeat_interleave(blocksize)[:n]
    ref = (code[q.long()].double() * amax.double()).to(dtype)
    assert torch.equal(out[~mask], ref[~mask])


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocksize", [32, 64, 4096])
def test_quantize_4bit_keeps_finite_values_of_a_block(device, quant_type, dtype, blocksize):
    n = 5001
    x, clean, mask = with_nonfinite(n, blocksize, dtype, device)
    packed, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type)
    packed0, state0 = F.quantize_4bit(clean, blocksize=blocksize, quant_type=quant_type)
    marks = block_marks(mask, blocksize)
    assert torch.equal(state.absmax.abs(), state0.absmax)
    assert torch.equal(torch.signbit(state.absmax), marks)

    def codes(p):
        b = p.view(torch.uint8).reshape(-1)
        return torch.stack([b >> 4, b & 0xF], 1).reshape(-1)[:n]

    q, q0 = codes(packed), codes(packed0)
    in_marked = marks.repeat_interleave(blocksize)[:n]
    assert torch.equal(q[mask], torch.full_like(q[mask], 8))
    if quant_type == "nf4":
        amax = state0.absmax.repeat_interleave(blocksize)[:n]
        scaled = clean.float() * (1.0 / amax)
        dodge = torch.where(scaled > NF4_SPLIT, 9, 7).to(torch.uint8)
    else:
        dodge = torch.zeros_like(q0)
    want = torch.where(in_marked & (q0 == 8), dodge, q0)
    assert torch.equal(q[~mask], want[~mask])
    out = F.dequantize_4bit(packed, state).reshape(-1)
    assert torch.equal(out.isnan(), mask)
    ref = F.dequantize_4bit(packed, F.QuantState(absmax=state0.absmax, shape=state.shape, dtype=dtype,
                                                 blocksize=blocksize, code=state.code, quant_type=quant_type))
    assert torch.equal(out[~mask], ref.reshape(-1)[~mask])


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_nested_statistics_give_the_marked_block_nan(device, quant_type):
    blocksize, n = 64, 64 * 300
    x, clean, mask = with_nonfinite(n, blocksize, torch.float32, device)
    marks = block_marks(mask, blocksize).repeat_interleave(blocksize)[:n]
    packed, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type, compress_statistics=True)
    out = F.dequantize_4bit(packed, state).reshape(-1)
    assert torch.equal(out.isnan(), marks)
    ref = F.dequantize_4bit(*F.quantize_4bit(clean, blocksize=blocksize, quant_type=quant_type,
                                             compress_statistics=True)).reshape(-1)
    rel = (out[~marks] - ref[~marks]).abs().max() / ref.abs().max()
    assert rel < 0.02
    q, st = F.quantize_blockwise(x, blocksize=256, nested=True)
    back = F.dequantize_blockwise(q, st)
    assert torch.equal(back.isnan(), block_marks(mask, 256).repeat_interleave(256)[:n])


def test_nested_absmax_rounding_below_zero_is_not_a_mark(device):
    # Blocks of tiny values beside large ones: the nested absmax of a tiny block can round to
    # a small negative number, which must read as an all-but-zero block, not a marked one.
    x = torch.randn(64 * 512, device=device)
    x.view(512, 64)[::2] *= 1e-9
    packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert not F.dequantize_4bit(packed, state).isnan().any()


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_gemv_4bit_with_a_nan_weight_gives_nan_in_its_feature_only(device, quant_type):
    N, K = 48, 256
    W = torch.randn(N, K, device=device)
    W[5, 17] = float("nan")
    W[9, 3] = float("inf")
    packed, state = F.quantize_4bit(W, blocksize=64, quant_type=quant_type)
    A = torch.randn(1, K, device=device)
    out = F.gemv_4bit(A, packed.t(), state=state)
    want = A.double() @ F.dequantize_4bit(packed, state).double().t()
    bad = torch.zeros(N, dtype=torch.bool, device=device)
    bad[[5, 9]] = True
    assert torch.equal(out.reshape(-1).isnan(), bad)
    torch.testing.assert_close(out.reshape(-1)[~bad].double(), want.reshape(-1)[~bad], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_subnormal_absmax_gives_the_codes_of_the_scaled_block(device, dtype):
    # Multiplying a block by a power of two changes no code; a subnormal absmax must not either.
    tiny = (torch.randn(4096, dtype=torch.float64) * 2.0**-140).to(dtype)  # subnormal in both
    assert tiny.float().abs().max() < torch.finfo(torch.float32).tiny
    big = tiny.float() * 2.0**100  # exact: a power of two
    tiny, big = tiny.to(device), big.to(device)
    q_tiny, _ = F.quantize_blockwise(tiny, blocksize=64)
    q_big, _ = F.quantize_blockwise(big, blocksize=64)
    assert torch.equal(q_tiny, q_big)
    for quant_type in ("nf4", "fp4"):
        p_tiny, _ = F.quantize_4bit(tiny, blocksize=64, quant_type=quant_type)
        p_big, _ = F.quantize_4bit(big, blocksize=64, quant_type=quant_type)
        assert torch.equal(p_tiny, p_big)


@pytest.mark.parametrize("fn", ["quantize_blockwise", "quantize", "quantize_no_absmax"])
def test_a_map_that_is_not_finite_is_refused(device, fn):
    """A map holding NaN or Inf is refused, also after an in-place change of a map already used;
    one out of order is taken (tests/test_quantize_blockwise.py checks its codes)."""
    A = torch.randn(300, device=device)
    A = A / A.abs().max()
    good = F.create_dynamic_map().to(device)
    nan = good.clone()
    nan[7] = float("nan")
    with pytest.raises(ValueError, match="code must hold finite values"):
        getattr(F, fn)(A, code=nan)
    getattr(F, fn)(A, code=good.flip(0))
    getattr(F, fn)(A, code=good)
    good[3] = float("inf")  # an in-place change is checked again
    with pytest.raises(ValueError, match="code must hold finite values"):
        getattr(F, fn)(A, code=good)


def test_dequantize_refuses_a_map_holding_nan(device):
    q = torch.randint(0, 256, (100,), dtype=torch.uint8, device=device)
    code = F.create_dynamic_map().to(device)
    code[0] = float("inf")
    with pytest.raises(ValueError, match="code must hold finite values"):
        F.dequantize_blockwise(q, absmax=torch.ones(1, device=device), code=code, blocksize=4096)


def test_quantiles_of_data_with_nan_are_nan_as_torch_quantile(device):
    A = torch.randn(5000, device=device)
    A[17] = float("nan")
    q = F.estimate_quantiles(A)
    assert q.isnan().all()
    assert torch.quantile(A, torch.tensor([0.5], device=device)).isnan().all()
    with pytest.raises(ValueError, match="create_quantile_map: A must hold finite values"):
        F.create_quantile_map(A)
    A[17] = 0.0
    A[-2500:] = float("inf")  # the upper quantiles are +Inf
    with pytest.raises(ValueError, match="create_quantile_map: A must hold finite values"):
        F.create_quantile_map(A)
    A[-2500:] = 1.0
    assert torch.isfinite(F.create_quantile_map(A)).all()


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("rows", [1, 16, 64])  # one token, a few, the tensor-core product on CUDA
def test_linear_4bit_with_a_nonfinite_weight_gives_nan_in_its_feature_only(device, nested, rows):
    N, K = 40, 512
    W = torch.randn(N, K, device=device, dtype=torch.bfloat16)
    W[3, 100] = float("nan")
    W[17, 5] = float("-inf")
    packed, state = F.quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=nested)
    A = torch.randn(rows, K, device=device, dtype=torch.bfloat16)
    out = F.linear_4bit(A, packed.t(), state)
    bad = torch.zeros(N, dtype=torch.bool, device=device)
    bad[[3, 17]] = True
    assert torch.equal(out.isnan(), bad.expand(rows, N))
    Wd = F.dequantize_4bit(packed, state).double()[~bad]
    ref = A.double() @ Wd.t()
    # the fused product's bound (docs/4bit.md): weights within three bf16 roundings, one rounding
    # of the result
    bound = 3 * 2.0**-8 * (A.double().abs() @ Wd.abs().t()) + 2.0**-8 * ref.abs()
    assert ((out[:, ~bad].double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_tensorwise_quantize_with_a_nonfinite_value_dequantizes_to_nan(device, dtype, value):
    x = torch.randn(3000, device=device).to(dtype)
    q0, (amax0, code) = F.quantize(x)
    assert torch.isfinite(F.dequantize(q0, (amax0, code))).all()
    x[1234] = value
    q, (amax, code) = F.quantize(x)
    assert not torch.isfinite(amax).all()
    assert F.dequantize(q, (amax, code)).isnan().all()


def test_tensorwise_subnormal_absmax_gives_the_codes_of_the_scaled_tensor(device):
    tiny = (torch.randn(3000, dtype=torch.float64) * 2.0**-140).float().to(device)
    q_tiny, _ = F.quantize(tiny)
    q_big, _ = F.quantize(tiny * 2.0**100)
    assert torch.equal(q_tiny, q_big)
