"""Linear8bitLt / Int8Params: quantization on device moves, forward against nn.Linear, the
reference library's state dict, copy/deepcopy/pickle, rebuilding Int8Params as the
ecosystem does, and clear errors."""
import copy
import io
import os
import pickle

import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.nn import Int8Params, Linear8bitLt


def quantized_layer(device, n_in=96, n_out=72, threshold=6.0, bias=True):
    fp = torch.nn.Linear(n_in, n_out, bias=bias)
    layer = Linear8bitLt(n_in, n_out, bias=bias, has_fp16_weights=False, threshold=threshold)
    layer.load_state_dict(fp.state_dict())
    return fp, layer.to(device)


def rel_err(x, ref):
    return ((x.double().cpu() - ref.double().cpu()).norm() / ref.double().cpu().norm()).item()


def test_defaults_and_types():
    layer = Linear8bitLt(16, 8)
    assert isinstance(layer, torch.nn.Linear) and isinstance(layer.weight, Int8Params)
    assert layer.state.has_fp16_weights and layer.weight.requires_grad and layer.state.threshold == 0.0
    assert layer.index is None
    frozen = Linear8bitLt(16, 8, has_fp16_weights=False, threshold=6.0, index=3)
    assert not frozen.weight.requires_grad and frozen.state.use_pool and frozen.index == 3


@pytest.mark.parametrize("move", ["to", "cuda", "to_int"])
def test_quantized_on_cuda_move(move):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    fp, layer = quantized_layer("cpu")
    layer = Linear8bitLt(96, 72, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(fp.state_dict())
    layer = {"to": lambda m: m.to("cuda"), "cuda": lambda m: m.cuda(), "to_int": lambda m: m.to(0)}[move](layer)
    assert layer.weight.dtype == torch.int8 and layer.weight.device.type == "cuda"
    assert layer.weight.SCB.device.type == "cuda" and layer.weight.SCB.shape == (72,)
    back = layer.cpu()
    assert back.weight.dtype == torch.int8 and back.weight.SCB.device.type == "cpu"
    again = back.to("cuda")
    assert again.weight.SCB.device.type == "cuda" and again.weight.CB.data_ptr() == again.weight.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 5, 100])
def test_forward_close_to_linear(device, dtype, rows):
    fp, layer = quantized_layer(device)
    assert layer.weight.dtype == torch.int8
    W = fp.weight.detach().half().float()  # the float32 weight is quantized through float16
    CB, SCB = layer.weight.data.cpu(), layer.weight.SCB.cpu()
    ref_q, ref_s = torch.round(W * (127 / W.abs().amax(1, keepdim=True))), W.abs().amax(1)
    assert torch.equal(CB.float(), ref_q) and torch.allclose(SCB, ref_s)
    x = torch.randn(3, rows, 96)
    x[..., 5] *= 20  # an outlier feature
    out = layer(x.to(dtype).to(device))
    assert out.dtype == dtype and out.shape == (3, rows, 72)
    assert rel_err(out, fp(x)) < 0.02


class _Doubled(torch.nn.Module):
    def forward(self, b):
        return 2 * b


@pytest.mark.parametrize("rows", [1, 100])
def test_forward_reads_parametrized_and_dropped_bias(device, rows):
    """forward reads its parameters from the module's table (no __getattr__ per call); a bias
    under a parametrization (a property, not in the table) or made a plain attribute must still
    be the one used, on the decode path (1 row) and the general one."""
    import torch.nn.utils.parametrize as P
    fp, layer = quantized_layer(device)
    x = torch.randn(rows, 96, dtype=torch.float16, device=device)
    with torch.no_grad():
        plain = layer(x).float()
        P.register_parametrization(layer, "bias", _Doubled())
        assert "bias" not in layer._parameters
        doubled = layer(x).float()
        torch.testing.assert_close(doubled - plain, layer.parametrizations.bias.original.float().expand_as(plain),
                                   rtol=1e-2, atol=2e-2)
        P.remove_parametrizations(layer, "bias", leave_parametrized=False)
        bias = layer._parameters.pop("bias")
        layer.bias = None  # a plain attribute now
        torch.testing.assert_close(layer(x).float(), plain - bias.float(), rtol=1e-2, atol=2e-2)


def test_fp16_weights_training(device):
    torch.manual_seed(0)
    layer = Linear8bitLt(32, 16, has_fp16_weights=True, threshold=6.0).to(device)
    x = torch.randn(64, 32, device=device)
    ref = torch.nn.Linear(32, 16).to(device)
    ref.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    out = layer(x)
    out.sum().backward()
    ref(x).sum().backward()
    assert layer.weight.dtype == torch.float32 and layer.weight.grad is not None
    assert rel_err(layer.weight.grad, ref.weight.grad) < 1e-4
    assert rel_err(layer.bias.grad, ref.bias.grad) < 1e-5


@pytest.mark.parametrize("rows", [4, 64])
def test_adapter_training_on_frozen_int8(device, rows):
    """LoRA-style: the int8 layer is frozen, the gradient reaches the adapter before it."""
    fp, layer = quantized_layer(device)
    adapter = torch.nn.Linear(96, 96, bias=False).to(device=device, dtype=torch.float16)
    x = torch.randn(rows, 96, dtype=torch.float16, device=device)
    layer(adapter(x)).float().pow(2).sum().backward()
    assert adapter.weight.grad is not None and layer.weight.grad is None
    ref_adapter = torch.nn.Linear(96, 96, bias=False)
    ref_adapter.weight.data = adapter.weight.detach().float().cpu()
    W = layer.weight.data.float().cpu() * layer.weight.SCB.cpu()[:, None] / 127
    h = ref_adapter(x.float().cpu())
    torch.nn.functional.linear(h, W, fp.bias.detach()).pow(2).sum().backward()
    assert rel_err(adapter.weight.grad, ref_adapter.weight.grad) < 0.03


def test_state_dict_round_trip(device):
    fp, layer = quantized_layer(device)
    sd = layer.state_dict()
    assert set(sd) == {"weight", "bias", "SCB", "weight_format"}
    assert sd["weight"].dtype == torch.int8 and sd["SCB"].dtype == torch.float32
    assert sd["weight_format"].dtype == torch.uint8 and int(sd["weight_format"]) == 0
    _, other = quantized_layer(device)
    other.load_state_dict(sd)
    assert torch.equal(other.weight.data, layer.weight.data) and torch.equal(other.weight.SCB, layer.weight.SCB)
    x = torch.randn(40, 96, dtype=torch.float16, device=device)
    assert torch.equal(other(x), layer(x))


def test_scb_saved_as_a_column_loads(device):
    # one float a row, saved [rows, 1] by some exporters: the same layer as [rows]
    fp, layer = quantized_layer(device)
    sd = layer.state_dict()
    sd["SCB"] = sd["SCB"].reshape(-1, 1)
    _, other = quantized_layer(device)
    other.load_state_dict(sd)
    assert other.weight.SCB.shape == layer.weight.SCB.shape and torch.equal(other.weight.SCB, layer.weight.SCB)
    x = torch.randn(40, 96, dtype=torch.float16, device=device)
    assert torch.equal(other(x), layer(x))


def test_load_into_unquantized_errors(device):
    _, layer = quantized_layer(device)
    sd = layer.state_dict()
    with pytest.raises(RuntimeError, match="not quantized"):
        Linear8bitLt(96, 72, has_fp16_weights=False, threshold=6.0).load_state_dict(sd)
    with pytest.raises(RuntimeError, match="not quantized"):
        Linear8bitLt(96, 72).to(device).load_state_dict(sd)
    for fmt in (torch.tensor(1, dtype=torch.uint8), 7, "col32", "tiled"):  # no int8 weight was saved so
        with pytest.raises(ValueError, match="weight_format"):
            layer.load_state_dict(dict(sd, weight_format=fmt))


def test_reference_checkpoint(device, reference_dir):
    ref = torch.load(os.path.join(reference_dir, "linear8bitlt_ref.pt"), weights_only=False)
    layer = Linear8bitLt(256, 192, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(ref["fp16_state"])
    layer = layer.to(device)
    layer.load_state_dict(ref["int8_state"])
    # Our quantization of the same fp16 weight equals the reference library's.
    fresh = Linear8bitLt(256, 192, has_fp16_weights=False, threshold=6.0)
    fresh.load_state_dict(ref["fp16_state"])
    fresh = fresh.half().to(device)
    assert torch.equal(fresh.weight.data.cpu(), ref["int8_state"]["weight"])
    torch.testing.assert_close(fresh.weight.SCB.cpu(), ref["int8_state"]["SCB"])
    out = layer(ref["input"].to(device))
    want = ref["output"].float()
    assert out.dtype == torch.float16
    # The reference multiplies the regular columns in int8; our few-row path applies the int8
    # weight to the 16-bit input directly, which is at least as close to the 16-bit layer.
    assert rel_err(out, want) < 0.01
    fp = torch.nn.functional.linear(ref["input"].float(), ref["fp16_state"]["weight"].float(),
                                    ref["fp16_state"]["bias"].float())
    assert rel_err(out, fp) <= rel_err(want, fp) * 1.5 + 1e-3


def test_reference_checkpoint_gemm_path(device, reference_dir):
    """Many rows take the int8 GEMM with the outlier decomposition, as the reference does."""
    ref = torch.load(os.path.join(reference_dir, "linear8bitlt_ref.pt"), weights_only=False)
    layer = Linear8bitLt(256, 192, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(ref["fp16_state"])
    layer = layer.to(device)
    layer.load_state_dict(ref["int8_state"])
    x = ref["input"].to(device).repeat(8, 1)  # 80 rows: same rows, GEMM path
    out = layer(x)
    torch.testing.assert_close(out[:10].cpu().float(), ref["output"].float(), rtol=2e-2, atol=2e-2)
    assert rel_err(out[:10], ref["output"]) < 4e-3


def test_copy_deepcopy_pickle(device):
    _, layer = quantized_layer(device)
    x = torch.randn(40, 96, dtype=torch.float16, device=device)
    want = layer(x)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert isinstance(clone.weight, Int8Params) and clone.weight.dtype == torch.int8
        assert clone.weight.SCB is not None and clone.weight.data_ptr() != layer.weight.data_ptr()
        assert not clone.weight.has_fp16_weights
        assert torch.equal(clone(x), want)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), want)
    shallow = copy.copy(layer.weight)
    assert isinstance(shallow, Int8Params) and shallow.SCB is layer.weight.SCB


def test_int8params_rebuild_like_the_ecosystem(device):
    """transformers: Int8Params(value, requires_grad=False, **old.__dict__); PEFT:
    Int8Params(w.to('cpu'), requires_grad=False, has_fp16_weights=...)."""
    layer = Linear8bitLt(96, 72, bias=False, has_fp16_weights=False, threshold=6.0)
    old = layer.weight
    old._is_hf_initialized = True
    value = torch.randn(72, 96, dtype=torch.float16)
    new = Int8Params(value, requires_grad=False, **old.__dict__)
    assert isinstance(new, Int8Params) and not new.requires_grad and new._is_hf_initialized
    layer._parameters["weight"] = new
    layer = layer.to(device)
    assert layer.weight.dtype == torch.int8 and layer.weight.SCB.shape == (72,)
    w = Int8Params(layer.weight.data.to("cpu"), requires_grad=False, has_fp16_weights=False)
    w.SCB = layer.weight.SCB.cpu()
    deq = bnb.functional.int8_vectorwise_dequant(w.data, w.SCB)
    assert rel_err(deq, value.float()) < 0.01


def test_int8params_from_int8_data():
    p = Int8Params(torch.zeros(3, 4, dtype=torch.int8))  # default requires_grad=True
    assert p.dtype == torch.int8 and not p.requires_grad and p.CB is None and p.SCB is None


def test_cpu_first_forward_quantizes():
    layer = Linear8bitLt(32, 16, has_fp16_weights=False, threshold=6.0)
    assert layer.weight.dtype == torch.float32
    layer(torch.randn(4, 32))
    assert layer.weight.dtype == torch.int8 and set(layer.state_dict()) >= {"SCB", "weight_format"}


def test_linear4bit_is_not_an_int8_layer():
    assert issubclass(bnb.nn.Params4bit, torch.nn.Parameter)
    assert not isinstance(Linear8bitLt(4, 4), bnb.nn.Linear4bit)
    assert not isinstance(bnb.nn.Linear4bit(4, 4), Linear8bitLt)
