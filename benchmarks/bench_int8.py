"""Benchmark of the LLM.int8() linear layer against torch.nn.functional.linear (same run).

    python benchmarks/bench_int8.py --out bench_out/int8

For each shape (tokens M, in features K, out features N) and dtype (fp16, bf16): the median
forward time of Linear8bitLt(has_fp16_weights=False, threshold=6.0) on inputs with a few
outlier columns, of F.linear in the same dtype, their relative error against the float32
product, and for the decode shape the fraction of the measured device-to-device copy
bandwidth that the int8 weight read reached. Also the time of each step of the large-batch
path (quantize, GEMM, dequantize). Writes int8.json under --out; prints a markdown table last.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from bench_common import copy_bandwidth_gbs, host_us, time_cuda_ms  # noqa: E402

SHAPES = [  # (name, M, K, N)
    ("large batch", 8192, 8192, 8192),
    ("decode", 16, 8192, 8192),
    ("square 4096", 4096, 4096, 4096),
    ("mlp up", 2048, 4096, 11008),
]
OUTLIER_COLS = 4


def time_ms(fn, warmup, iters):
    """An isolated call's time (it includes the host's launch latency)."""
    return time_cuda_ms(fn, warmup, iters)


def time_ms_back_to_back(fn, warmup, iters, reps=20):
    """Device time per call with `reps` calls queued back to back, as in a model's forward."""
    return time_cuda_ms(fn, warmup, iters, inner=reps)


def make_inputs(M, K, N, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(M, K, device="cuda", generator=g)
    cols = torch.randperm(K, device="cuda", generator=g)[:OUTLIER_COLS]
    x[:, cols] *= 20.0  # a few feature dimensions far above the 6.0 threshold, as in LLMs
    W = torch.randn(N, K, device="cuda", generator=g) * (1.0 / K ** 0.5)
    b = torch.randn(N, device="cuda", generator=g) * 0.1
    return x.to(dtype), W.to(dtype), b.to(dtype)


def rel_err(y, ref):
    return ((y.float() - ref).norm() / ref.norm()).item()


def bench_shape(name, M, K, N, dtype, bw, args):
    x, W, b = make_inputs(M, K, N, dtype)
    layer = bnb.nn.Linear8bitLt(K, N, bias=True, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict({"weight": W.float().cpu(), "bias": b.float().cpu()})
    layer = layer.to(dtype=dtype).cuda()
    ref = torch.nn.functional.linear(x.float(), W.float(), b.float())
    with torch.no_grad():
        ours = layer(x)
        base = torch.nn.functional.linear(x, W, b)
        t_ours = time_ms(lambda: layer(x), args.warmup, args.iters)
        t_torch = time_ms(lambda: torch.nn.functional.linear(x, W, b), args.warmup, args.iters)
        b2b_ours = time_ms_back_to_back(lambda: layer(x), args.warmup, args.iters)
        b2b_torch = time_ms_back_to_back(lambda: torch.nn.functional.linear(x, W, b), args.warmup, args.iters)
        h_ours = host_us(lambda: layer(x), calls=30)
        h_torch = host_us(lambda: torch.nn.functional.linear(x, W, b), calls=30)
        # The forward must not wait for the device (outlier columns included).
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            layer(x)
            no_sync = True
        except RuntimeError:
            no_sync = False
        finally:
            torch.cuda.set_sync_debug_mode(0)
    rec = {
        "shape": name, "M": M, "K": K, "N": N, "dtype": str(dtype).replace("torch.", ""),
        "ms_int8": t_ours, "ms_torch": t_torch, "speedup": t_torch / t_ours,
        "ms_int8_back_to_back": b2b_ours, "ms_torch_back_to_back": b2b_torch,
        "host_us_int8": h_ours, "host_us_torch": h_torch, "forward_without_sync": no_sync,
        "outlier_columns_found": int(layer.state.outlier_list[0]) if layer.state.outlier_list is not None else 0,
        "rel_err_int8": rel_err(ours, ref), "rel_err_torch": rel_err(base, ref),
    }
    if M <= 32:  # weight-bound: how close the int8 weight read came to copy bandwidth
        bytes_moved = N * K + M * K * x.element_size() + M * N * x.element_size() + N * 4
        rec["tb_per_s"] = bytes_moved / (t_ours * 1e-3) / 1e12
        rec["fraction_of_copy_bw"] = rec["tb_per_s"] / bw
        rec["tb_per_s_back_to_back"] = bytes_moved / (b2b_ours * 1e-3) / 1e12
        rec["fraction_of_copy_bw_back_to_back"] = rec["tb_per_s_back_to_back"] / bw
        # The weight-streaming op alone, without the layer around it.
        ops = torch.ops.bitsandbytes
        CB, SCB = layer.weight.data, layer.weight.SCB
        y = ops.int8_weight_linear.default(x, CB, SCB, b)
        assert torch.equal(y, ours) or rel_err(y, ref) < 2 * rec["rel_err_int8"] + 1e-3
        ms = time_ms_back_to_back(lambda: ops.int8_weight_linear.default(x, CB, SCB, b), args.warmup, args.iters)
        rec["kernel_alone"] = {"ms": ms, "fraction_of_copy_bw": bytes_moved / (ms * 1e-3) / 1e12 / bw,
                               "rel_err": rel_err(y, ref)}
    else:  # where the time of the large-batch path goes, and the path without outlier split
        layer.state.threshold = 0.0
        with torch.no_grad():
            rec["ms_int8_threshold0"] = time_ms(lambda: layer(x), args.warmup, args.iters)
        layer.state.threshold = 6.0
        with torch.no_grad():
            ops = torch.ops.bitsandbytes
            A_int8, row_stats, lst = ops.int8_vectorwise_quant_outliers(x, 6.0)
            CB = layer.weight.data
            C = F.int8_linear_matmul(A_int8, CB)
            SCB = layer.weight.SCB
            rec["ms_quant"] = time_ms_back_to_back(lambda: ops.int8_vectorwise_quant_outliers(x, 6.0), args.warmup,
                                                   args.iters)
            rec["ms_gemm"] = time_ms_back_to_back(lambda: F.int8_linear_matmul(A_int8, CB), args.warmup,
                                                  args.iters, reps=5)
            rec["ms_dequant"] = time_ms_back_to_back(
                lambda: ops.int8_mm_dequant_outliers(C, row_stats, SCB, b, x, CB, lst, dtype), args.warmup,
                args.iters)
            rec["ms_dequant_no_outliers"] = time_ms_back_to_back(
                lambda: ops.int8_mm_dequant(C, row_stats, SCB, dtype, b), args.warmup, args.iters)
        # The two memory-bound passes against the copy bandwidth: quantize reads 16-bit A and
        # writes int8; dequantize reads int32 C and writes 16-bit.
        rec["quant_fraction_of_copy_bw"] = M * K * (x.element_size() + 1) / (rec["ms_quant"] * 1e-3) / 1e12 / bw
        rec["dequant_fraction_of_copy_bw"] = M * N * (4 + x.element_size()) / (rec["ms_dequant"] * 1e-3) / 1e12 / bw
    return rec


def print_table(result):
    bw, records = result["copy_bandwidth_tb_per_s"], result["records"]
    print(f"\n{result['device']}, torch {result['torch']}, CUDA {result['cuda']}, "
          f"copy bandwidth {bw:.2f} TB/s, threshold 6.0, {OUTLIER_COLS} outlier columns\n")
    print("| shape (M x K -> N) | dtype | Linear8bitLt ms | F.linear ms | speedup | back to back: ours / F.linear ms "
          "| host us per call: ours / F.linear | rel. err int8 | rel. err 16-bit | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        if "fraction_of_copy_bw" in r:
            note = (f"{r['tb_per_s']:.2f} TB/s = {100 * r['fraction_of_copy_bw']:.0f}% of copy (back to back "
                    f"{100 * r['fraction_of_copy_bw_back_to_back']:.0f}%); kernel alone: "
                    f"{r['kernel_alone']['ms']:.3f} ms ({100 * r['kernel_alone']['fraction_of_copy_bw']:.0f}%)")
        else:
            note = (f"quant {r['ms_quant']:.3f} ({100 * r['quant_fraction_of_copy_bw']:.0f}% of copy) + gemm "
                    f"{r['ms_gemm']:.3f} + dequant {r['ms_dequant']:.3f} ({100 * r['dequant_fraction_of_copy_bw']:.0f}%; "
                    f"{r['ms_dequant_no_outliers']:.3f} without the outlier product)"
                    f" ms; threshold 0: {r['ms_int8_threshold0']:.3f} ms")
        print(f"| {r['shape']} {r['M']} x {r['K']} -> {r['N']} | {r['dtype']} | {r['ms_int8']:.3f} | "
              f"{r['ms_torch']:.3f} | {r['speedup']:.2f}x | {r['ms_int8_back_to_back']:.3f} / "
              f"{r['ms_torch_back_to_back']:.3f} | {r['host_us_int8']:.0f} / {r['host_us_torch']:.0f} | "
              f"{100 * r['rel_err_int8']:.2f}% | "
              f"{100 * r['rel_err_torch']:.3f}% | {note}{'' if r['forward_without_sync'] else '; SYNCS'} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for int8.json")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="only the decode and 4096 shapes, fp16 (see --dtypes)")
    p.add_argument("--dtypes", default=None, help="comma-separated, e.g. float16,bfloat16 (default: both, fp16 "
                   "with --quick)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_int8.py needs a CUDA device")
    os.makedirs(args.out, exist_ok=True)
    bw = copy_bandwidth_gbs(1 << 30, args.warmup, args.iters) / 1e3
    shapes = [s for s in SHAPES if not args.quick or s[0] in ("decode", "square 4096")]
    if args.dtypes:
        dtypes = [getattr(torch, d.strip()) for d in args.dtypes.split(",")]
    else:
        dtypes = [torch.float16] if args.quick else [torch.float16, torch.bfloat16]
    records = []
    for name, M, K, N in shapes:
        for dtype in dtypes:
            records.append(bench_shape(name, M, K, N, dtype, bw, args))
            torch.cuda.empty_cache()
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "copy_bandwidth_tb_per_s": bw, "threshold": 6.0, "outlier_columns": OUTLIER_COLS,
              "records": records}
    with open(os.path.join(args.out, "int8.json"), "w") as f:
        json.dump(result, f, indent=2)

    print_table(result)


if __name__ == "__main__":
    main()
