"""bnb.nn.Embedding8bit: row-wise absmax int8 table, lookups dequantized, checked against plain
torch float64."""
import pytest
import torch

import bitsandbytes as bnb


def _reference(table, idx):
    t = table.double()
    absmax = t.abs().amax(1, keepdim=True)
    codes = (t * 127 / absmax).round()
    return (codes * absmax / 127)[idx]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lookup_dequantizes_rows(device, dtype):
    emb = bnb.nn.Embedding8bit(50, 24, dtype=dtype)
    table = emb.weight.data.clone()
    emb = emb.to(device)
    assert emb.weight.dtype == torch.int8 and emb.weight.SCB.shape == (50,)
    idx = torch.randint(0, 50, (3, 7), device=device)
    out = emb(idx)
    assert out.dtype == dtype and out.shape == (3, 7, 24)
    ref = _reference(table.to(device), idx)
    # a code may be one step off the float64 rounding (the table is quantized through float16),
    # then the value is rounded once to the dtype
    step = (table.to(device).double().abs().amax(1, keepdim=True) / 127)[idx]
    assert ((out.double() - ref).abs() <= step + 2.0**-8 * ref.abs()).all()
    assert (emb.weight.data.double() - (table.to(device).double() * 127 /
            table.to(device).double().abs().amax(1, keepdim=True)).round()).abs().max() <= 1


def test_quantizes_at_first_lookup_and_state_dict_round_trip(device):
    emb = bnb.nn.Embedding8bit(20, 8, dtype=torch.float16)
    idx = torch.arange(20)
    first = emb(idx)  # quantized here, on the CPU
    assert emb.weight.dtype == torch.int8
    sd = emb.state_dict()
    assert set(sd) == {"weight", "SCB", "weight_format"} and sd["weight"].dtype == torch.int8
    fresh = bnb.nn.Embedding8bit(20, 8, dtype=torch.float16).to(device)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh(idx.to(device)).cpu(), first)
    assert torch.equal(fresh.weight.SCB.cpu(), sd["SCB"])


def test_importable_from_modules():
    from bitsandbytes.nn.modules import Embedding8bit
    assert Embedding8bit is bnb.nn.Embedding8bit


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stable_embedding_after_a_module_cast(device, dtype):
    # .half() / .to(bf16) casts the LayerNorm's parameters too; the norm still runs in float32
    torch.manual_seed(0)
    emb = bnb.nn.StableEmbedding(100, 64).to(device)
    ids = torch.tensor([[1, 5, 99], [0, 7, 3]], device=device)
    ref = emb(ids)
    cast = emb.to(dtype)
    out = cast(ids)
    assert out.dtype == dtype
    w = cast.weight.float()
    expect = torch.nn.functional.layer_norm(w[ids], (64,), cast.norm.weight.float(), cast.norm.bias.float(),
                                            cast.norm.eps).to(dtype)
    assert torch.equal(out, expect)
    assert torch.allclose(out.float(), ref, atol=0.05)
