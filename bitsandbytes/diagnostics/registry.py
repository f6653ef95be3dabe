"""A registry of self-checks. Each check covers one or more ops, takes a device and raises
(an AssertionError, usually) when the op gives a wrong answer there."""
import traceback

import torch

_CHECKS = []  # (op names, function)


def self_check(*ops):
    def register(fn):
        _CHECKS.append((ops, fn))
        return fn
    return register


def registered_ops():
    """Every op of the torch.ops.bitsandbytes namespace (the compiled library's schemas)."""
    names = torch._C._dispatch_get_all_op_names()
    return sorted({n.split("::", 1)[1].split(".")[0] for n in names if n.startswith("bitsandbytes::")})


def run_self_checks(devices):
    """Runs every check on every device where its ops have kernels. Returns rows
    (op, device, status, detail); status is ok, FAIL or n/a (no kernel for that device)."""
    from ..utils import has_kernel
    from . import checks  # noqa: F401  (registers the checks)

    rows = []
    covered = set()
    for ops, fn in _CHECKS:
        covered.update(ops)
        for device in devices:
            if not any(has_kernel(op, device) for op in ops):
                rows.extend((op, device, "n/a", "") for op in ops)
                continue
            try:
                fn(device)
                status, detail = "ok", ""
            except Exception as e:  # report every failure, keep checking the rest
                status = "FAIL"
                detail = f"{type(e).__name__}: {e}".splitlines()[0][:160]
                if not isinstance(e, AssertionError):
                    detail += " | " + traceback.format_exc().splitlines()[-3].strip()[:80]
            for op in ops:
                rows.append((op, device, status, detail))
    for op in registered_ops():
        if op not in covered:
            rows.extend((op, d, "FAIL", "no self-check covers this op") for d in devices)
    return rows
