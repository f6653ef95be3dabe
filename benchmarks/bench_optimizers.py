"""Optimizer step benchmark: every 4-bit, 8-bit and 32-bit AdamW path of bitsandbytes.optim, and
AdEMAMix with 8-bit and 32-bit state, against torch.optim.AdamW(fused=True), in the same run.

Workloads: (a) one float32 tensor of 2^28 elements; (b) GPT-2 medium shapes (24 layers,
d=1024, vocab 50304: 292 tensors, 355M parameters) in bfloat16; (c) one float32 tensor of 2^26
elements, for the paged/unpaged ratio only.
Reports the median step time (CUDA events, after warm-up), the fraction of the measured
device-to-device copy bandwidth the step reaches (bytes it must move / time), and the
optimizer-state memory, and per workload the ratios of the AdEMAMix8bit step (three 8-bit
states) to the AdamW8bit step and of each paged step to its unpaged one. Writes JSON to
--out and prints markdown tables last.

    python benchmarks/bench_optimizers.py --out bench_out
    python benchmarks/bench_optimizers.py --out bench_out --device cpu --scale 0.001   # smoke run
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes as bnb  # noqa: E402
from bench_common import copy_bandwidth_gbs, host_us, time_cuda_ms  # noqa: E402
from bitsandbytes.utils import optimizer_state_bytes  # noqa: E402


def gpt2_medium_shapes(vocab=50304, d=1024, layers=24, ctx=1024):
    shapes = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    shapes += [(d,), (d,)]
    return shapes


def scaled_shapes(shapes, scale):
    if scale >= 1:
        return shapes
    return [tuple(max(1, int(s * scale ** (1 / len(shape)))) for s in shape) for shape in shapes]


def make_params(shapes, dtype, device):
    params = [torch.nn.Parameter(torch.randn(s, device=device, dtype=dtype) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


PATHS = {
    "torch AdamW fused (32-bit)": lambda ps: torch.optim.AdamW(ps, lr=1e-4, fused=ps[0].is_cuda or None),
    "bnb AdamW32bit": lambda ps: bnb.optim.AdamW32bit(ps, lr=1e-4),
    "bnb AdamW8bit": lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-4),
    "bnb AdamW8bit block_wise=False": lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-4, block_wise=False),
    "bnb AdamW4bit": lambda ps: bnb.optim.AdamW4bit(ps, lr=1e-4),
    "bnb PagedAdamW32bit": lambda ps: bnb.optim.PagedAdamW32bit(ps, lr=1e-4),
    "bnb PagedAdamW8bit": lambda ps: bnb.optim.PagedAdamW8bit(ps, lr=1e-4),
    "bnb PagedAdamW4bit": lambda ps: bnb.optim.PagedAdamW4bit(ps, lr=1e-4),
    "bnb AdEMAMix32bit": lambda ps: bnb.optim.AdEMAMix32bit(ps, lr=1e-4, t_alpha=1000, t_beta3=1000),
    "bnb AdEMAMix8bit": lambda ps: bnb.optim.AdEMAMix8bit(ps, lr=1e-4, t_alpha=1000, t_beta3=1000),
}
# (numerator, denominator) step-time ratios reported per workload
RATIOS = [("bnb AdEMAMix8bit", "bnb AdamW8bit"), ("bnb AdEMAMix8bit", "torch AdamW fused (32-bit)"),
          ("bnb AdEMAMix32bit", "torch AdamW fused (32-bit)"), ("bnb PagedAdamW8bit", "bnb AdamW8bit"),
          ("bnb PagedAdamW4bit", "bnb AdamW4bit"), ("bnb PagedAdamW32bit", "bnb AdamW32bit")]
# Workload (c) measures only what paging costs on a smaller tensor: the paths named here.
PAGING_PATHS = ("bnb AdamW8bit", "bnb PagedAdamW8bit", "bnb AdamW4bit", "bnb PagedAdamW4bit")
ALL_PATHS = tuple(PATHS)


def moved_bytes(params, opt):
    """Bytes one step must read and write: parameter (read + write), gradient (read), each
    state tensor (read + write; AdEMAMix's state1 holds two states)."""
    total = 0
    for p in params:
        total += 3 * p.numel() * p.element_size()
    for st in opt.state.values():
        for key in ("state1", "state2", "absmax1", "absmax2", "max1", "max2", "exp_avg", "exp_avg_sq"):
            if key in st:
                total += 2 * st[key].numel() * st[key].element_size()
    return total


def time_steps(opt, device, warmup, iters):
    """Median milliseconds of one step (CUDA events on the GPU, a host clock on the CPU)."""
    if device == "cuda":
        return time_cuda_ms(opt.step, warmup, iters)
    for _ in range(warmup):
        opt.step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def copy_bandwidth(device, nbytes):
    """Copy bandwidth (bytes read + written per second)."""
    if device == "cuda":
        return copy_bandwidth_gbs(nbytes, warmup=3, iters=10) * 1e9
    src = torch.empty(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(times)


def run(args):
    device = args.device
    workloads = {
        "(a) 1 x 2^28 fp32": ([(max(1, int(2 ** 28 * args.scale)),)], torch.float32, ALL_PATHS),
        "(b) GPT-2 medium 292 x bf16": (scaled_shapes(gpt2_medium_shapes(), args.scale), torch.bfloat16, ALL_PATHS),
        "(c) 1 x 2^26 fp32": ([(max(1, int(2 ** 26 * args.scale)),)], torch.float32, PAGING_PATHS),
    }
    bw = copy_bandwidth(device, max(1 << 20, int((1 << 30) * min(1.0, args.scale * 4))))
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
               "copy_bandwidth_GBps": bw / 1e9, "rows": []}
    for wname, (shapes, dtype, paths) in workloads.items():
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        for pname, make in PATHS.items():
            if args.paths and not any(k in pname for k in args.paths.split(",")):
                continue
            if pname not in paths:
                continue
            params = make_params(shapes, dtype, device)
            opt = make(params)
            ms = time_steps(opt, device, args.warmup, args.iters)
            # steps queued back to back: the device time of a step, the host's time hidden
            b2b = time_cuda_ms(opt.step, 2, args.iters, inner=5) if device == "cuda" else ms
            host = host_us(opt.step) if device == "cuda" else float("nan")
            moved = moved_bytes(params, opt)
            row = dict(workload=wname, path=pname, tensors=len(shapes), params=n, step_ms=ms, step_ms_back_to_back=b2b,
                       host_us=host,
                       bandwidth_fraction=moved / (ms / 1e3) / bw, state_bytes=optimizer_state_bytes(opt),
                       state_bytes_per_param=optimizer_state_bytes(opt) / n)
            results["rows"].append(row)
            print(f"{wname:32s} {pname:34s} {ms:9.3f} ms (back to back {b2b:.3f}, host {host:.0f} us)  "
                  f"{row['bandwidth_fraction']:.2f} of copy bw  "
                  f"{row['state_bytes_per_param']:.3f} B/param", flush=True)
            del opt, params
            if device == "cuda":
                torch.cuda.empty_cache()
    results["ratios"] = step_ratios(results["rows"])
    return results


def step_ratios(rows):
    """The RATIOS of step times (isolated and back to back) for each workload with both paths."""
    by = {(r["workload"], r["path"]): r for r in rows}
    out = []
    for wname in dict.fromkeys(r["workload"] for r in rows):
        for num, den in RATIOS:
            a, b = by.get((wname, num)), by.get((wname, den))
            if a and b:
                out.append(dict(workload=wname, ratio=f"{num} / {den}", step=a["step_ms"] / b["step_ms"],
                                back_to_back=a["step_ms_back_to_back"] / b["step_ms_back_to_back"]))
    return out


def markdown(results):
    lines = [f"device: {results['device']}, torch {results['torch']}, "
             f"copy bandwidth {results['copy_bandwidth_GBps']:.0f} GB/s", "",
             "| workload | path | step (ms) | back to back (ms) | host us | fraction of copy bw | state MB | "
             "state B/param |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['workload']} | {r['path']} | {r['step_ms']:.3f} | {r['step_ms_back_to_back']:.3f} | "
                     f"{r['host_us']:.0f} | {r['bandwidth_fraction']:.2f} | "
                     f"{r['state_bytes'] / 1e6:.1f} | {r['state_bytes_per_param']:.3f} |")
    if results.get("ratios"):
        lines += ["", "| workload | ratio | step | back to back |", "|---|---|---|---|"]
        for r in results["ratios"]:
            lines.append(f"| {r['workload']} | {r['ratio']} | {r['step']:.2f} | {r['back_to_back']:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for optimizers.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (smoke runs)")
    parser.add_argument("--paths", default="", help="comma-separated substrings: only the paths whose name has one")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    results = run(args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "optimizers.json"), "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(markdown(results))


if __name__ == "__main__":
    main()
