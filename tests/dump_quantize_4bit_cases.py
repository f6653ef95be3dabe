"""Writes tests/data/quantize_4bit_cases.bin, the reference 4-bit fixture in a form the C++
kernel tests read without torch: the input, and for every plain case of
quantize_4bit_ref.pt its packed codes and absmax (blocksize 64 cases also their dequantized
values, to keep the file small).

Layout, little-endian: b"BNB4", u32 n, f32[n] input, u32 cases, then per case:
u8 name length + name, u8 quant type (0 nf4, 1 fp4), u8 dtype (0 fp32, 1 fp16, 2 bf16),
u32 blocksize, u32 byte count + packed codes, u32 count + f32 absmax, u32 byte count +
dequantized values in the case's dtype (count 0 when not stored).

Run: python3 tests/dump_quantize_4bit_cases.py [path/to/quantize_4bit_ref.pt]
"""
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURE = os.path.join(HERE, "..", "..", "shared", "data", "reference", "quantize_4bit_ref.pt")
DTYPES = {"fp32": (0, torch.int32), "fp16": (1, torch.int16), "bf16": (2, torch.int16)}


def main():
    fixture = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FIXTURE
    d = torch.load(fixture, weights_only=False)
    x = d["input"].flatten().contiguous()
    out = bytearray(b"BNB4")
    out += struct.pack("<I", x.numel()) + x.numpy().tobytes()
    cases = [k[: -len("_packed")] for k in d if k.endswith("_plain_packed")]
    out += struct.pack("<I", len(cases))
    for name in cases:
        quant, dtype, bs, _ = name.split("_")
        code, int_view = DTYPES[dtype]
        packed = d[name + "_packed"].flatten().contiguous().numpy().tobytes()
        absmax = d[name + "_state"]["absmax"].contiguous().numpy().tobytes()
        dequant = b""
        if bs == "bs64":
            dequant = d[name + "_dequant"].flatten().contiguous().view(int_view).numpy().tobytes()
        out += struct.pack("<B", len(name)) + name.encode()
        out += struct.pack("<BBI", 0 if quant == "nf4" else 1, code, int(bs[2:]))
        out += struct.pack("<I", len(packed)) + packed
        out += struct.pack("<I", len(absmax) // 4) + absmax
        out += struct.pack("<I", len(dequant)) + dequant
    path = os.path.join(HERE, "data", "quantize_4bit_cases.bin")
    with open(path, "wb") as f:
        f.write(out)
    print(f"{path}: {len(cases)} cases, {len(out)} bytes")


if __name__ == "__main__":
    main()
