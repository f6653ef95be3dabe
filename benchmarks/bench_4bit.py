"""4-bit (NF4/FP4) on the GPU: quantize_4bit and dequantize_4bit of 2^28 values against the
measured copy bandwidth (beside torch's cast kernel moving the same bytes), and Linear4bit (nf4,
nested statistics) against F.linear in the same dtype, in the same run: isolated calls (CUDA
events around one call) and back to back, cycling over copies of the layer so that the weights
come from memory, not the L2, and replayed from a CUDA graph (device time only: small layers are
bound by the host in eager mode, ours and torch's).

    python benchmarks/bench_4bit.py [--log2n 28] [--out DIR] [--blocksizes 32,64,4096] [--no-linear | --no-quantize]
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes as bnb  # noqa: E402
from bitsandbytes.functional.blockwise import block_absmax  # noqa: E402
from bench_common import (copy_bandwidth_gbs, device_name, host_us, markdown_table, same_bytes_cast_gbs,  # noqa: E402
                          time_cuda_ms, write_json)

# (name, M, K, N): decode and short prefill through an 8192^2 layer and LLaMA-7B-shaped layers,
# then prefill shapes (dequantize + torch's matmul).
LINEAR_SHAPES = [("8192 -> 8192", M, 8192, 8192) for M in (1, 16)]
LINEAR_SHAPES += [(f"{K} -> {N}", M, K, N) for K, N in ((4096, 4096), (4096, 11008)) for M in (1, 8, 16, 32, 64)]
LINEAR_SHAPES += [("prefill 4096^3", 4096, 4096, 4096), ("prefill 2048 x 4096 -> 11008", 2048, 4096, 11008)]
ROTATE_BYTES = 256 * 2**20  # weights cycled through per timing: several times the L2, as a decode step's layers


def quantize_rows(n, copy_gbs, blocksize=64):
    """quantize_4bit and dequantize_4bit of n values, as a fraction of the copy bandwidth and
    beside torch's cast of the same bytes (same mix of reads and writes), same run."""
    rows = []
    for quant_type in ("nf4", "fp4"):
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            A = torch.randn(n, device="cuda", dtype=dtype)
            packed, absmax = torch.ops.bitsandbytes.quantize_4bit(A, blocksize, quant_type, torch.uint8)
            nbytes = n * A.element_size() + n // 2 + (n // blocksize) * 4
            ms_q = time_cuda_ms(lambda: torch.ops.bitsandbytes.quantize_4bit(A, blocksize, quant_type, torch.uint8))
            ms_dq = time_cuda_ms(lambda: torch.ops.bitsandbytes.dequantize_4bit(packed, absmax, blocksize, quant_type,
                                                                                [n], dtype))
            size = A.element_size()
            for op, ms, cast in (("quantize_4bit", ms_q, same_bytes_cast_gbs(n, size, 0.5)),
                                 ("dequantize_4bit", ms_dq, same_bytes_cast_gbs(n, 0.5, size))):
                gbs = nbytes / ms / 1e6
                rows.append({"op": op, "type": quant_type, "dtype": str(dtype).removeprefix("torch."),
                             "blocksize": blocksize, "ms": f"{ms:.3f}", "GB/s": f"{gbs:.0f}",
                             "of copy": f"{gbs / copy_gbs:.0%}", "torch cast, same bytes": f"{cast / copy_gbs:.0%}"})
            del A, packed, absmax
            torch.cuda.empty_cache()
    return rows


class _Rotation:
    """Calls fn(i) for i = 0, 1, ... cycling over `count` copies of a layer, so that timings read
    the weights from memory rather than from the L2."""

    def __init__(self, count):
        self.count, self.i = count, 0

    def __call__(self, fn):
        def call():
            self.i = (self.i + 1) % self.count
            return fn(self.i)
        return call


def graph_ms(fns, replays=20):
    """Device milliseconds per call of each fn in `fns`, captured once in a CUDA graph and replayed:
    no host work in the timing (a decode step is replayed this way), the layers back to back."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in fns:  # warm up outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in fns:
            fn()
    return time_cuda_ms(graph.replay, warmup=3, iters=replays) / len(fns)


def linear_rows(copy_gbs, dtype=torch.bfloat16):
    rows = []
    for name, M, K, N in LINEAR_SHAPES:
        copies = max(2, -(-ROTATE_BYTES // (N * K // 2)))
        if M > 64:
            copies = 2  # a prefill reads its weight once per many flops: the L2 does not matter
        copies = min(copies, max(2, (8 * 2**30) // (N * K * 2)))  # bf16 copies within 8 GiB
        lins, quants = [], []
        for _ in range(copies):
            lin = torch.nn.Linear(K, N, bias=False, device="cuda", dtype=dtype)
            q = bnb.nn.Linear4bit(K, N, bias=False, compute_dtype=dtype, quant_type="nf4")
            q.load_state_dict(lin.state_dict())
            lins.append(lin)
            quants.append(q.cuda())
        x = torch.randn(M, K, device="cuda", dtype=dtype)
        rot = _Rotation(copies)
        qs = quants[0].weight.quant_state
        with torch.no_grad():
            ms_ours = time_cuda_ms(rot(lambda i: quants[i](x)))
            ms_torch = time_cuda_ms(rot(lambda i: lins[i](x)))
            b2b_ours = time_cuda_ms(rot(lambda i: quants[i](x)), inner=copies)
            b2b_torch = time_cuda_ms(rot(lambda i: lins[i](x)), inner=copies)
            h_ours = host_us(lambda: quants[0](x))
            h_torch = host_us(lambda: lins[0](x))
            g_ours = graph_ms([lambda q=q: q(x) for q in quants])
            g_torch = graph_ms([lambda lin=lin: lin(x) for lin in lins])
        # The kernel alone (graph replays): the bytes it must read (packed weight, nested scales,
        # activations) and write, against the copy bandwidth.
        nbytes = N * K // 2 + qs.absmax.numel() * qs.absmax.element_size() + (M * K + M * N) * x.element_size()
        row = {"shape": name, "M": M, "dtype": str(dtype).removeprefix("torch."),
               "Linear4bit ms": f"{ms_ours:.3f}", "F.linear ms": f"{ms_torch:.3f}",
               "speedup": f"{ms_torch / ms_ours:.2f}x",
               "back to back ours / torch": f"{b2b_ours:.4f} / {b2b_torch:.4f}",
               "b2b speedup": f"{b2b_torch / b2b_ours:.2f}x",
               "graph ours / torch": f"{g_ours:.4f} / {g_torch:.4f}", "graph speedup": f"{g_torch / g_ours:.2f}x",
               "host us ours / torch": f"{h_ours:.1f} / {h_torch:.1f}"}
        if M <= 64:
            row["kernel of copy"] = f"{nbytes / g_ours / 1e6 / copy_gbs:.0%}"
        else:
            # A prefill's first part alone: the weight dequantized (with float32 block scales, as
            # the nested ones dequantize to), against the copy bandwidth for its bytes; eight
            # copies of the packed weight, replayed in one graph, so that they come from memory.
            absmax = block_absmax(qs)
            packed = [quants[0].weight.data.clone() for _ in range(8)]
            g_dq = graph_ms([lambda w=w: torch.ops.bitsandbytes.dequantize_4bit(w, absmax, qs.blocksize, qs.quant_type,
                                                                                [N, K], dtype) for w in packed])
            dq_bytes = N * K // 2 + absmax.numel() * 4 + N * K * x.element_size()
            row["kernel of copy"] = f"dequantize {g_dq:.4f} ms, {dq_bytes / g_dq / 1e6 / copy_gbs:.0%}"
        rows.append(row)
        del lins, quants, x
        torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log2n", type=int, default=28)
    ap.add_argument("--out", default=None)
    ap.add_argument("--blocksizes", default="64", help="comma-separated block sizes of the quantize rows")
    ap.add_argument("--no-linear", action="store_true", help="quantize and dequantize rows only")
    ap.add_argument("--no-quantize", action="store_true", help="Linear4bit rows only")
    args = ap.parse_args()
    n = 2**args.log2n
    copy_gbs = copy_bandwidth_gbs()
    qrows = [] if args.no_quantize else [row for b in args.blocksizes.split(",")
                                         for row in quantize_rows(n, copy_gbs, int(b))]
    lrows = [] if args.no_linear else linear_rows(copy_gbs)
    write_json(args.out, "bench_4bit.json", {"device": device_name(), "n": n, "copy_GBps": copy_gbs,
                                             "quantize": qrows, "linear": lrows})
    print(f"device: {device_name()}  n = 2^{args.log2n}  copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")
    print(markdown_table(qrows, ["op", "type", "dtype", "blocksize", "ms", "GB/s", "of copy",
                                 "torch cast, same bytes"]))
    print()
    print(markdown_table(lrows, ["shape", "M", "dtype", "Linear4bit ms", "F.linear ms", "speedup",
                                 "back to back ours / torch", "b2b speedup", "graph ours / torch", "graph speedup",
                                 "kernel of copy",
                                 "host us ours / torch"]))


if __name__ == "__main__":
    main()
