"""Argument handling shared by the functional API."""
import torch


def check_tensor(x, name, fn):
    """A TypeError naming the function and argument unless x is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def into(out, result, name, fn):
    """Writes `result` into the caller's `out` after checking it can hold it exactly."""
    if out is None:
        return result
    check_tensor(out, name, fn)
    if out.shape != result.shape or out.dtype != result.dtype or out.device != result.device:
        raise ValueError(f"{fn}: {name} must be a {result.dtype} tensor of shape {tuple(result.shape)} on "
                         f"{result.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
    return out.copy_(result)
