"""estimate_quantiles on the GPU against torch.quantile (where its 2^24 input limit allows)
and torch.sort, from the same run: CUDA-event medians after warm-up, the time of one read of
the input at the measured copy bandwidth, and the rank error of the estimates.

    python benchmarks/bench_quantiles.py [--log2n 24,26] [--out DIR]

Columns: "ms" is the median of single calls; "ms pipelined" the median per call of 20
back-to-back calls (what a loop of calls costs when the host runs ahead of the GPU);
"1 read ms" is n * element size / copy bandwidth, the floor for any method that reads A.
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes.functional as F  # noqa: E402
from bench_common import copy_bandwidth_gbs, device_name, markdown_table, time_cuda_ms, write_json  # noqa: E402

TORCH_QUANTILE_LIMIT = 2 ** 24


def max_rank_error(A, estimate, p):
    """Largest fraction of values strictly between an estimate and the exact quantile."""
    s = A.flatten().double().sort().values
    n = s.numel()
    pos = p * (n - 1)
    lo = pos.floor().long()
    exact = s[lo] + (pos - lo) * (s[(lo + 1).clamp_max(n - 1)] - s[lo])
    a = torch.minimum(estimate.double(), exact)
    b = torch.maximum(estimate.double(), exact)
    between = torch.searchsorted(s, b, side="left") - torch.searchsorted(s, a, side="right")
    return between.clamp_min(0).max().item() / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", default="24,26")
    ap.add_argument("--dtypes", default="float32", help="comma-separated: float32,float16,bfloat16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_quantiles: needs a CUDA GPU")
    copy_gbs = copy_bandwidth_gbs()
    p = torch.linspace(1 / 512, 1 - 1 / 512, 256, dtype=torch.float64, device="cuda")
    rows = []
    for log2n in [int(x) for x in args.log2n.split(",")]:
        n = 2 ** log2n
        for dtype in [getattr(torch, d) for d in args.dtypes.split(",")]:
            torch.manual_seed(log2n)
            A = torch.randn(n, device="cuda").to(dtype)
            est = F.estimate_quantiles(A)
            op = torch.ops.bitsandbytes.estimate_quantiles
            ms = time_cuda_ms(lambda: op(A, 1 / 512, 256))
            ms_pipe = time_cuda_ms(lambda: op(A, 1 / 512, 256), iters=10, inner=20)
            ms_sort = time_cuda_ms(lambda: torch.sort(A), warmup=2, iters=10)
            ms_tq = None
            if n <= TORCH_QUANTILE_LIMIT:
                Af, pf = A.float(), p.float()
                ms_tq = time_cuda_ms(lambda: torch.quantile(Af, pf), warmup=2, iters=10)
            read_ms = n * A.element_size() / (copy_gbs * 1e6)
            rows.append({
                "n": f"2^{log2n}", "dtype": str(dtype).removeprefix("torch."),
                "ms": f"{ms:.4f}", "ms pipelined": f"{ms_pipe:.4f}", "1 read ms": f"{read_ms:.4f}",
                "1 read / ms": f"{read_ms / ms:.0%}",
                "torch.quantile ms": f"{ms_tq:.3f}" if ms_tq is not None else "n/a (input limit)",
                "vs torch.quantile": f"{ms_tq / ms:.0f}x" if ms_tq is not None else "",
                "torch.sort ms": f"{ms_sort:.3f}", "vs torch.sort": f"{ms_sort / ms:.0f}x",
                "max rank error": f"{max_rank_error(A, est, p):.2e}",
            })
            del A, est
            torch.cuda.empty_cache()
    name = device_name()
    write_json(args.out, "bench_quantiles.json", {"device": name, "copy_GBps": copy_gbs, "rows": rows})
    print(f"device: {name}  copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")
    print(markdown_table(rows, ["n", "dtype", "ms", "ms pipelined", "1 read ms", "1 read / ms",
                                "torch.quantile ms", "vs torch.quantile", "torch.sort ms", "vs torch.sort",
                                "max rank error"]))


if __name__ == "__main__":
    main()
