"""Timing and reporting shared by the benchmark scripts: CUDA-event medians after warm-up,
the device's measured copy bandwidth, JSON output and a markdown table."""
import functools
import json
import os
import statistics
import time

import torch


def time_cuda_ms(fn, warmup=5, iters=30, inner=1):
    """Median milliseconds per call of fn() over `iters` timings with CUDA events. With inner > 1
    each timing covers `inner` calls queued back to back (the device time per call when the host
    keeps ahead of the device); with inner = 1 it also counts an isolated call's launch latency."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def host_us(fn, calls=10):
    """Host time per call of fn() in microseconds, not waiting for the device (few calls: a
    full launch queue would make the host wait): what an isolated call adds before its
    kernels start."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - t0
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def copy_bandwidth_gbs(nbytes=2**31, warmup=3, iters=20):
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    src.random_()
    dst = torch.empty_like(src)
    ms = time_cuda_ms(lambda: dst.copy_(src), warmup=warmup, iters=iters)
    return 2 * nbytes / ms / 1e6


_BY_SIZE = {1: torch.uint8, 2: torch.bfloat16, 4: torch.float32, 8: torch.float64}


@functools.lru_cache(maxsize=None)  # once a mix and size per run
def same_bytes_cast_gbs(n, read_per_value, write_per_value, device="cuda"):
    """GB/s (read + write) of torch's own cast kernel moving the bytes of a kernel that reads
    `read_per_value` and writes `write_per_value` bytes for each of n values (0.5 for 4-bit
    codes): a baseline with the same mix of reads and writes, which a plain copy (half each)
    is not. The dtypes are chosen by the two sizes' ratio (uint8 -> float32 moves what a 4-bit
    dequantize to 16 bits does)."""
    unit = min(read_per_value, write_per_value)
    src_size, dst_size = int(read_per_value / unit), int(write_per_value / unit)
    if src_size not in _BY_SIZE or dst_size not in _BY_SIZE:
        raise ValueError(f"same_bytes_cast_gbs: no cast moves {read_per_value} : {write_per_value} bytes a value")
    count = int(n * unit)
    src = torch.ones(count, dtype=_BY_SIZE[src_size], device=device)
    dst = torch.empty(count, dtype=_BY_SIZE[dst_size], device=device)
    ms = time_cuda_ms(lambda: dst.copy_(src))
    return count * (src_size + dst_size) / ms / 1e6


def markdown_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_json(out_dir, name, payload):
    if not out_dir:
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump(payload, f, indent=2)


def device_name():
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
