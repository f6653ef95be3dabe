"""The linear_4bit op (the product under Linear4bit and bnb.matmul_4bit): every path it picks
(fused kernel for few rows, dequantize + linear for many; on CUDA the tensor-core and CUDA-core
kernels) against a float64 product from the packed bytes (reference_4bit.py), with plain and nested
scales, bias, odd shapes, empty inputs, bad arguments and opcheck."""
import pytest
import torch

import bitsandbytes.functional as F
from reference_4bit import check_product_bound, weight64

ROWS = (1, 3, 8, 9, 16, 17, 33, 64, 65, 130)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("N,K,blocksize", [(40, 256, 64), (257, 384, 128), (16, 1024, 4096), (33, 200, 32),
                                           (7, 96, 64), (24, 4352, 64), (5, 33, 64)])
def test_linear_4bit_against_float64(dtype, nested, N, K, blocksize, device):
    quant_type = "nf4" if (N + K) % 2 else "fp4"
    W = torch.randn(N, K, device=device, dtype=dtype)
    packed, state = F.quantize_4bit(W, blocksize=blocksize, quant_type=quant_type, compress_statistics=nested)
    W64 = weight64(packed, state)
    bias = torch.randn(N, device=device, dtype=dtype)
    for M in ROWS:
        for with_bias in (False, True):
            b = bias if with_bias else None
            A = torch.randn(M, K, device=device, dtype=dtype)
            got = F.linear_4bit(A, packed, state, b)
            assert got.shape == (M, N) and got.dtype == dtype
            check_product_bound(got, A, W64, b, dtype)
    # dequantize + F.linear (the reference library's path) meets the same bound
    A = torch.randn(5, K, device=device, dtype=dtype)
    check_product_bound(torch.nn.functional.linear(A, F.dequantize_4bit(packed, state).to(dtype), bias), A, W64, bias, dtype)


@pytest.mark.parametrize("M,dtype,blocksize", [(16, torch.bfloat16, 64), (32, torch.bfloat16, 64),
                                               (33, torch.float16, 32), (64, torch.bfloat16, 128)])
def test_many_slabs_split_over_clusters(M, dtype, blocksize, device):
    """More rows than an H100 has SMs for slabs of 32 (8200 rows: 257 slabs) and K of 17
    sub-chunks of 64: on CUDA the launcher's rule decides whether a thread-block cluster shares
    a slab's K (unequal shares where it does), and blocks of 32 take the path that scales each
    weight."""
    N, K = 8200, 1088
    W = torch.randn(N, K, device=device, dtype=dtype)
    packed, state = F.quantize_4bit(W, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
    A = torch.randn(M, K, device=device, dtype=dtype)
    bias = torch.randn(N, device=device, dtype=dtype)
    check_product_bound(F.linear_4bit(A, packed, state, bias), A, weight64(packed, state), bias, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_nested_absmax_below_zero_reads_as_zero(dtype, device):
    # Blocks of near-zero weights beside an outlier block: their nested absmax rounds below zero
    # and reads as 0 on every path (not as a marked block, whose code 8 would give NaN).
    N, K = 64, 256
    W = torch.randn(N * K // 64, 64, generator=torch.Generator().manual_seed(0))
    W[::2] *= torch.logspace(-4, -1, W[::2].shape[0])[:, None]
    W[0, 0] = 60.0
    W = W.reshape(N, K).to(device=device, dtype=dtype)
    packed, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=True)
    s2 = state.state2
    assert ((F.dequantize_blockwise(state.absmax, s2) + state.offset) < 0).any()  # the case under test
    W64 = weight64(packed, state)
    for M in ROWS:
        A = torch.randn(M, K, device=device, dtype=dtype)
        got = F.linear_4bit(A, packed, state)
        assert not got.isnan().any(), f"M={M}"
        check_product_bound(got, A, W64, None, dtype)


def test_leading_dims_and_non_contiguous_input(device):
    W = torch.randn(48, 256, device=device, dtype=torch.bfloat16)
    packed, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=True)
    W64 = weight64(packed, state)
    for shape in ((2, 3, 256), (1, 1, 256), (4, 16, 256)):
        A = torch.randn(*shape, device=device, dtype=torch.bfloat16)
        got = F.linear_4bit(A, packed, state)
        assert got.shape == (*shape[:-1], 48)
        check_product_bound(got, A, W64, None, torch.bfloat16)
    A = torch.randn(256, 6, device=device, dtype=torch.bfloat16).t()  # strided rows
    check_product_bound(F.linear_4bit(A, packed, state), A, W64, None, torch.bfloat16)
    A = torch.randn(1, 257, device=device, dtype=torch.bfloat16)[:, 1:]  # misaligned start
    check_product_bound(F.linear_4bit(A, packed, state), A, W64, None, torch.bfloat16)
    shifted = torch.zeros(packed.numel() + 1, device=device, dtype=torch.uint8)
    shifted[1:] = packed.reshape(-1)
    packed_at_1 = shifted[1:].view(-1, 1)  # codes one byte past an aligned address
    for M in (1, 20):
        A = torch.randn(M, 256, device=device, dtype=torch.bfloat16)
        check_product_bound(F.linear_4bit(A, packed_at_1, state), A, W64, None, torch.bfloat16)


def test_strided_bias(device):
    W = torch.randn(24, 256, device=device, dtype=torch.float16)
    packed, state = F.quantize_4bit(W, quant_type="nf4")
    W64 = weight64(packed, state)
    bias = torch.randn(48, device=device, dtype=torch.float16)[::2]  # every other value
    for M in (1, 20, 80):  # tensor cores, CUDA cores (CPU: the fused kernel), dequantize + linear
        A = torch.randn(M, 256, device=device, dtype=torch.float16)
        check_product_bound(F.linear_4bit(A, packed, state, bias), A, W64, bias, torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("K,blocksize", [(128, 4096), (384, 256), (256, 64), (96, 256), (192, 64), (320, 32),
                                         (4352, 64), (4352, 128)])
def test_non_finite_weight_reaches_its_feature_only(dtype, K, blocksize, device):
    # Blocks of more than K weights, or not dividing K, hold the ends of several rows: a NaN or
    # Inf weight makes only its own output feature NaN, as F.linear with that weight does. The
    # bad weights sit in the first and second block of 64 of a 128-wide group where K allows
    # (kernels that read a group's two blocks apart mark each on its own).
    N = 40
    W = torch.randn(N, K, device=device, dtype=dtype)
    bad = (3, 17, 30)
    cols = (K // 2 + 3, min(K - 1, K // 2 + 64 + 17), K - 1)
    for n, k, x in zip(bad, cols, (float("nan"), float("inf"), float("-inf"))):
        W[n, k] = x
    packed, state = F.quantize_4bit(W, blocksize=blocksize, quant_type="nf4")
    good = torch.ones(N, dtype=torch.bool)
    good[list(bad)] = False
    for M in (1, 5, 12, 20, 40, 70):
        A = torch.randn(M, K, device=device, dtype=dtype)
        out = F.linear_4bit(A, packed, state).cpu()
        assert out[:, ~good].isnan().all()
        assert out[:, good].isfinite().all(), f"M={M}: NaN in features {torch.where(~out.isfinite().all(0))[0].tolist()}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("K,blocksize", [(256, 64), (4352, 128), (128, 4096)])
def test_nested_non_finite_weight_as_dequantize_reads_it(dtype, K, blocksize, device):
    # Nested scales of a weight with NaN and Inf: the nested statistics mark whole groups of
    # blocks, so more features than the bad weights' own may turn NaN; every path gives the
    # features that dequantize_4bit + F.linear gives (those scales read back in Python).
    N = 600
    W = torch.randn(N, K, device=device, dtype=dtype)
    cols = (K // 2 + 3, min(K - 1, K // 2 + 64 + 17), K - 1)  # first and second block of 64 of a group
    for n, k, x in zip((3, 170, 590), cols, (float("nan"), float("inf"), float("-inf"))):
        W[n, k] = x
    packed, state = F.quantize_4bit(W, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
    W_back = F.dequantize_4bit(packed, state).to(dtype)
    for M in (1, 5, 12, 20, 70, 130):
        A = torch.randn(M, K, device=device, dtype=dtype)
        want = torch.nn.functional.linear(A, W_back).isfinite().all(0)
        got = F.linear_4bit(A, packed, state).isfinite().all(0)
        assert not want.all() and want.any(), "the case under test: some features finite, some not"
        assert torch.equal(got, want), f"M={M}: {torch.where(got != want)[0].tolist()[:10]}"


@pytest.mark.parametrize("damage", ["offset", "group absmax"])
def test_nested_nan_parts_read_as_dequantize_reads_them(damage, device):
    # A NaN offset or group absmax (a damaged checkpoint) makes the blocks it scales NaN on every
    # path, as dequantize_4bit (the scales read back in Python) makes them: never a silent 0.
    N, K = 300, 256
    W = torch.randn(N, K, device=device, dtype=torch.bfloat16)
    packed, state = F.quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=True)
    if damage == "offset":
        state.offset = torch.tensor(float("nan"), device=device)
    else:
        state.state2.absmax[0] = float("nan")
    W_back = F.dequantize_4bit(packed, state).to(torch.bfloat16)
    for M in (1, 12, 20, 70):
        A = torch.randn(M, K, device=device, dtype=torch.bfloat16)
        want = torch.nn.functional.linear(A, W_back).isnan().all(0)
        got = F.linear_4bit(A, packed, state).isnan().all(0)
        assert want.any(), "the case under test: NaN features"
        assert torch.equal(got, want), f"M={M}: {torch.where(got != want)[0].tolist()[:10]}"


def test_empty_inputs(device):
    W = torch.randn(24, 128, device=device)
    packed, state = F.quantize_4bit(W, quant_type="nf4")
    bias = torch.randn(24, device=device)
    assert F.linear_4bit(torch.empty(0, 128, device=device), packed, state, bias).shape == (0, 24)
    W0 = torch.empty(24, 0, device=device)
    p0, s0 = F.quantize_4bit(W0, quant_type="nf4")
    out = F.linear_4bit(torch.randn(3, 0, device=device), p0, s0, bias)
    torch.testing.assert_close(out, bias.expand(3, 24))


def test_non_finite_activations_propagate(device):
    W = torch.randn(32, 256, device=device, dtype=torch.float16)
    packed, state = F.quantize_4bit(W, quant_type="nf4")
    for M in (1, 20, 80):
        A = torch.randn(M, 256, device=device, dtype=torch.float16)
        A[0, 5] = float("nan")
        out = F.linear_4bit(A, packed, state)
        assert out[0].isnan().all() and out[1:].isfinite().all()


def test_bad_arguments_name_themselves(device):
    ops = torch.ops.bitsandbytes
    W = torch.randn(32, 128, device=device, dtype=torch.float16)
    packed, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=True)
    s2 = state.state2
    A = torch.randn(2, 128, device=device, dtype=torch.float16)
    args = (A, packed, [32, 128], state.absmax, state.code, 64)
    nested = (s2.code, s2.absmax, state.offset, 256)
    with pytest.raises(ValueError, match="bias"):
        ops.linear_4bit(*args, torch.randn(31, device=device, dtype=torch.float16), *nested)
    with pytest.raises(TypeError, match="bias"):
        ops.linear_4bit(*args, torch.randn(32, device=device), *nested)
    with pytest.raises(TypeError, match="absmax"):  # uint8 codes without their nested statistics
        ops.linear_4bit(*args)
    with pytest.raises(ValueError, match="nested_absmax"):
        ops.linear_4bit(*args, None, s2.code, s2.absmax[:0], state.offset, 256)
    with pytest.raises(ValueError, match="nested_offset"):
        ops.linear_4bit(*args, None, s2.code, s2.absmax)
    with pytest.raises(ValueError, match="K"):
        ops.linear_4bit(torch.randn(2, 64, device=device, dtype=torch.float16), *args[1:], None, *nested)
    with pytest.raises(ValueError, match="blocksize"):
        ops.linear_4bit(*args[:5], 48, None, *nested)
    with pytest.raises(ValueError, match="B"):
        ops.linear_4bit(A, packed[:10], *args[2:], None, *nested)


def test_opcheck(device):
    ops = torch.ops.bitsandbytes
    W = torch.randn(40, 256, device=device, dtype=torch.float16)
    for nested in (False, True):
        packed, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=nested)
        extra = (state.state2.code, state.state2.absmax, state.offset, 256) if nested else ()
        for M in (1, 70):
            A = torch.randn(M, 256, device=device, dtype=torch.float16)
            bias = torch.randn(40, device=device, dtype=torch.float16)
            torch.library.opcheck(ops.linear_4bit.default, (A, packed, [40, 256], state.absmax, state.code, 64, bias,
                                                            *extra))
