"""QuantizedParameter and QuantizedParameterModule, on a toy format (int8 codes with one float32
scale per tensor) that supplies only its quantize step and its attributes, as a format's
weight class does: moves quantize, and the quantized data and its attributes survive module
moves, copies, pickles and state dicts."""
import copy
import io
import pickle

import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.nn import Int8Params
from bitsandbytes.nn.parameters import QuantizedParameter, QuantizedParameterModule


class ToyParams(QuantizedParameter):
    """codes = round(w * 127 / scale); `codes` aliases the data, `scale` follows it around."""

    _attribute_defaults = {"scale": None, "codes": None, "frozen": False}
    _data_aliases = ("codes",)
    _device_attributes = ("scale",)
    _transient_attributes = ("module",)

    def _is_quantized(self):
        return self.data.dtype == torch.int8

    def _wants_quantization(self):
        return not self.frozen and self.data.is_floating_point()

    def _quantize(self, device):
        w = self.data.to(device, torch.float32)
        scale = w.abs().max().clamp_min(1e-12)
        self.data = torch.round(w * (127 / scale)).to(torch.int8)
        self.codes, self.scale = self.data, scale
        self.requires_grad = False
        return self

    def _state_dict_entries(self, name):
        return {f"{name}.scale": self.scale} if self.scale is not None else {}

    def _owns_state_dict_key(self, key, name):
        return key == f"{name}.scale"

    def _prepare_load(self, state_dict, prefix, name):
        if not self._is_quantized():
            raise RuntimeError("ToyLinear: quantize the layer before loading a quantized state dict")
        return self

    def _finish_load(self, state_dict, prefix, name):
        self.scale.copy_(state_dict[f"{prefix}{name}.scale"])


class ToyLinear(QuantizedParameterModule, torch.nn.Linear):
    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out)
        self.weight = ToyParams(self.weight.data, requires_grad=False)
        self.weight.module = self

    def forward(self, x):
        w = self.weight
        return torch.nn.functional.linear(x, w.data.float() * (w.scale / 127), self.bias)


def quantized_toy(device):
    layer = ToyLinear(12, 5)
    return layer, layer.to(device)


def test_move_quantizes_and_keeps_attributes(device):
    p = ToyParams(torch.randn(4, 6), requires_grad=True, tag="kept")
    assert p.requires_grad and not p._is_quantized() and p.tag == "kept" and p.scale is None
    q = p.to(device)
    assert q is p and q._is_quantized() and not q.requires_grad
    assert q.codes.data_ptr() == q.data_ptr() and q.scale.device == q.data.device
    again = q.to(device, torch.float16)  # a cast does not touch quantized data
    assert again.dtype == torch.int8 and again.tag == "kept" and again.codes.data_ptr() == again.data_ptr()
    assert isinstance(again, ToyParams)


def test_meta_move_does_not_quantize():
    p = ToyParams(torch.randn(4, 6)).to("meta")
    assert p.device.type == "meta" and p.dtype == torch.float32 and isinstance(p, ToyParams)


def test_requires_grad_only_for_floating_point_data():
    assert ToyParams(torch.randn(2, 2)).requires_grad
    assert not ToyParams(torch.randn(2, 2), requires_grad=False).requires_grad
    assert not ToyParams(torch.zeros(2, 2, dtype=torch.int8)).requires_grad
    assert ToyParams().numel() == 0


def test_rebuild_from_attributes_like_the_ecosystem():
    p = ToyParams(torch.randn(4, 6)).to("cpu")
    p.marker = 3
    fresh = ToyParams(torch.randn(4, 6), requires_grad=False, **p.__dict__)
    assert fresh.marker == 3 and torch.equal(fresh.scale, p.scale)


def test_move_ignores_requires_grad_written_into_dict():
    # accelerate's init_empty_weights writes requires_grad into a parameter's __dict__ and then
    # rebuilds it as Cls(p.to(device), **p.__dict__)
    p = ToyParams(torch.randn(4, 6), requires_grad=False, tag="kept")
    p.__dict__["requires_grad"] = False
    moved = p.to("meta")
    assert moved.device.type == "meta" and "requires_grad" not in moved.__dict__ and moved.tag == "kept"
    q = ToyParams(moved, **p.__dict__)
    assert isinstance(q, ToyParams) and q.device.type == "meta" and q.tag == "kept" and not q.requires_grad


def test_quantized_layers_under_init_empty_weights(device):
    accelerate = pytest.importorskip("accelerate")
    from accelerate.utils import set_module_tensor_to_device
    with accelerate.init_empty_weights():
        lin8 = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False)
        lin4 = bnb.nn.Linear4bit(64, 32, quant_type="nf4")
        lin8_train = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=True)
    for layer, cls in ((lin8, Int8Params), (lin4, bnb.nn.Params4bit), (lin8_train, Int8Params)):
        assert isinstance(layer.weight, cls) and layer.weight.device.type == "meta"
        assert layer.weight.shape == (32, 64) and layer.weight.dtype == torch.float32
        assert layer.weight.requires_grad == (layer is lin8_train)
    # materialized from float tensors as accelerate and transformers do (each parameter rebuilt
    # from its class and __dict__, then moved), the layers quantize and compute as usual
    w, b = torch.randn(32, 64), torch.randn(32)
    x = torch.randn(3, 64, device=device)
    for layer in (lin8, lin4):
        set_module_tensor_to_device(layer, "bias", device, value=b)
        if device == "cpu" and layer is lin8:  # accelerate moves it through CUDA device 0
            layer._parameters["weight"] = Int8Params(w, requires_grad=False, **layer.weight.__dict__).to(device)
        else:
            set_module_tensor_to_device(layer, "weight", device, value=w)
        assert layer.weight.dtype == (torch.int8 if layer is lin8 else torch.uint8)
        y = layer(x).float()
        ref = torch.nn.functional.linear(x.float().cpu(), w, b)
        cos = torch.nn.functional.cosine_similarity(y.cpu().flatten(), ref.flatten(), dim=0)
        assert cos > 0.98, cos


def test_module_moves_keep_attributes(device):
    layer, moved = quantized_toy(device)
    w = moved.weight
    assert isinstance(w, ToyParams) and w._is_quantized() and w.scale.device == w.device
    back = moved.to("cpu")
    assert back.weight.device.type == "cpu" and back.weight.scale.device.type == "cpu"
    assert back.weight.codes.data_ptr() == back.weight.data_ptr() and back.weight.module is back
    x = torch.randn(3, 12)
    want = back(x)
    again = back.to(device).cpu()
    torch.testing.assert_close(again(x), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_module_cuda_moves():
    _, layer = quantized_toy("cpu")
    layer = layer.cuda()
    assert layer.weight.is_cuda and layer.weight.scale.is_cuda and layer.weight.codes.data_ptr() == layer.weight.data_ptr()
    layer = layer.cpu()
    assert not layer.weight.scale.is_cuda


def test_pickle_deepcopy_copy(device):
    _, layer = quantized_toy(device)
    w = layer.weight
    w.tag = "kept"
    for clone in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):
        assert isinstance(clone, ToyParams) and clone._is_quantized() and clone.tag == "kept"
        assert torch.equal(clone.data, w.data) and clone.data_ptr() != w.data_ptr()
        assert clone.codes.data_ptr() == clone.data_ptr() and torch.equal(clone.scale, w.scale)
        assert not hasattr(clone, "module")  # transient: the owning module sets it again
    shallow = copy.copy(w)
    assert isinstance(shallow, ToyParams) and shallow.data_ptr() == w.data_ptr() and shallow.scale is w.scale


def test_module_deepcopy_pickle_and_save(device):
    _, layer = quantized_toy(device)
    x = torch.randn(3, 12, device=device)
    want = layer(x)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer)), torch.load(buf, weights_only=False)):
        assert isinstance(clone.weight, ToyParams) and clone.weight._is_quantized()
        torch.testing.assert_close(clone(x), want)


def test_state_dict_entries_round_trip(device):
    _, layer = quantized_toy(device)
    sd = layer.state_dict()
    assert set(sd) == {"weight", "bias", "weight.scale"} and sd["weight"].dtype == torch.int8
    _, other = quantized_toy(device)
    other.load_state_dict(sd)  # strict: weight.scale is not an unexpected key
    assert torch.equal(other.weight.data, layer.weight.data) and torch.equal(other.weight.scale, layer.weight.scale)
    nested = torch.nn.Sequential(quantized_toy(device)[1])
    nested.load_state_dict({f"0.{k}": v for k, v in sd.items()})
    assert torch.equal(nested[0].weight.scale, layer.weight.scale)
    with pytest.raises(RuntimeError, match="quantize the layer"):
        ToyLinear(12, 5).load_state_dict(sd)


def test_unquantized_module_saves_no_entries():
    layer = ToyLinear(12, 5)
    layer.weight.frozen = True
    assert set(layer.to("cpu").state_dict()) == {"weight", "bias"}


def test_the_formats_are_quantized_parameters():
    assert issubclass(Int8Params, QuantizedParameter) and issubclass(bnb.nn.Params4bit, QuantizedParameter)
    assert isinstance(bnb.nn.Linear8bitLt(4, 4), QuantizedParameterModule)
    assert isinstance(bnb.nn.Linear4bit(4, 4), QuantizedParameterModule)


@pytest.mark.parametrize("make", [lambda: bnb.nn.Linear4bit(64, 32, quant_type="nf4"),
                                  lambda: bnb.nn.Linear4bit(64, 32, quant_type="fp4", compress_statistics=False),
                                  lambda: bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False)],
                         ids=["nf4-nested", "fp4", "int8"])
@pytest.mark.parametrize("target", ["quantized", "meta"])
def test_load_state_dict_with_assign(device, make, target):
    # assign=True hands the module the state dict's tensors; the quantized parameter keeps its
    # class and statistics around them (it was replaced by a plain Parameter that could not run)
    src = make().to(device)
    x = torch.randn(4, 64, device=device)
    y = src(x)
    sd = src.state_dict()
    if target == "meta":
        if isinstance(src, bnb.nn.Linear8bitLt):
            pytest.skip("an int8 state dict loads into a quantized Linear8bitLt only (docs/int8.md)")
        with torch.device("meta"):
            dst = make()
    else:
        dst = make().to(device)
    dst.load_state_dict(sd, assign=True)
    assert type(dst.weight) is type(src.weight) and dst.weight.data_ptr() == sd["weight"].data_ptr()
    assert torch.equal(dst(x), y)
    assert dst.weight.device == sd["weight"].device
