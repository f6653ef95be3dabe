"""Block-wise quantize/dequantize of 2^28 values on the GPU: GB/s, fraction of the measured
copy bandwidth beside torch's cast kernel moving the same bytes (the same mix of reads and
writes), and a plain-torch implementation of the same quantization from the same run.

    python benchmarks/bench_quantize_blockwise.py [--log2n 28] [--out DIR]
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes.functional as F  # noqa: E402
from bench_common import (copy_bandwidth_gbs, device_name, markdown_table, same_bytes_cast_gbs,  # noqa: E402
                          time_cuda_ms, write_json)


def torch_quantize_blockwise(A, code, midpoints, blocksize):
    """The same algorithm in plain torch: absmax per block, nearest code via the midpoints."""
    blocks = A.reshape(-1, blocksize).float()
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    q = torch.bucketize(blocks / absmax, midpoints).to(torch.uint8)
    return q.reshape(A.shape), absmax.reshape(-1)


def torch_dequantize_blockwise(q, absmax, code, blocksize, dtype):
    return (code[q.long()].reshape(-1, blocksize) * absmax.unsqueeze(1)).to(dtype).reshape(q.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", type=int, default=28)
    ap.add_argument("--blocksizes", default="4096,256")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n = 2**args.log2n
    copy_gbs = copy_bandwidth_gbs()
    code = F.create_dynamic_map().cuda()
    midpoints = (code[1:] + code[:-1]) / 2
    rows = []
    for blocksize in [int(b) for b in args.blocksizes.split(",")]:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            A = torch.randn(n, device="cuda", dtype=dtype)
            elem = A.element_size()
            nbytes = n * elem + n + (n // blocksize) * 4
            q, state = F.quantize_blockwise(A, code=code, blocksize=blocksize)
            qt, at = torch_quantize_blockwise(A, code, midpoints, blocksize)
            agree = (q == qt).float().mean().item()
            ms_q = time_cuda_ms(lambda: torch.ops.bitsandbytes.quantize_blockwise(A, code, blocksize))
            ms_dq = time_cuda_ms(lambda: torch.ops.bitsandbytes.dequantize_blockwise(q, state.absmax, code,
                                                                                     blocksize, dtype))
            ms_tq = time_cuda_ms(lambda: torch_quantize_blockwise(A, code, midpoints, blocksize), warmup=2, iters=5)
            ms_tdq = time_cuda_ms(lambda: torch_dequantize_blockwise(q, state.absmax, code, blocksize, dtype),
                                  warmup=2, iters=5)
            cast = {"quantize": same_bytes_cast_gbs(n, elem, 1), "dequantize": same_bytes_cast_gbs(n, 1, elem)}
            for op, ms, ms_t in (("quantize", ms_q, ms_tq), ("dequantize", ms_dq, ms_tdq)):
                gbs = nbytes / ms / 1e6
                rows.append({
                    "op": op, "dtype": str(dtype).removeprefix("torch."), "blocksize": blocksize,
                    "ms": f"{ms:.3f}", "GB/s": f"{gbs:.0f}", "of copy": f"{gbs / copy_gbs:.0%}",
                    "torch cast, same bytes": f"{cast[op] / copy_gbs:.0%}",
                    "torch ms": f"{ms_t:.3f}", "speedup": f"{ms_t / ms:.1f}x",
                    "codes = torch's": f"{agree:.5f}" if op == "quantize" else "",
                })
            del A, q, qt, at, state
            torch.cuda.empty_cache()
    write_json(args.out, "bench_quantize_blockwise.json",
               {"device": device_name(), "n": n, "copy_GBps": copy_gbs, "rows": rows})
    print(f"device: {device_name()}  n = 2^{args.log2n}  copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")
    print(markdown_table(rows, ["op", "dtype", "blocksize", "ms", "GB/s", "of copy", "torch cast, same bytes",
                                "torch ms", "speedup",
                                "codes = torch's"]))


if __name__ == "__main__":
    main()
