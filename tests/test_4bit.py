"""4-bit quantization (NF4, FP4): codes and states against the reference library's fixtures and
an independent plain-torch reference, on every device; QuantState, errors, opcheck."""
import copy
import io
import json
import pickle

import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.functional.fourbit import block_absmax
from bitsandbytes.functional.quant_state import QuantState
from reference_4bit import check_product_bound, weight64

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
STORAGES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


def _cases(ref):
    return sorted(k[: -len("_packed")] for k in ref if k.endswith("_packed"))


def _unpack(packed, n):
    """The codes of n values from packed bytes: first value in the high nibble."""
    b = packed.reshape(-1).view(torch.uint8).reshape(-1).cpu()
    codes = torch.stack([b >> 4, b & 15], dim=1).reshape(-1)
    return codes[:n].long()


def _reference_quantize(x, code, blocksize):
    """Plain torch: per-block absmax, then the code whose value is nearest to x / absmax (float64)."""
    flat = x.reshape(-1).double()
    n = flat.numel()
    pad = (-n) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, blocksize)
    absmax = blocks.abs().amax(1)
    scaled = blocks / absmax.clamp_min(1e-30).unsqueeze(1)
    dist = (scaled.unsqueeze(-1) - code.double().cpu()).abs()
    return dist.argmin(-1).reshape(-1)[:n], absmax, scaled.reshape(-1)[:n], dist.reshape(-1, 16)[:n]


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_code_tables_equal_the_fixture(ref4, quant_type):
    assert torch.equal(F.get_4bit_type(quant_type), ref4[f"{quant_type}_code"])
    assert F.get_4bit_type(quant_type, device="cpu").dtype == torch.float32
    with pytest.raises(ValueError, match="typename"):
        F.get_4bit_type("int3")


def test_codes_and_states_equal_the_fixture(ref4, device):
    x = ref4["input"]
    for case in _cases(ref4):
        quant_type, dtype_name, bs, kind = case.split("_")
        dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dtype_name])
        blocksize = int(bs[2:])
        packed, state = F.quantize_4bit(x.to(device, dtype), blocksize=blocksize, quant_type=quant_type,
                                        compress_statistics=kind == "nested")
        assert torch.equal(packed.cpu(), ref4[case + "_packed"]), case
        saved = ref4[case + "_state"]
        ours = state.as_dict(packed=True)
        assert sorted(ours) == sorted(saved), case
        for key, value in saved.items():
            if key.startswith("quant_state."):
                mine, theirs = (json.loads(bytes(t.cpu().numpy())) for t in (ours[key], value))
                # the offset is a float32 mean: its last bits depend on the order of the sum
                assert mine.pop("nested_offset", 0.0) == pytest.approx(theirs.pop("nested_offset", 0.0), rel=1e-6)
                assert mine == theirs, case
            elif kind == "plain" or key != "absmax":
                torch.testing.assert_close(ours[key].cpu(), value, rtol=1e-6, atol=0, msg=case)
        # The reference's state dequantizes here to the reference's values.
        loaded = QuantState.from_dict(saved, device=device)
        deq = F.dequantize_4bit(ref4[case + "_packed"].to(device), loaded)
        assert deq.dtype == dtype and deq.shape == x.shape
        torch.testing.assert_close(deq.cpu(), ref4[case + "_dequant"], rtol=0, atol=0, msg=case)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocksize,n", [(64, 1), (64, 999), (32, 4097), (128, 5000), (4096, 10_001), (256, 0)])
def test_codes_are_nearest_against_plain_torch(quant_type, dtype, blocksize, n, device):
    x = (torch.randn(n) * 3).to(dtype)
    x[::97] = 0.0
    packed, state = F.quantize_4bit(x.to(device), blocksize=blocksize, quant_type=quant_type)
    assert packed.shape == (-(-n // 2), 1) and packed.dtype == torch.uint8
    assert state.absmax.shape == (-(-n // blocksize),)
    code = F.get_4bit_type(quant_type)
    want, absmax, scaled, dist = _reference_quantize(x.float(), code, blocksize)
    torch.testing.assert_close(state.absmax.cpu().double(), absmax, rtol=0, atol=0)
    got = _unpack(packed, n)
    # Every code is a nearest one (ties may go either way); in an all-zero block every code
    # dequantizes to 0 (the reference writes code 0 there).
    live = absmax.repeat_interleave(blocksize)[:n] > 0
    best = dist.min(1).values
    chosen = dist.gather(1, got.unsqueeze(1)).squeeze(1)
    assert torch.all((chosen <= best + 1e-6) | ~live), (chosen - best).max()
    if n > 1000:  # (FP4 has two codes of value zero: compare the values)
        assert (code[got] == code[want])[live].float().mean() > 0.99
    if n % 2 and bool(live[-1]):  # the missing last value is quantized as 0.0, as the reference does
        zero_code = 7 if quant_type == "nf4" else 0
        assert int(packed.reshape(-1)[-1].cpu()) & 15 == zero_code
    deq = F.dequantize_4bit(packed, state)
    assert deq.dtype == dtype and deq.shape == x.shape
    ref = (code.double()[got] * absmax.repeat_interleave(blocksize)[:n]).to(dtype)
    torch.testing.assert_close(deq.cpu(), ref, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares CUDA with the CPU")
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocksize", [32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_cuda_codes_and_absmax_equal_the_cpu(quant_type, dtype, blocksize):
    """Bit for bit, on data with the cases the GPU treats apart: NaN and +-Inf in some blocks, an
    all-zero block, a block of subnormal absmax, huge values (float32), values on the thresholds,
    an odd length, and input one element past its alignment."""
    n = 3 * 16384 + 2 * blocksize + 7
    x = torch.randn(n + 1, generator=torch.Generator().manual_seed(blocksize)) * 2
    x[1 + blocksize: 1 + 2 * blocksize] = 0.0
    x[1 + 2 * blocksize: 1 + 3 * blocksize] *= 1e-40 if dtype == torch.float32 else 1e-6
    x[1 + 3 * blocksize: 1 + 3 * blocksize + 15] = torch.tensor(
        [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
         -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
         0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011])
    x[1 + 3 * blocksize + 15] = 1.0
    if dtype == torch.float32:
        x[1 + 4 * blocksize: 1 + 5 * blocksize] *= 1e38
    x[1 + 6 * blocksize + 5] = float("nan")
    x[1 + 9 * blocksize + 1] = float("inf")
    x[1 + 9 * blocksize + 2] = -float("inf")
    x[-1000::333] = float("nan")
    x = x.to(dtype)
    for view in (x[:n], x[1:]):  # aligned, and one element past it
        packed_cpu, state_cpu = F.quantize_4bit(view, blocksize=blocksize, quant_type=quant_type)
        packed_gpu, state_gpu = F.quantize_4bit(view.cuda(), blocksize=blocksize, quant_type=quant_type)
        assert torch.equal(packed_gpu.cpu(), packed_cpu)
        assert torch.equal(state_gpu.absmax.cpu().view(torch.int32), state_cpu.absmax.view(torch.int32))


@pytest.mark.parametrize("quant_type,expected", [("nf4", 0.092), ("fp4", 0.122)])
def test_relative_error_on_normal_data(quant_type, expected, device):
    x = torch.randn(1 << 20, device=device)
    packed, state = F.quantize_4bit(x, blocksize=64, quant_type=quant_type)
    err = ((F.dequantize_4bit(packed, state) - x).norm() / x.norm()).item()
    assert abs(err - expected) < 0.01, err


@pytest.mark.parametrize("storage", STORAGES)
def test_quant_storage_holds_the_same_bytes(storage, device):
    x = torch.randn(3, 1001, device=device)
    packed8, state8 = F.quantize_4bit(x, quant_type="nf4")
    packed, state = F.quantize_4bit(x, quant_type="nf4", quant_storage=storage)
    assert packed.dtype == storage and packed.dim() == 2 and packed.shape[1] == 1
    nbytes = packed8.numel()
    assert torch.equal(packed.reshape(-1).view(torch.uint8)[:nbytes], packed8.reshape(-1))
    torch.testing.assert_close(F.dequantize_4bit(packed, state), F.dequantize_4bit(packed8, state8), rtol=0, atol=0)


def test_nested_statistics(device):
    x = torch.randn(64, 1000, device=device)
    p_plain, s_plain = F.quantize_4bit(x, quant_type="nf4", compress_statistics=False)
    p_nested, s_nested = F.quantize_4bit(x, quant_type="nf4", compress_statistics=True)
    assert torch.equal(p_plain, p_nested)
    assert s_nested.nested and s_nested.absmax.dtype == torch.uint8 and s_nested.state2.blocksize == 256
    torch.testing.assert_close(block_absmax(s_nested), s_plain.absmax, rtol=0.02, atol=1e-3)
    err = (F.dequantize_4bit(p_nested, s_nested) - F.dequantize_4bit(p_plain, s_plain)).abs().max()
    assert err < 0.02 * x.abs().max()


def test_quant_state_dict_round_trip_and_old_layout(device):
    x = torch.randn(100, 64, device=device, dtype=torch.bfloat16)
    for nested in (False, True):
        packed, state = F.quantize_4bit(x, quant_type="fp4", compress_statistics=nested, blocksize=128)
        for as_packed in (False, True):
            back = QuantState.from_dict(state.as_dict(packed=as_packed), device=device)
            assert back == state
            assert torch.equal(F.dequantize_4bit(packed, back), F.dequantize_4bit(packed, state))
        assert state[0] is state.absmax and state[1] == x.shape and state[2] == torch.bfloat16
        assert state[3] == 128 and state[5] == "fp4"
        assert (state[4] is None) == (not nested)
        moved = copy.deepcopy(state).to("cpu")
        assert moved.absmax.device.type == "cpu"


def test_quant_state_key_names(reference_dir, device):
    """QuantState's class lists of formats and serialized keys name every key as_dict writes and
    every key of the reference's 4-bit layer checkpoints."""
    assert QuantState.valid_quant_types == ("fp4", "nf4")
    x = torch.randn(64, 64, device=device)
    for quant_type in QuantState.valid_quant_types:
        for nested in (False, True):
            _, state = F.quantize_4bit(x, quant_type=quant_type, compress_statistics=nested)
            assert set(state.as_dict()) <= set(QuantState.valid_qs_keys)
            tensors = state.as_dict(packed=True)
            assert set(tensors) - {"absmax", "quant_map", "nested_absmax", "nested_quant_map"} == {
                "quant_state." + QuantState.valid_qs_type_keys[QuantState.valid_quant_types.index(quant_type)]}
    ref = torch.load(f"{reference_dir}/linear4bit_ref.pt", weights_only=False)
    for name in ("nf4_nested_state", "fp4_plain_state"):
        for key in ref[name]:
            if key.startswith("weight."):
                last = key.split(".")[-1]
                assert last in QuantState.valid_qs_keys or last in QuantState.valid_qs_type_keys, key


def test_dequantize_with_absmax_and_out(device):
    x = torch.randn(2000, device=device)
    packed, state = F.quantize_4bit(x, quant_type="nf4", blocksize=256)
    out = torch.empty(2000, device=device)
    got = F.dequantize_4bit(packed, absmax=state.absmax, out=out, blocksize=256, quant_type="nf4")
    assert got is out
    assert torch.equal(out, F.dequantize_4bit(packed, state))
    assert torch.equal(F.dequantize_nf4(packed, state), out)
    packed_f, state_f = F.quantize_fp4(x)
    assert state_f.quant_type == "fp4" and torch.equal(F.dequantize_fp4(packed_f, state_f),
                                                       F.dequantize_4bit(packed_f, state_f))
    assert F.quantize_nf4(x, blocksize=256)[1].quant_type == "nf4"


def test_bad_input_names_the_argument(device):
    x = torch.randn(100, device=device)
    with pytest.raises(ValueError, match="blocksize"):
        F.quantize_4bit(x, blocksize=48)
    with pytest.raises(ValueError, match="blocksize"):
        F.quantize_4bit(x, blocksize=8192)
    with pytest.raises(ValueError, match="quant_type"):
        F.quantize_4bit(x, quant_type="int3")
    with pytest.raises(TypeError, match="A"):
        F.quantize_4bit(x.to(torch.int32))
    with pytest.raises(TypeError, match="A"):
        F.quantize_4bit([1.0, 2.0])
    packed, state = F.quantize_4bit(x, blocksize=64)
    bad = QuantState(absmax=state.absmax[:1], shape=(100,), dtype=torch.float32, blocksize=64, quant_type="fp4",
                     code=state.code)
    with pytest.raises(ValueError, match="absmax"):
        F.dequantize_4bit(packed, bad)
    too_big = QuantState(absmax=state.absmax, shape=(1000,), dtype=torch.float32, blocksize=64, quant_type="fp4",
                         code=state.code)
    with pytest.raises(ValueError, match="A|shape"):
        F.dequantize_4bit(packed, too_big)
    with pytest.raises(ValueError, match="quant_state|absmax"):
        F.dequantize_4bit(packed)
    with pytest.raises(ValueError, match="state"):
        F.gemv_4bit(torch.randn(1, 100, device=device), packed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("M,K,N,blocksize", [(1, 256, 130, 64), (1, 1000, 33, 128), (3, 512, 64, 64),
                                             (16, 4096, 96, 4096), (1, 96, 7, 32)])
def test_gemv_4bit_against_float64(dtype, quant_type, M, K, N, blocksize, device):
    W = torch.randn(N, K, device=device, dtype=dtype)
    packed, state = F.quantize_4bit(W, blocksize=blocksize, quant_type=quant_type, compress_statistics=True)
    A = torch.randn(M, K, device=device, dtype=dtype)
    got = F.gemv_4bit(A, packed, state=state)
    Wd = F.dequantize_4bit(packed, state).double()
    ref = A.double() @ Wd.t()
    assert got.dtype == dtype and got.shape == (M, N)
    # float32 accumulation of K products, rounded once to the dtype
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    assert ((got.double() - ref).abs() <= tol * (A.double().abs() @ Wd.abs().t()) + 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_4bit_gradient_flows_to_the_input(dtype, device):
    W = torch.randn(48, 64, device=device, dtype=dtype)
    packed, state = F.quantize_4bit(W, quant_type="nf4")
    Wd, W64 = F.dequantize_4bit(packed, state), weight64(packed, state)
    for rows in (1, 5):
        A = torch.randn(rows, 64, device=device, dtype=dtype, requires_grad=True)
        bias = torch.randn(48, device=device, dtype=dtype, requires_grad=True)
        out = bnb.matmul_4bit(A, packed.t(), quant_state=state, bias=bias)
        check_product_bound(out.detach(), A.detach(), W64, bias.detach(), dtype)
        g = torch.randn_like(out)
        out.backward(g)
        torch.testing.assert_close(A.grad.double(), g.double() @ Wd.double(), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(bias.grad.double(), g.double().sum(0), rtol=2e-2, atol=2e-2)
    with torch.no_grad():  # one token, no gradient: the fused product
        a = torch.randn(1, 64, device=device, dtype=dtype)
        check_product_bound(bnb.matmul_4bit(a, packed.t(), quant_state=state), a, W64, None, dtype)


def test_opcheck(device):
    x = torch.randn(3, 333, device=device)
    ops = torch.ops.bitsandbytes
    torch.library.opcheck(ops.quantize_4bit.default, (x, 64, "nf4", torch.uint8))
    torch.library.opcheck(ops.quantize_4bit.default, (x.half(), 128, "fp4", torch.uint8))
    # (packed bytes seen as bfloat16 hold NaN patterns, which never compare equal: no output check)
    torch.library.opcheck(ops.quantize_4bit.default, (x.half(), 128, "fp4", torch.bfloat16),
                          test_utils=("test_schema", "test_faketensor"))
    packed, absmax = ops.quantize_4bit(x, 64, "nf4", torch.uint8)
    torch.library.opcheck(ops.dequantize_4bit.default, (packed, absmax, 64, "nf4", [3, 333], torch.bfloat16))
    W = torch.randn(40, 256, device=device, dtype=torch.float16)
    pw, aw = ops.quantize_4bit(W, 64, "fp4", torch.uint8)
    code = F.get_4bit_type("fp4", device=device)
    torch.library.opcheck(ops.gemv_4bit.default, (torch.randn(1, 256, device=device, dtype=torch.float16), pw,
                                                  [40, 256], aw, code, 64))


def test_pickled_state_survives(device):
    x = torch.randn(10, 64, device=device)
    packed, state = F.quantize_4bit(x, quant_type="nf4", compress_statistics=True)
    buf = io.BytesIO()
    torch.save({"p": packed, "s": state.as_dict(packed=True)}, buf)
    buf.seek(0)
    d = torch.load(buf, weights_only=True)
    back = QuantState.from_dict(d["s"], device=device)
    assert torch.equal(F.dequantize_4bit(d["p"], back), F.dequantize_4bit(packed, state))
    assert pickle.loads(pickle.dumps(state.as_dict())) is not None
