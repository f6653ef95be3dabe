"""4-bit (NF4/FP4) on the GPU: quantize_4bit and dequantize_4bit of 2^28 values against the
measured copy bandwidth, and Linear4bit against F.linear in the same dtype, in the same run.

    python benchmarks/bench_4bit.py [--log2n 28] [--out DIR]
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from bench_common import copy_bandwidth_gbs, device_name, host_us, markdown_table, time_cuda_ms, write_json  # noqa: E402

LINEAR_SHAPES = [  # (name, M, K, N)
    ("decode 1 x 8192 -> 8192", 1, 8192, 8192),
    ("decode 16 x 8192 -> 8192", 16, 8192, 8192),
    ("square 4096^3", 4096, 4096, 4096),
]


def quantize_rows(n, copy_gbs, blocksize=64):
    rows = []
    for quant_type in ("nf4", "fp4"):
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            A = torch.randn(n, device="cuda", dtype=dtype)
            packed, absmax = torch.ops.bitsandbytes.quantize_4bit(A, blocksize, quant_type, torch.uint8)
            nbytes = n * A.element_size() + n // 2 + (n // blocksize) * 4
            ms_q = time_cuda_ms(lambda: torch.ops.bitsandbytes.quantize_4bit(A, blocksize, quant_type, torch.uint8))
            ms_dq = time_cuda_ms(lambda: torch.ops.bitsandbytes.dequantize_4bit(packed, absmax, blocksize, quant_type,
                                                                                [n], dtype))
            for op, ms in (("quantize_4bit", ms_q), ("dequantize_4bit", ms_dq)):
                gbs = nbytes / ms / 1e6
                rows.append({"op": op, "type": quant_type, "dtype": str(dtype).removeprefix("torch."),
                             "blocksize": blocksize, "ms": f"{ms:.3f}", "GB/s": f"{gbs:.0f}",
                             "of copy": f"{gbs / copy_gbs:.0%}"})
            del A, packed, absmax
            torch.cuda.empty_cache()
    return rows


def linear_rows(dtype=torch.bfloat16):
    rows = []
    for name, M, K, N in LINEAR_SHAPES:
        lin = torch.nn.Linear(K, N, bias=False, device="cuda", dtype=dtype)
        q = bnb.nn.Linear4bit(K, N, bias=False, compute_dtype=dtype, quant_type="nf4")
        q.load_state_dict(lin.state_dict())
        q = q.cuda()
        x = torch.randn(M, K, device="cuda", dtype=dtype)
        with torch.no_grad():
            ms_ours = time_cuda_ms(lambda: q(x))
            ms_torch = time_cuda_ms(lambda: lin(x))
            b2b_ours = time_cuda_ms(lambda: q(x), inner=10)
            b2b_torch = time_cuda_ms(lambda: lin(x), inner=10)
            h_ours = host_us(lambda: q(x))
        rows.append({"shape": name, "dtype": str(dtype).removeprefix("torch."), "Linear4bit ms": f"{ms_ours:.3f}",
                     "F.linear ms": f"{ms_torch:.3f}", "speedup": f"{ms_torch / ms_ours:.2f}x",
                     "back to back ours / torch": f"{b2b_ours:.3f} / {b2b_torch:.3f}", "host us": f"{h_ours:.0f}"})
        del lin, q, x
        torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", type=int, default=28)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n = 2**args.log2n
    copy_gbs = copy_bandwidth_gbs()
    qrows = quantize_rows(n, copy_gbs)
    lrows = linear_rows()
    write_json(args.out, "bench_4bit.json", {"device": device_name(), "n": n, "copy_GBps": copy_gbs,
                                             "quantize": qrows, "linear": lrows})
    print(f"device: {device_name()}  n = 2^{args.log2n}  copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")
    print(markdown_table(qrows, ["op", "type", "dtype", "blocksize", "ms", "GB/s", "of copy"]))
    print()
    print(markdown_table(lrows, ["shape", "dtype", "Linear4bit ms", "F.linear ms", "speedup",
                                 "back to back ours / torch", "host us"]))


if __name__ == "__main__":
    main()
