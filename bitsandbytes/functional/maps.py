"""The 8-bit quantization maps: 256 float32 values, sorted ascending.

The dynamic map follows the construction of the 8-bit optimizer paper (a sign bit, a run
of zero bits that sets a power of ten, an indicator bit, and linear fraction bits), and
is computed in float32 step by step so that its bits equal those of the maps stored in
checkpoints written by earlier releases.
"""
import itertools

import torch

from .._formats import FORMAT_8BIT


def _pad_to_map_size(values):
    return values + [0.0] * (FORMAT_8BIT.map_size - len(values))


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """Dynamic tree quantization map; `signed=False` spends the sign bit on precision.
    Combinations whose codes do not add up to 2^total_bits values are refused."""
    for name, value in (("max_exponent_bits", max_exponent_bits), ("total_bits", total_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"create_dynamic_map: {name} must be a positive int, got {value!r}")
    if total_bits > 8:
        raise ValueError(f"create_dynamic_map: total_bits must be at most 8, got {total_bits}")
    value_bits = total_bits - 1
    # Codes where every exponent bit is zero and no indicator bit is left.
    extra_codes = 2 ** (value_bits - max_exponent_bits) - 1
    values = []

    def add_decade(decade, count):
        # `count` linear steps over [0.1, 1], taken at the centre of each step, scaled by 10^decade.
        edges = torch.linspace(0.1, 1, count + 1, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2.0
        scale = 10 ** decade
        values.extend((scale * centres).tolist())
        if signed:
            values.extend((-scale * centres).tolist())

    for e in range(max_exponent_bits):
        fraction_bits = e + value_bits - max_exponent_bits + (0 if signed else 1)
        # 2^fraction_bits + 1 edges, truncated to an int: with more exponent bits than value
        # bits the lowest decades get one edge (no value) or two, as the reference counts them.
        add_decade(-(max_exponent_bits - 1) + e, int(2 ** fraction_bits + 1) - 1)
    if extra_codes > 0:
        add_decade(-(max_exponent_bits - 1) + max_exponent_bits - 1, extra_codes)
    values += [0.0, 1.0]
    if len(values) != 2 ** total_bits:
        raise ValueError(f"create_dynamic_map: signed={signed}, max_exponent_bits={max_exponent_bits} gives "
                         f"{len(values)} values, not the 2^total_bits = {2 ** total_bits} of total_bits={total_bits}")
    return torch.tensor(sorted(_pad_to_map_size(values)), dtype=torch.float32)


def create_optimizer_4bit_map(signed=True):
    """The 16 values (float32, sorted) of a 4-bit optimizer state's map, as in "Memory Efficient
    Optimizers with 4-bit States" (Li et al., 2023). signed (first moments): the dynamic map of
    4-bit codes, create_dynamic_map(signed=True, max_exponent_bits=3, total_bits=4) without its
    padding. Unsigned (second moments): the linear map without zero, (i + 1) / 16: a second
    moment rounded to zero would turn the update m / sqrt(v) of its value into a huge step, so
    the smallest code stands for 1/16 of the block maximum instead."""
    if signed:
        padded = create_dynamic_map(signed=True, max_exponent_bits=3, total_bits=4)
        values = padded[padded != 0].tolist() + [0.0]
        return torch.tensor(sorted(values), dtype=torch.float32)
    return torch.arange(1, 17, dtype=torch.float32) / 16


def create_linear_map(signed=True, total_bits=8, add_zero=True):
    """Evenly spaced values over [-1, 1] (signed) or [0, 1]."""
    low = -1.0 if signed else 0.0
    count = 2 ** total_bits
    if add_zero or total_bits < 8:
        # An odd number of evenly spaced signed values puts one exactly on zero.
        count = count - 1 if signed else count
    values = torch.linspace(low, 1.0, count, dtype=torch.float32)
    gap = FORMAT_8BIT.map_size - values.numel()
    if gap == 0:
        return values
    half = values.numel() // 2
    return torch.tensor(values[:half].tolist() + [0.0] * gap + values[half:].tolist(), dtype=torch.float32)


def create_fp8_map(signed=True, exponent_bits=5, precision_bits=2, total_bits=8):
    """Every value of a small float format (with subnormals), normalised to a maximum of 1."""
    has_sign = 1 if signed else 0
    if exponent_bits + precision_bits != total_bits - has_sign:
        raise ValueError("create_fp8_map: exponent_bits + precision_bits must equal total_bits minus the sign bit")
    bias = 2 ** (exponent_bits - 1)
    values = []
    for exponent in range(2 ** exponent_bits):
        for mantissa in itertools.product([0, 1], repeat=precision_bits):
            v = 1.0 if exponent != 0 else 0.0
            for i, bit in enumerate(mantissa):
                v += bit * 2 ** -(i + 1)
            v *= 2 ** -bias if exponent == 0 else 2 ** -(exponent - bias - 1)
            values.append(v)
            if signed:
                values.append(-v)
    if len(values) != 2 ** total_bits:
        raise ValueError(f"create_fp8_map: {len(values)} values for total_bits={total_bits}")
    if total_bits < 8:
        values = _pad_to_map_size(values)
    values.sort()  # (with the padding zeros among them, as every map's entries are ascending)
    code = torch.tensor(values)
    return code / code.max()
