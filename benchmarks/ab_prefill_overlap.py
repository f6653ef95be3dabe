"""A/B for the 4-bit prefill path (dequantize the weight, then torch's matmul): the weight
dequantized in row slabs on a second stream while torch's matmul multiplies the slab before, so
that only the first slab's dequantize is exposed. Times, as CUDA-graph replays (device time
only), F.linear on the 16-bit weight, the library's Linear4bit path, and the slabbed product at
several slab counts with and without the second stream (the latter separates the cost of the
smaller matmuls from the gain of the overlap). Outputs must equal the one-slab product.

    python benchmarks/ab_prefill_overlap.py
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import bitsandbytes as bnb  # noqa: E402,F401
from bench_common import device_name  # noqa: E402

SHAPES = [(4096, 4096, 4096), (2048, 4096, 11008), (4096, 4096, 11008), (4096, 11008, 4096)]  # M, K, N
BLOCKSIZE = 64


def graph_ms(fn, replays=20):
    """Device milliseconds per call of fn() replayed from a CUDA graph (median of 5 timings)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / replays)
    return sorted(times)[2]


class Slabbed:
    """out[:, n0:n1] = A @ dequant(W[n0:n1])^T slab by slab into one 16-bit weight buffer; with
    `overlap` the dequantize of slab i+1 runs on a second stream beside the matmul of slab i."""

    def __init__(self, packed, absmax, shape, dtype, slabs, overlap):
        N, K = shape
        rows = -(-N // slabs)
        rows = -(-rows // 8) * 8  # whole scale blocks, 16-byte aligned slabs
        self.bounds = [(n0, min(N, n0 + rows)) for n0 in range(0, N, rows)]
        self.packed, self.absmax, self.K, self.dtype = packed.view(-1), absmax, K, dtype
        self.W = torch.empty(N, K, device="cuda", dtype=dtype)
        self.overlap = overlap
        self.side = torch.cuda.Stream() if overlap else None

    def _dequantize(self, n0, n1):
        K = self.K
        torch.ops.bitsandbytes.dequantize_4bit.out(self.packed[n0 * K // 2:n1 * K // 2],
                                                   self.absmax[n0 * K // BLOCKSIZE:n1 * K // BLOCKSIZE], BLOCKSIZE,
                                                   "nf4", [n1 - n0, K], self.dtype, self.W[n0:n1])

    def __call__(self, A, out):
        main = torch.cuda.current_stream()
        if not self.overlap:
            for n0, n1 in self.bounds:
                self._dequantize(n0, n1)
                torch.mm(A, self.W[n0:n1].t(), out=out[:, n0:n1])
            return out
        ready = []
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            for n0, n1 in self.bounds:
                self._dequantize(n0, n1)
                event = torch.cuda.Event()
                event.record(self.side)
                ready.append(event)
        for (n0, n1), event in zip(self.bounds, ready):
            main.wait_event(event)
            torch.mm(A, self.W[n0:n1].t(), out=out[:, n0:n1])
        main.wait_stream(self.side)
        return out


@torch.no_grad()
def main():
    torch.manual_seed(0)
    print(f"# {device_name()}")
    print(f"{'M x K -> N':>22} {'setting':>22} {'ms':>8} {'F.linear/this':>14}")
    verdicts = []
    for M, K, N in SHAPES:
        dtype = torch.bfloat16
        W = torch.randn(N, K, device="cuda", dtype=dtype) / K**0.5
        A = torch.randn(M, K, device="cuda", dtype=dtype)
        packed, absmax = torch.ops.bitsandbytes.quantize_4bit(W, BLOCKSIZE, "nf4", torch.uint8)
        layer = bnb.nn.Linear4bit(K, N, bias=False, compute_dtype=dtype, quant_type="nf4")
        layer.load_state_dict({"weight": W})
        layer = layer.cuda()
        ms_ref = graph_ms(lambda: torch.nn.functional.linear(A, W))
        name = f"{M} x {K} -> {N}"
        print(f"{name:>22} {'F.linear':>22} {ms_ref:8.4f} {1.0:14.2f}")
        ms_lib = graph_ms(lambda: layer(A))
        print(f"{name:>22} {'Linear4bit (library)':>22} {ms_lib:8.4f} {ms_ref / ms_lib:14.2f}")
        out = torch.empty(M, N, device="cuda", dtype=dtype)
        want = Slabbed(packed, absmax, (N, K), dtype, 1, False)(A, out).clone()
        best = (ms_lib, "library")
        for slabs in (1, 2, 3, 4, 6, 8):
            for overlap in (False, True):
                if slabs == 1 and overlap:
                    continue
                run = Slabbed(packed, absmax, (N, K), dtype, slabs, overlap)
                out.zero_()
                got = run(A, out)
                torch.cuda.synchronize()
                same = torch.equal(got, want)
                ms = graph_ms(lambda: run(A, out))
                setting = f"{slabs} slabs{' overlap' if overlap else ''}"
                print(f"{name:>22} {setting:>22} {ms:8.4f} {ms_ref / ms:14.2f}{'' if same else '  OUTPUT DIFFERS'}")
                verdicts.append(same)
                best = min(best, (ms, setting))
        print(f"{name:>22} best: {best[1]} {ms_ref / best[0]:.2f}x F.linear")
        del W, A, packed, absmax, layer, out
        torch.cuda.empty_cache()
    print("outputs equal" if all(verdicts) else "OUTPUTS DIFFER")


if __name__ == "__main__":
    main()
