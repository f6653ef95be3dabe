"""Random inputs through every public op, checked against float64 plain torch and the rules of
docs/robustness.md: random shapes (empty, odd sizes, non-contiguous and strided views), dtypes,
block sizes and NaN / +-Inf values. Fixed seeds (reproducible case by case: the failure message
names the case); runs on the CPU and, where present, on CUDA."""
import random

import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.functional.blockwise import block_absmax

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CASES = 40  # per op family


def rand_shape(rng):
    kind = rng.random()
    if kind < 0.1:
        return (0,) if rng.random() < 0.5 else (3, 0)
    if kind < 0.4:
        return (rng.randint(1, 5000),)
    return (rng.randint(1, 70), rng.randint(1, 300))


def rand_tensor(rng, shape, dtype, device, nonfinite):
    """Values with a heavy tail, some NaN / +-Inf, in a contiguous tensor, a transposed view or
    every other element of a wider tensor."""
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = x * torch.rand(shape, generator=g, dtype=torch.float64).pow(4) * 10 ** rng.uniform(-3, 3)
    if nonfinite and x.numel():
        flat = x.reshape(-1)
        for i in torch.randint(0, x.numel(), (rng.randint(1, 4),), generator=g).tolist():
            flat[i] = rng.choice([float("nan"), float("inf"), float("-inf")])
    layout = rng.random()
    if layout < 0.3 and len(shape) == 2:
        out = torch.empty(shape[::-1], dtype=dtype, device=device).t()
    elif layout < 0.6 and len(shape) >= 1:
        wide = list(shape)
        wide[-1] *= 2
        out = torch.empty(wide, dtype=dtype, device=device)[..., ::2]
    else:
        out = torch.empty(shape, dtype=dtype, device=device)
    return out.copy_(x)


def cases(name, device):
    rng = random.Random(f"{name}-{device}")
    for i in range(CASES):
        yield i, rng


def block_view(x, blocksize):
    flat = x.reshape(-1)
    n = flat.numel()
    pad = (-n) % blocksize
    return torch.cat([flat, flat.new_full((pad,), 0.0)]).reshape(-1, blocksize), n


def max_gap(code):
    c = code.double().sort().values
    return float((c[1:] - c[:-1]).max())


def check_blockwise(name, x, out, absmax, blocksize, gap, per_element_nan, what, used=None):
    """Dequantized `out` of `x` under the block rule (absmax over finite values, non-finite
    values NaN; with per_element_nan False, every value of a marked block NaN). `used`: the
    absmax the dequantization read (a nested one, itself 8-bit), when not the exact one."""
    xd = x.double().cpu()
    blocks, n = block_view(xd, blocksize)
    finite = blocks.isfinite()
    amax = blocks.abs().where(finite, torch.zeros_like(blocks)).amax(1)
    marked = (~finite).any(1)
    if absmax is not None:
        assert torch.equal(absmax.abs().double().cpu(), amax), f"{what}: absmax is not the finite absmax"
        assert torch.equal(torch.signbit(absmax.cpu()), marked), f"{what}: the non-finite mark"
    got = out.double().cpu().reshape(-1)
    nonfin = (~xd.reshape(-1).isfinite())
    want_nan = nonfin if per_element_nan else marked.repeat_interleave(blocksize)[:n]
    assert torch.equal(got.isnan(), want_nan), f"{what}: NaN where the rule puts NaN, nowhere else"
    ok = ~want_nan
    slack = (used.double().cpu().nan_to_num() - amax).abs() if used is not None else torch.zeros_like(amax)
    # a marked block reserves a code: a value that would take it moves to a neighbour, up to two gaps
    gaps = torch.where(marked, 2.0, 1.02).double()
    bound = ((amax * gap * gaps + slack).repeat_interleave(blocksize)[:n] + got.abs() * 2.0**-7 + 1e-30)
    err = (got[ok] - xd.reshape(-1)[ok]).abs()
    assert (err <= bound[ok]).all(), f"{what}: error {float((err - bound[ok]).max()):.3g} past the map's gap"


def test_fuzz_quantize_blockwise(device):
    code = F.create_dynamic_map().to(device)
    gap = max_gap(code)
    for i, rng in cases("blockwise", device):
        sizes = [64, 128, 256, 512, 1024, 2048, 4096] + ([1, 63, 100, 5000] if device == "cpu" else [])
        dtype, blocksize = rng.choice(DTYPES), rng.choice(sizes)
        nested = rng.random() < 0.3
        x = rand_tensor(rng, rand_shape(rng), dtype, device, nonfinite=rng.random() < 0.5)
        what = f"case {i}: {tuple(x.shape)} {dtype} stride {x.stride()} blocksize {blocksize} nested {nested}"
        q, state = F.quantize_blockwise(x, blocksize=blocksize, nested=nested)
        assert q.shape == x.shape and q.dtype == torch.uint8, what
        out = F.dequantize_blockwise(q, state)
        assert out.shape == x.shape and out.dtype == dtype, what
        # nested: the absmax itself is 8-bit, about 1% more error
        check_blockwise("8bit", x, out, None if nested else state.absmax, blocksize, gap, not nested, what,
                        used=block_absmax(state) if nested else None)
        # tensor-wise: the tensor is the block, without a mark: any NaN / Inf makes it all NaN
        q, (amax, tcode) = F.quantize(x)
        back = F.dequantize(q, (amax, tcode)).double().cpu()
        xd = x.double().cpu()
        if not xd.isfinite().all():
            assert back.isnan().all(), f"{what}: tensor-wise with NaN / Inf"
        elif xd.numel():
            bound = xd.abs().max() * gap * 1.02 + back.abs() * 2.0**-7 + 1e-30
            assert ((back - xd).abs() <= bound).all(), f"{what}: tensor-wise error past the map's gap"


def test_fuzz_quantize_4bit(device):
    for i, rng in cases("4bit", device):
        dtype, blocksize = rng.choice(DTYPES), rng.choice([32, 64, 128, 256, 512, 1024, 2048, 4096])
        quant_type, nested = rng.choice(["nf4", "fp4"]), rng.random() < 0.3
        x = rand_tensor(rng, rand_shape(rng), dtype, device, nonfinite=rng.random() < 0.5)
        what = (f"case {i}: {tuple(x.shape)} {dtype} stride {x.stride()} {quant_type} blocksize {blocksize} "
                f"nested {nested}")
        packed, state = F.quantize_4bit(x, blocksize=blocksize, quant_type=quant_type, compress_statistics=nested)
        out = F.dequantize_4bit(packed, state)
        assert out.shape == x.shape and out.dtype == dtype, what
        check_blockwise("4bit", x, out, None if nested else state.absmax, blocksize,
                        max_gap(F.get_4bit_type(quant_type)), not nested, what,
                        used=block_absmax(state) if nested else None)


def test_fuzz_int8_vectorwise(device):
    for i, rng in cases("int8", device):
        dtype = rng.choice(DTYPES)
        shape = rand_shape(rng)
        x = rand_tensor(rng, shape if len(shape) == 2 else (1, *shape), dtype, device, rng.random() < 0.5)
        what = f"case {i}: {tuple(x.shape)} {dtype} stride {x.stride()}"
        q, stats, _ = F.int8_vectorwise_quant(x)
        out = F.int8_vectorwise_dequant(q, stats).double().cpu()
        xd = x.double().cpu()
        infs = xd.isinf().sum(1, keepdim=True)
        has_nan, has_inf = xd.isnan().any(1, keepdim=True) | (infs > 1), infs == 1
        amax = xd.abs().where(xd.isfinite(), torch.zeros_like(xd)).amax(1, keepdim=True) if xd.numel() else xd
        want_nan = has_nan.expand_as(xd) | (has_inf & xd.isfinite()) if xd.numel() else xd.bool()
        assert torch.equal(out.isnan(), want_nan), f"{what}: NaN rows and the finite values of Inf rows"
        inf = xd.isinf() & ~has_nan
        assert torch.equal(out[inf], xd[inf]), f"{what}: an Inf keeps its sign"
        ok = ~want_nan & ~inf
        if ok.any():
            bound = (amax.expand_as(xd) * (0.5 / 127) * 1.01 + 1e-30 + xd.abs() * 2.0**-7)[ok]
            assert ((out[ok] - xd[ok]).abs() <= bound).all(), f"{what}: error past half a code"


def test_fuzz_matmul_and_linear(device):
    for i, rng in cases("matmul", device):
        dtype = rng.choice([torch.float16, torch.bfloat16])
        M, N, K = rng.choice([1, 3, 40]), rng.randint(1, 40), rng.randint(1, 200)
        threshold = rng.choice([0.0, 0.0, 2.5])
        A = rand_tensor(rng, (M, K), torch.float32, device, rng.random() < 0.3) / 4
        W = rand_tensor(rng, (N, K), torch.float32, device, rng.random() < 0.3)
        what = f"case {i}: A {tuple(A.shape)} W {tuple(W.shape)} {dtype} threshold {threshold}"
        out = bnb.matmul(A.to(dtype), W.to(dtype), threshold=threshold).double().cpu()
        ref = torch.nn.functional.linear(A.to(dtype).double(), W.to(dtype).double()).cpu()
        assert out.shape == ref.shape, what
        assert out[ref.isnan()].isnan().all(), f"{what}: NaN where F.linear gives NaN"
        inf = ref.isinf() & ~out.isnan()
        assert torch.equal(out[inf], ref[inf]), f"{what}: the same Inf where not NaN"
        fin = ref.isfinite() & out.isfinite()
        assert not (ref.isfinite() & out.isinf()).any(), f"{what}: Inf where F.linear is finite"
        rows_ok = A.isfinite().all(1).cpu()
        cols_ok = W.isfinite().all(1).cpu()
        clean = rows_ok[:, None] & cols_ok[None, :]
        assert out[clean].isfinite().all(), f"{what}: a row or feature with no NaN/Inf must stay finite"
        if fin.any():
            scale = (A.double().abs().where(A.isfinite(), 0).amax().cpu() * W.double().abs()
                     .where(W.isfinite(), 0).amax().cpu() * (K ** 0.5) + 1e-3)
            assert ((out[fin] - ref[fin]).abs() <= 0.03 * scale).all(), f"{what}: past the int8 error"
        # the 4-bit layer's product: NaN exactly in the features whose weights hold NaN / Inf
        packed, state = F.quantize_4bit(W.to(dtype), blocksize=32, quant_type=rng.choice(["nf4", "fp4"]))
        y = F.linear_4bit(torch.nan_to_num(A, nan=0.0, posinf=0.0, neginf=0.0).to(dtype), packed.t(), state).cpu()
        assert torch.equal(y.isnan(), (~cols_ok)[None, :].expand(M, N)), f"{what}: linear_4bit NaN features"


def test_fuzz_estimate_quantiles(device):
    for i, rng in cases("quantiles", device):
        dtype = rng.choice(DTYPES)
        n = rng.randint(256, 20000)
        x = rand_tensor(rng, (n,), dtype, device, rng.random() < 0.3)
        if rng.random() < 0.5:  # Inf only
            x = torch.nan_to_num(x, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
        k = rng.choice([1, 7, 255, 256])
        q = F.estimate_quantiles(x, num_quantiles=k).double().cpu()
        what = f"case {i}: n {n} {dtype} num_quantiles {k}"
        xd = x.double().cpu()
        if xd.isnan().any():
            assert q.isnan().all(), f"{what}: NaN input, NaN quantiles"
            continue
        offset = 1 / 512 if k == 256 else 1 / (2 * k)
        p = torch.tensor([offset + j * (1 - 2 * offset) / (k - 1) for j in range(k)] if k > 1 else [offset],
                         dtype=torch.float64)
        s = xd.sort().values
        lo = s[(p * (n - 1)).floor().long().sub(1).clamp_min(0)]
        hi = s[(p * (n - 1)).ceil().long().add(1).clamp_max(n - 1)]
        slack = 2.0**-11
        ok = (q >= lo - lo.abs() * slack) & (q <= hi + hi.abs() * slack)
        assert ok.all(), f"{what}: a quantile outside its neighbouring order statistics"


def test_fuzz_bad_arguments_are_errors_not_crashes(device):
    """Random wrong dtypes, block sizes and maps: always a ValueError or TypeError."""
    rng = random.Random(f"bad-{device}")
    x = torch.randn(300, device=device)
    calls = [
        lambda: F.quantize_blockwise(x, blocksize=rng.choice([0, -64])),
        lambda: F.quantize_blockwise(x.to(torch.int32)),
        lambda: F.quantize_blockwise(x, code=torch.randn(rng.choice([0, 16, 255, 257]), device=device)),
        lambda: F.quantize_4bit(x, blocksize=rng.choice([0, 16, 48, 8192])),
        lambda: F.quantize_4bit(x, quant_type=rng.choice(["nf3", "", "int4"])),
        lambda: F.dequantize_blockwise(torch.zeros(300, dtype=torch.uint8, device=device),
                                       absmax=torch.ones(rng.choice([0, 2, 7]), device=device), blocksize=64),
        lambda: F.int8_vectorwise_quant(torch.zeros(4, 4, dtype=torch.int8, device=device)),
        lambda: F.int8_linear_matmul(torch.zeros(2, 3, dtype=torch.int8, device=device),
                                     torch.zeros(4, rng.choice([2, 4]), dtype=torch.int8, device=device)),
        lambda: F.estimate_quantiles(torch.randn(rng.choice([0, 1, 255]), device=device)),
    ]
    for _ in range(60):
        call = rng.choice(calls)
        with pytest.raises((ValueError, TypeError)):
            call()
