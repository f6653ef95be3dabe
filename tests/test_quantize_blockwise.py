"""Block-wise quantization against the float64 reference, on every device, dtype and size."""
import pytest
import torch

import bitsandbytes.functional as F
from reference_quant import dequantize_blockwise_ref, quantize_blockwise_ref, tie_tolerant_equal

BLOCKSIZES = [64, 128, 256, 512, 1024, 2048, 4096]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_input(shape, dtype, device):
    # A heavy-ish tail so that blocks have different absmax values.
    x = torch.randn(shape) * torch.rand(shape).pow(3).mul(8).add(0.1)
    return x.to(dtype).to(device)


@pytest.mark.parametrize("blocksize", BLOCKSIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (63,), (3, 5000), (2, 3, 4097), (8193,)])
def test_quantize_matches_reference(device, blocksize, dtype, shape):
    A = random_input(shape, dtype, device)
    code = F.create_dynamic_map().to(device)
    q, state = F.quantize_blockwise(A, code=code, blocksize=blocksize)
    assert q.shape == A.shape and q.dtype == torch.uint8 and q.device == A.device
    q_ref, absmax_ref = quantize_blockwise_ref(A, code, blocksize)
    torch.testing.assert_close(state.absmax.cpu().double(), absmax_ref, rtol=0, atol=0)
    scaled = (A.double().cpu().reshape(-1) / absmax_ref.repeat_interleave(blocksize)[: A.numel()])
    ok, differ = tie_tolerant_equal(q, q_ref, scaled, code, atol=1e-6)
    assert ok, "a code differs from the nearest one by more than a tie"
    if dtype == torch.float32:  # 16-bit inputs land exactly on midpoints far more often
        assert differ <= max(1, A.numel() // 1000)
    out = F.dequantize_blockwise(q, state)
    assert out.dtype == dtype and out.shape == A.shape
    want = dequantize_blockwise_ref(q, state.absmax, code, blocksize).to(dtype)
    torch.testing.assert_close(out.cpu(), want, rtol=0, atol=0)


def crowded_maps():
    """Sorted maps whose nearest codes need more than one compare after the bucket lookup (two or
    more midpoints within 2^-7 of a magnitude): a dense cluster, repeated entries, entries past 1."""
    base = torch.linspace(-1, 1, 200)
    cluster = torch.cat([base, 0.5 + torch.arange(56) * 1e-5]).sort().values
    repeats = torch.cat([torch.linspace(-1, 1, 250), torch.full((6,), 0.25)]).sort().values
    beyond = torch.cat([torch.linspace(-1, 1, 240), torch.linspace(1.001, 1.02, 16)]).sort().values
    return {"cluster": cluster, "repeats": repeats, "beyond one": beyond}


@pytest.mark.parametrize("name", ["cluster", "repeats", "beyond one"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("blocksize", [64, 4096])
def test_crowded_maps_take_the_nearest_code(device, name, dtype, blocksize):
    code = crowded_maps()[name].to(device)
    A = random_input((3, 7001), dtype, device)
    A.view(-1)[::97] = 0.5 * A.view(-1)[::97].abs().max() + 1e-6  # values inside the cluster
    q, state = F.quantize_blockwise(A, code=code, blocksize=blocksize)
    q_ref, absmax_ref = quantize_blockwise_ref(A, code, blocksize)
    torch.testing.assert_close(state.absmax.cpu().double(), absmax_ref, rtol=0, atol=0)
    scaled = (A.double().cpu().reshape(-1) / absmax_ref.repeat_interleave(blocksize)[: A.numel()])
    ok, _ = tie_tolerant_equal(q, q_ref, scaled, code, atol=1e-6)
    assert ok, "a code differs from the nearest one by more than a tie"


@pytest.mark.parametrize("blocksize", [1, 3, 100, 777, 5000, 10000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_takes_any_blocksize(blocksize, dtype):
    """On the CPU any positive block size works, as in the reference library's CPU path,
    with the codes of the float64 reference and a nested round trip."""
    A = random_input((3, 2501), dtype, "cpu")
    code = F.create_dynamic_map()
    q, state = F.quantize_blockwise(A, code=code, blocksize=blocksize)
    q_ref, absmax_ref = quantize_blockwise_ref(A, code, blocksize)
    assert state.absmax.shape == (-(-A.numel() // blocksize),)
    torch.testing.assert_close(state.absmax.double(), absmax_ref, rtol=0, atol=0)
    scaled = A.double().reshape(-1) / absmax_ref.repeat_interleave(blocksize)[: A.numel()]
    ok, _ = tie_tolerant_equal(q, q_ref, scaled, code, atol=1e-6)
    assert ok
    want = dequantize_blockwise_ref(q, state.absmax, code, blocksize).to(dtype)
    torch.testing.assert_close(F.dequantize_blockwise(q, state), want, rtol=0, atol=0)
    qn, sn = F.quantize_blockwise(A, blocksize=blocksize, nested=True)
    err = (F.dequantize_blockwise(qn, sn).double() - A.double()).abs().max()
    assert err <= 0.06 * A.double().abs().max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_error_normal_data(device, dtype):
    A = torch.randn(1 << 20, device=device).to(dtype)
    q, state = F.quantize_blockwise(A, blocksize=4096)
    err = (F.dequantize_blockwise(q, state).float() - A.float()).abs().mean() / A.float().abs().mean()
    # The published figure for N(0,1) at blocksize 4096 is about 1.3%.
    assert 0.005 < err.item() < 0.016


def test_empty_tensor(device):
    A = torch.empty(0, 7, device=device)
    q, state = F.quantize_blockwise(A, blocksize=256)
    assert q.shape == (0, 7) and state.absmax.numel() == 0
    assert F.dequantize_blockwise(q, state).shape == (0, 7)


def test_zero_block_and_nonfinite_stay_in_their_block(device):
    A = torch.randn(4 * 256, device=device)
    A[:256] = 0
    A[256] = float("inf")
    A[512] = float("nan")
    q, state = F.quantize_blockwise(A, blocksize=256)
    out = F.dequantize_blockwise(q, state)
    assert torch.all(out[:256] == 0)
    # The last block holds only finite values: its round trip is unaffected by the others.
    torch.testing.assert_close(out[768:], A[768:], atol=state.absmax[3].item() * 0.02, rtol=0)


def test_non_contiguous_input_same_answer(device):
    base = torch.randn(300, 200, device=device)
    A = base.t()
    assert not A.is_contiguous()
    q1, s1 = F.quantize_blockwise(A, blocksize=128)
    q2, s2 = F.quantize_blockwise(A.contiguous(), blocksize=128)
    assert torch.equal(q1, q2) and torch.equal(s1.absmax, s2.absmax)
    # A view with an odd storage offset takes the unaligned path on the GPU.
    B = torch.randn(10001, device=device)[3:]
    q3, s3 = F.quantize_blockwise(B, blocksize=64)
    q4, s4 = F.quantize_blockwise(B.clone(), blocksize=64)
    assert torch.equal(q3, q4) and torch.equal(s3.absmax, s4.absmax)
    assert torch.equal(F.dequantize_blockwise(q3, s3), F.dequantize_blockwise(q4, s4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nested(device, dtype):
    A = torch.randn(50_000, device=device).to(dtype)
    q, state = F.quantize_blockwise(A, blocksize=256, nested=True)
    assert state.nested and state.absmax.dtype == torch.uint8
    q0, state0 = F.quantize_blockwise(A, blocksize=256)
    assert torch.equal(q, q0)
    out = F.dequantize_blockwise(q, state)
    plain = F.dequantize_blockwise(q0, state0)
    # The nested absmax is itself 8-bit: the result moves by about 1% of each block's scale.
    torch.testing.assert_close(out.float(), plain.float(), atol=0.05, rtol=0.02)
    err = (out.float() - A.float()).norm() / A.float().norm()
    assert err < 0.03


def test_out_and_absmax_buffers(device):
    A = torch.randn(5000, device=device)
    out = torch.empty(5000, dtype=torch.uint8, device=device)
    absmax = torch.empty(20, device=device)
    q, state = F.quantize_blockwise(A, out=out, absmax=absmax, blocksize=256)
    assert q.data_ptr() == out.data_ptr() and state.absmax.data_ptr() == absmax.data_ptr()
    res = torch.empty(5000, dtype=torch.float16, device=device)
    back = F.dequantize_blockwise(q, state, out=res)
    assert back.data_ptr() == res.data_ptr() and back.dtype == torch.float16
    q2, _ = F.quantize_blockwise(A, blocksize=256)
    assert torch.equal(q, q2)


def test_legacy_tuple_state(device):
    A = torch.randn(3000, device=device)
    q, state = F.quantize_blockwise(A)
    torch.testing.assert_close(F.dequantize_blockwise(q, (state.absmax, state.code)), F.dequantize_blockwise(q, state))
    torch.testing.assert_close(F.dequantize_blockwise(q, absmax=state.absmax), F.dequantize_blockwise(q, state))


def test_matches_reference_library_codes(reference_dir, device):
    ref = torch.load(f"{reference_dir}/blockwise_ref.pt", weights_only=False)
    A = ref["input"].to(device)
    for bs in (64, 256, 4096):
        q, state = F.quantize_blockwise(A, blocksize=bs)
        agree = (q.cpu() == ref[f"codes_bs{bs}"]).float().mean().item()
        assert agree >= 0.999, f"blocksize {bs}: {agree:.5f} of codes agree"
        torch.testing.assert_close(state.absmax.cpu(), ref[f"absmax_bs{bs}"], rtol=0, atol=0)
        torch.testing.assert_close(F.dequantize_blockwise(q, state).cpu(), ref[f"dequant_bs{bs}"], rtol=0, atol=0)
        # Their codes and absmax dequantize with ours to their values.
        theirs = F.dequantize_blockwise(ref[f"codes_bs{bs}"].to(device), absmax=ref[f"absmax_bs{bs}"].to(device),
                                        blocksize=bs)
        torch.testing.assert_close(theirs.cpu(), ref[f"dequant_bs{bs}"], rtol=0, atol=0)


def test_quant_state_dict_round_trip(device):
    A = torch.randn(7000, device=device, dtype=torch.bfloat16)
    for nested in (False, True):
        q, state = F.quantize_blockwise(A, blocksize=512, nested=nested)
        for packed in (False, True):
            d = state.as_dict(packed=packed)
            if packed:
                assert all(isinstance(v, torch.Tensor) for v in d.values())
            back = F.QuantState.from_dict(d, device=device)
            assert back == state
            torch.testing.assert_close(F.dequantize_blockwise(q, back), F.dequantize_blockwise(q, state))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_equals_cpu(dtype):
    A = random_input((3, 70001), dtype, "cpu")
    for bs in BLOCKSIZES:
        qc, sc = F.quantize_blockwise(A, blocksize=bs)
        qg, sg = F.quantize_blockwise(A.cuda(), blocksize=bs)
        assert torch.equal(sc.absmax, sg.absmax.cpu())
        assert (qc != qg.cpu()).sum().item() <= A.numel() // 10000 + 1
        assert torch.equal(F.dequantize_blockwise(qg, sg).cpu(), F.dequantize_blockwise(qg.cpu(), sc))


@pytest.mark.parametrize("bits", [3, 4, 5, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_maps_of_fewer_bits_out_of_order(device, bits, dtype):
    """create_linear_map pads a map of fewer than 8 bits with zeros between its halves, beside a
    value that rounds to -4.5e-8: not ascending, as the library we replace makes it too.
    Quantizing into it still takes a nearest entry, and the codes index the map as given."""
    code = F.create_linear_map(signed=True, total_bits=bits).to(device)
    assert not bool((code[1:] >= code[:-1]).all())
    A = random_input((3, 1001), dtype, device)
    q, state = F.quantize_blockwise(A, code=code, blocksize=64)
    q_ref, absmax_ref = quantize_blockwise_ref(A, code, 64)
    torch.testing.assert_close(state.absmax.cpu().double(), absmax_ref, rtol=0, atol=0)
    scaled = (A.double().cpu().reshape(-1) / absmax_ref.repeat_interleave(64)[: A.numel()])
    ok, _ = tie_tolerant_equal(q, q_ref, scaled, code, atol=1e-6)
    assert ok, "a code differs from the nearest one by more than a tie"
    torch.testing.assert_close(F.dequantize_blockwise(q, state).double().cpu(),
                               dequantize_blockwise_ref(q, absmax_ref, code, 64).to(dtype).double(),
                               rtol=0, atol=0)


def test_shuffled_map_takes_the_same_values(device):
    """A map in any order: every quantizer's codes index it as given and pick the values the
    ascending map picks; an edit of the map in place is seen by the next call."""
    code = F.create_dynamic_map().to(device)
    shuffled = code[torch.randperm(256, generator=torch.Generator().manual_seed(5)).to(device)]
    A = random_input((2, 3000), torch.float32, device)
    q1, s1 = F.quantize_blockwise(A, code=code, blocksize=256)
    out = torch.empty_like(q1)
    q2, s2 = F.quantize_blockwise(A, code=shuffled, blocksize=256, out=out)
    assert q2.data_ptr() == out.data_ptr() and s2.code is shuffled
    assert torch.equal(shuffled[q2.long()], code[q1.long()])
    assert torch.equal(F.dequantize_blockwise(q2, s2), F.dequantize_blockwise(q1, s1))
    t1, _ = F.quantize(A, code=code)
    t2, _ = F.quantize(A, code=shuffled)
    assert torch.equal(shuffled[t2.long()], code[t1.long()])
    X = A / A.abs().max()
    assert torch.equal(shuffled[F.quantize_no_absmax(X, shuffled).long()], code[F.quantize_no_absmax(X, code).long()])
    shuffled.copy_(code)  # now ascending: the codes are the ascending map's own
    assert torch.equal(F.quantize_blockwise(A, code=shuffled, blocksize=256)[0], q1)
    assert F.quantize_blockwise(A.new_empty(0), code=shuffled, blocksize=256)[0].numel() == 0
