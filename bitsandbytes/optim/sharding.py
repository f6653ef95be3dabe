"""Parameters sharded by torch.distributed (DTensor, as FSDP2's fully_shard makes them): each
rank updates its own local shard, with its state (8-bit blocks included) laid over that
shard; nothing is gathered."""
import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch built without distributed support
    DTensor = None


def local(t):
    """The rank-local tensor of a DTensor (sharing its storage), else t itself."""
    if DTensor is not None and isinstance(t, DTensor):
        return t.to_local()
    return t


# How a sharded parameter's state is saved, so that torch.distributed.checkpoint writes every
# rank's part (a plain tensor would be taken as replicated and only one rank's copy kept):
# state shaped like the shard becomes a DTensor with the parameter's placements; the per-block
# absmax of the shard becomes row r of a [ranks, blocks of the largest shard] DTensor sharded on
# rows, zero-padded. Loading needs the same number of ranks: 8-bit blocks are laid over each
# rank's shard, so another sharding would need the state dequantized and quantized again.
_ELEMENTWISE = ("state1", "state2")
_PER_BLOCK = ("absmax1", "absmax2")


def _check_layout(p):
    from torch.distributed.tensor import Shard

    if p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise NotImplementedError("bitsandbytes optimizers save sharded state for parameters sharded on dim 0 "
                                  f"over a 1-D mesh (FSDP2's layout); got placements {p.placements}")


def _absmax_width(p, blocksize):
    """Blocks of the largest shard: the row width of the saved absmax (same on every rank)."""
    rows = p.shape[0] if p.dim() else 1
    largest = -(-rows // p.device_mesh.size()) * (p.numel() // max(rows, 1))
    return max(1, -(-largest // blocksize))


def to_saved(p, state, blocksize):
    """The state of DTensor parameter p with its tensors as DTensors (see above)."""
    if DTensor is None or not isinstance(p, DTensor):
        return state
    from torch.distributed.tensor import Shard

    _check_layout(p)
    out = dict(state)
    for key in _ELEMENTWISE:
        t = state.get(key)
        if isinstance(t, torch.Tensor) and not isinstance(t, DTensor):
            out[key] = DTensor.from_local(t, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                          stride=p.stride())
    width = _absmax_width(p, blocksize)
    for key in _PER_BLOCK:
        t = state.get(key)
        if isinstance(t, torch.Tensor) and not isinstance(t, DTensor):
            row = torch.zeros(1, width, dtype=t.dtype, device=t.device)
            row[0, : t.numel()] = t.reshape(-1)
            out[key] = DTensor.from_local(row, p.device_mesh, [Shard(0)], run_check=False,
                                          shape=(p.device_mesh.size(), width), stride=(width, 1))
    return out


def from_saved(p, state, blocks):
    """Inverse of to_saved: the rank-local tensors of a loaded state; `blocks` is the number of
    absmax values this rank's state has."""
    if DTensor is None or not isinstance(p, DTensor):
        return state
    out = dict(state)
    for key in _ELEMENTWISE + _PER_BLOCK:
        t = state.get(key)
        if isinstance(t, DTensor):
            if t.shape[0] != p.device_mesh.size() and key in _PER_BLOCK:
                raise NotImplementedError(
                    f"this 8-bit optimizer state was saved over {t.shape[0]} ranks and is loaded over "
                    f"{p.device_mesh.size()}: 8-bit state loads onto the same number of ranks only")
            out[key] = t.to_local()
    for key in _PER_BLOCK:
        t = out.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 2:
            out[key] = t.reshape(-1)[:blocks].contiguous()
    return out
