"""`python -m bitsandbytes`: what was built, what torch and GPU are here, and a self-check
of every op on every available device, ending with one verdict line."""
import platform
import sys

import torch

import bitsandbytes
from bitsandbytes.diagnostics import registered_ops, run_self_checks
from bitsandbytes.utils import build_info, has_kernel


def describe():
    info = build_info()
    print(f"bitsandbytes {bitsandbytes.__version__}  (python {platform.python_version()}, {platform.machine()})")
    print(f"torch {torch.__version__}  (CUDA runtime {torch.version.cuda or 'none'})")
    print("built with: CPU kernels" + (f" + CUDA {info['cuda_version']} kernels for archs {info['cuda_archs']}"
                                        if info["cuda"] else " only (no CUDA kernels in this build)"))
    if info.get("torch_version") and info["torch_version"] != torch.__version__:
        print(f"warning: built against torch {info['torch_version']}, running with {torch.__version__}: rebuild")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
                  f"{p.multi_processor_count} SMs")
    else:
        print("GPU: none found (CUDA not available to torch)")
    ops = registered_ops()
    print(f"ops: {len(ops)} in torch.ops.bitsandbytes")


def main():
    describe()
    devices = ["cpu"]
    if torch.cuda.is_available():
        if has_kernel("quantize_blockwise", "cuda"):
            devices.append("cuda")
        else:
            print("warning: a GPU is present but this build has no CUDA kernels")
    rows = run_self_checks(devices)
    print()
    width = max(len(op) for op, *_ in rows) + 2 if rows else 28
    print(f"{'op':<{width}} " + " ".join(f"{d:<6}" for d in devices))
    by_op = {}
    for op, device, status, detail in rows:
        by_op.setdefault(op, {})[device] = (status, detail)
    for op, per_device in by_op.items():
        print(f"{op:<{width}} " + " ".join(f"{per_device.get(d, ('-', ''))[0]:<6}" for d in devices))
    failures = [(op, d, detail) for op, d, status, detail in rows if status == "FAIL"]
    for op, d, detail in failures:
        print(f"  {op} on {d}: {detail}")
    print()
    if failures:
        print(f"VERDICT: FAIL ({len(failures)} of {len(rows)} op checks failed)")
        return 1
    print(f"VERDICT: OK (all {len(by_op)} ops pass on {', '.join(devices)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
