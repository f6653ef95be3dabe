"""Quantized layers refuse a state dict that does not fit them: a float weight loaded into a
quantized layer is quantized (as a move would), a quantized weight without its statistics or
with statistics of the wrong size is an error, and forward never changes a parameter."""
import pytest
import torch

import bitsandbytes as bnb

IN, OUT = 64, 24


def int8_layer(device):
    layer = bnb.nn.Linear8bitLt(IN, OUT, has_fp16_weights=False, threshold=0.0).to(device)
    layer(torch.randn(2, IN, device=device, dtype=torch.float16))
    assert layer.weight.dtype == torch.int8
    return layer


def fourbit_layer(device, **kwargs):
    layer = bnb.nn.Linear4bit(IN, OUT, compute_dtype=torch.float32, **kwargs).to(device)
    layer(torch.randn(2, IN, device=device))
    return layer


def test_float_weights_into_a_quantized_int8_layer_are_quantized(device):
    lin = torch.nn.Linear(IN, OUT).to(device)
    layer = int8_layer(device)
    layer.load_state_dict(lin.state_dict())
    fresh = bnb.nn.Linear8bitLt(IN, OUT, has_fp16_weights=False, threshold=0.0)
    fresh.load_state_dict(lin.state_dict())
    fresh = fresh.to(device)
    x = torch.randn(5, IN, device=device, dtype=torch.float16)
    fresh(x)
    assert torch.equal(layer.weight.data, fresh.weight.data)
    assert torch.equal(layer.weight.SCB, fresh.weight.SCB)
    assert torch.equal(layer(x), fresh(x))


def test_int8_weight_without_scb_is_refused(device):
    sd = int8_layer(device).state_dict()
    del sd["SCB"]
    layer = int8_layer(device)
    before = layer.weight.data.clone(), layer.weight.SCB.clone()
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "SCB"'):
        layer.load_state_dict(sd)
    result = layer.load_state_dict(sd, strict=False)
    assert "SCB" in result.missing_keys
    assert torch.equal(layer.weight.data, before[0]) and torch.equal(layer.weight.SCB, before[1])


@pytest.mark.parametrize("scb_shape", [(1,), (OUT + 1,), ()])
def test_int8_scb_of_the_wrong_size_is_refused(device, scb_shape):
    sd = int8_layer(device).state_dict()
    sd["SCB"] = torch.ones(scb_shape, device=device)
    with pytest.raises(ValueError, match="SCB must hold one float per row of weight"):
        int8_layer(device).load_state_dict(sd)


@pytest.mark.parametrize("compress_statistics", [False, True])
def test_float_weights_into_a_quantized_4bit_layer_are_quantized(device, compress_statistics):
    lin = torch.nn.Linear(IN, OUT).to(device)
    layer = fourbit_layer(device, compress_statistics=compress_statistics, quant_type="nf4")
    layer.load_state_dict(lin.state_dict())
    fresh = bnb.nn.Linear4bit(IN, OUT, compute_dtype=torch.float32, compress_statistics=compress_statistics,
                              quant_type="nf4")
    fresh.load_state_dict(lin.state_dict())
    fresh = fresh.to(device)
    assert torch.equal(layer.weight.data, fresh.weight.data)
    x = torch.randn(5, IN, device=device)
    assert torch.equal(layer(x), fresh(x))


def test_4bit_weight_without_its_quant_state_is_refused(device):
    sd = fourbit_layer(device).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("weight.")}
    layer = fourbit_layer(device)
    with pytest.raises(RuntimeError, match="Missing key\\(s\\) in state_dict: \"weight.absmax\""):
        layer.load_state_dict(sd)


@pytest.mark.parametrize("key", ["weight.absmax", "weight.nested_absmax"])
def test_4bit_statistics_of_the_wrong_size_are_refused(device, key):
    sd = fourbit_layer(device, compress_statistics=True).state_dict()
    sd[key] = sd[key][:0].clone()
    with pytest.raises(ValueError, match=f"Linear4bit: {key} holds 0 values"):
        fourbit_layer(device, compress_statistics=True).load_state_dict(sd)


@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_forward_never_changes_a_parameter(device, threshold):
    layer = bnb.nn.Linear8bitLt(IN, OUT, has_fp16_weights=False, threshold=threshold).to(device)
    layer(torch.randn(3, IN, device=device, dtype=torch.float16))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for rows in (1, 40):
            layer(torch.randn(rows, IN, device=device, dtype=dtype) * 10)
    after = layer.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    four = fourbit_layer(device)
    before = {k: v.clone() for k, v in four.state_dict().items()}
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        four(torch.randn(7, IN, device=device, dtype=dtype))
    after = four.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
