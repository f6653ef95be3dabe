"""What this installation was built with, and small helpers shared across the package."""
import json
import os

import torch


def build_info():
    """What this installation was built with: {'cuda': bool, 'cuda_archs': str, ...}."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build_info.json")
    if not os.path.exists(path):
        return {"cuda": False, "cuda_archs": "", "cuda_version": None, "torch_version": None}
    with open(path) as f:
        return json.load(f)


def has_kernel(op_name, device_type):
    """Whether torch.ops.bitsandbytes.<op_name> has a kernel for `device_type` ('cpu'/'cuda')."""
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"bitsandbytes::{op_name}", key)


def optimizer_state_bytes(optimizer):
    """Bytes held by an optimizer's state tensors, each storage counted once (the 8-bit maps
    are shared between parameters)."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                total += v.numel() * v.element_size()
    return total
