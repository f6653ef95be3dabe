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
