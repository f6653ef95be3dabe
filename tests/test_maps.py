"""The quantization maps equal the reference library's bit for bit."""
import os

import pytest
import torch

import bitsandbytes.functional as F


def read_reference_maps(reference_dir):
    maps = {}
    with open(os.path.join(reference_dir, "quant_maps.txt")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, *hexes = line.split()
            maps[name] = [int(h, 16) for h in hexes]
    return maps


@pytest.mark.parametrize("name, make", [
    ("dynamic_signed", lambda: F.create_dynamic_map(signed=True)),
    ("dynamic_unsigned", lambda: F.create_dynamic_map(signed=False)),
    ("linear_signed", lambda: F.create_linear_map(signed=True)),
    ("linear_unsigned", lambda: F.create_linear_map(signed=False)),
    ("fp8_e5m2", lambda: F.create_fp8_map(True, 5, 2)),
    ("fp8_e4m3", lambda: F.create_fp8_map(True, 4, 3)),
])
def test_map_bits_equal_reference(reference_dir, name, make):
    ours = make()
    assert ours.dtype == torch.float32 and ours.numel() == 256
    bits = [b & 0xFFFFFFFF for b in ours.view(torch.int32).tolist()]
    assert bits == read_reference_maps(reference_dir)[name]


@pytest.mark.parametrize("signed", [True, False])
def test_maps_sorted_and_span(signed):
    for code in (F.create_dynamic_map(signed), F.create_linear_map(signed), F.create_fp8_map(signed, 4, 4 - signed)):
        assert torch.all(code[1:] >= code[:-1])
        assert code.max().item() == 1.0
        if signed:
            assert -1.0 <= code.min().item() < -0.99
        else:
            assert code.min().item() == 0.0


def test_map_argument_errors():
    with pytest.raises(ValueError, match="exponent_bits"):
        F.create_fp8_map(True, 5, 3)


def _reference_dynamic_map(signed, max_exponent_bits, total_bits):
    """The dynamic map built as the reference library's algorithm does, in plain torch: a
    None where that algorithm refuses the combination (its count check fails)."""
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        edges = int(2 ** (i + non_sign_bits - max_exponent_bits + (0 if signed else 1)) + 1)
        b = torch.linspace(0.1, 1, edges)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1
    if extra > 0:
        b = torch.linspace(0.1, 1, extra + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + max_exponent_bits - 1)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + max_exponent_bits - 1)) * means).tolist()
    data += [0, 1.0]
    if len(data) != 2 ** total_bits:
        return None
    data += [0] * (256 - len(data))
    return torch.tensor(sorted(data))


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("total_bits", range(1, 9))
@pytest.mark.parametrize("max_exponent_bits", range(1, 9))
def test_dynamic_map_every_combination(signed, max_exponent_bits, total_bits):
    ref = _reference_dynamic_map(signed, max_exponent_bits, total_bits)
    if ref is None:
        with pytest.raises(ValueError, match="max_exponent_bits"):
            F.create_dynamic_map(signed, max_exponent_bits, total_bits)
        return
    code = F.create_dynamic_map(signed, max_exponent_bits, total_bits)
    assert code.dtype == torch.float32 and code.numel() == 256
    assert torch.equal(code.view(torch.int32), ref.view(torch.int32))


def test_dynamic_map_eight_exponent_bits():
    code = F.create_dynamic_map(True, 8, 8)
    assert code.numel() == 256 and code.max() == 1.0 and code.min() < 0


@pytest.mark.parametrize("kw", [dict(max_exponent_bits=0), dict(total_bits=9), dict(total_bits=2.5)])
def test_dynamic_map_bad_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        F.create_dynamic_map(**kw)


@pytest.mark.parametrize("signed, exponent_bits, precision_bits", [
    (True, 1, 0), (True, 1, 1), (True, 2, 1), (True, 3, 1), (True, 3, 2), (True, 4, 2), (False, 2, 2), (False, 4, 3),
])
def test_fp8_maps_of_fewer_bits_ascending(signed, exponent_bits, precision_bits):
    """A small-float map of fewer than 8 bits fills its 256 entries with zeros, placed in
    ascending order among the format's values (the library we replace sorts after padding)."""
    total_bits = exponent_bits + precision_bits + signed
    code = F.create_fp8_map(signed, exponent_bits, precision_bits, total_bits)
    assert code.numel() == 256 and code.dtype == torch.float32
    assert bool((code[1:] >= code[:-1]).all())
    assert code.max().item() == 1.0
    # The format's zero (two with a sign) and the padding are the map's only zeros.
    zeros_of_format = 2 if signed else 1
    assert int((code == 0).sum()) == 256 - 2 ** total_bits + zeros_of_format
    nonzero = code[code != 0]
    if signed:
        assert torch.equal(nonzero, -nonzero.flip(0))
