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
# - state shaped like the shard (state1, state2) becomes a DTensor with the parameter's
#   placements, so it reshards like the parameter;
# - the per-block absmax of 8-bit state: where each row of the parameter holds a whole number of
#   256-value blocks (rows of 1024, 4096, ... values: a shard then starts on a block boundary),
#   block b of row r is entry [r, b] of a [rows, blocks per row] DTensor sharded on rows, which
#   reshards onto any number of ranks like the parameter itself. Otherwise a shard's blocks do
#   not line up with rows, and its absmax is saved as row `rank` of a zero-padded [ranks, blocks
#   of the largest shard] DTensor, which loads onto the same number of ranks only;
# - the per-tensor scale of tensor-wise 8-bit state (max1, max2: each rank's shard has its own)
#   is saved in that per-rank layout too.
_ELEMENTWISE = ("state1", "state2")
_PER_TENSOR = ("max1", "max2")
_PER_BLOCK = ("absmax1", "absmax2") + _PER_TENSOR


def _check_layout(p):
    from torch.distributed.tensor import Shard

    if p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),):
        raise NotImplementedError("bitsandbytes optimizers save sharded state for parameters sharded on dim 0 "
                                  f"over a 1-D mesh (FSDP2's layout); got placements {p.placements}")


def _blocks_per_row(p, blocksize):
    """Blocks in each row when rows hold whole blocks, else None."""
    if p.dim() < 2:
        return None
    row = p.numel() // p.shape[0] if p.shape[0] else 0
    return row // blocksize if row and row % blocksize == 0 else None


def _absmax_width(p, blocksize):
    """Blocks of the largest shard: the row width of the per-rank layout (same on every rank)."""
    rows = p.shape[0] if p.dim() else 1
    largest = -(-rows // p.device_mesh.size()) * (p.numel() // max(rows, 1))
    return max(1, -(-largest // blocksize))


def to_saved(p, state, blocksize):
    """The state of DTensor parameter p with its tensors as DTensors (see above)."""
    if DTensor is None or not isinstance(p, DTensor):
        return state
    from torch.distributed.tensor import Shard

    _check_layout(p)
    s1 = state.get("state1")
    if isinstance(s1, torch.Tensor) and not isinstance(s1, DTensor) and s1.shape != p.to_local().shape:
        raise NotImplementedError("bitsandbytes optimizers do not save sharded state that stacks several states in "
                                  f"state1 (AdEMAMix's {tuple(s1.shape)} for a shard of {tuple(p.to_local().shape)})")
    out = dict(state)
    for key in _ELEMENTWISE:
        t = state.get(key)
        if isinstance(t, torch.Tensor) and not isinstance(t, DTensor):
            out[key] = DTensor.from_local(t, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                          stride=p.stride())
    per_row = _blocks_per_row(p, blocksize)
    local_rows = p.to_local().shape[0] if p.dim() else 1
    width = _absmax_width(p, blocksize)
    for key in _PER_BLOCK:
        t = state.get(key)
        if not isinstance(t, torch.Tensor) or isinstance(t, DTensor):
            continue
        if key not in _PER_TENSOR and per_row is not None and t.numel() == local_rows * per_row:
            out[key] = DTensor.from_local(t.reshape(local_rows, per_row), p.device_mesh, [Shard(0)],
                                          run_check=False, shape=(p.shape[0], per_row), stride=(per_row, 1))
        else:
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
    rows = p.shape[0] if p.dim() else 1
    for key in _ELEMENTWISE + _PER_BLOCK:
        t = state.get(key)
        if not isinstance(t, DTensor):
            continue
        if key in _PER_BLOCK and t.dim() == 2 and t.shape[0] != rows and t.shape[0] != p.device_mesh.size():
            raise NotImplementedError(
                f"this 8-bit optimizer state was saved over {t.shape[0]} ranks and is loaded over "
                f"{p.device_mesh.size()}: only parameters whose rows hold whole 256-value blocks reshard")
        out[key] = t.to_local()
    for key in _PER_BLOCK:
        t = out.get(key)
        if isinstance(t, torch.Tensor) and t.dim() == 2:
            out[key] = t.reshape(-1)[:1 if key in _PER_TENSOR else blocks].contiguous()
    return out
