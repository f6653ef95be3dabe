"""Optimizer state dicts in the reference library's format: torch's layout with each
parameter's state tensors (`optimizer.non_castable_tensor_keys`: codes, maps, scales,
gnorm_vec, unorm_vec) nested under `__bnb_optimizer_quant_state__`; loading takes ours and the
reference's (nested or flat keys; 8-bit state per block, with blocksize 256 or an older 2048,
or per tensor with `max1`/`new_max1`), in whichever layout the optimizer's block_wise asks for.
4-bit state (16-value maps) loads as saved."""
import numbers
from collections import defaultdict

import torch

from .. import functional as F
from ..functional.algorithms import ALGORITHMS, BLOCKSIZE, BLOCKSIZE_4BIT
from ..functional.blockwise import check_code_values
from .group_keys import named_from_betas, set_betas_and_eps
from .sharding import from_saved, local, to_saved
from .state import as_paged, num_blocks, paged_copy, quantize_into, scale_key, shared_map, state_bits

QUANT_STATE_KEY = "__bnb_optimizer_quant_state__"
# Blocksizes an older checkpoint's absmax may have been made with, most likely first.
CHECKPOINT_BLOCKSIZES = (2048, 256, 4096, 1024, 512, 128, 64)


def state_dict(optimizer, sd):
    """Nests the state tensors of torch's state dict `sd` of `optimizer`."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    packed = {}
    for k, st in sd["state"].items():
        st = to_saved(params[k], dict(st), BLOCKSIZE) if isinstance(k, int) and k < len(params) else dict(st)
        inner = {key: st.pop(key) for key in list(st) if key in optimizer.non_castable_tensor_keys}
        if inner:
            st[QUANT_STATE_KEY] = inner
        packed[k] = st
    sd["state"] = packed
    for group in sd["param_groups"]:  # copies: betas as the named settings are now
        set_betas_and_eps(group, optimizer.betas_keys)
    return sd


def load_state_dict(optimizer, sd, move_to_device=True):
    """Loads `sd` into `optimizer`. Tensors keep their dtype (8-bit codes, maps and absmax are
    never cast) and move to the parameter's device unless move_to_device is False. Settings
    the reference keeps only in `betas` (SGD's momentum, RMSprop's alpha) are honoured."""
    if not isinstance(move_to_device, bool):
        raise TypeError(f"load_state_dict: move_to_device must be True or False, got {move_to_device!r}")
    groups = optimizer.param_groups
    saved_groups = sd["param_groups"]
    if len(groups) != len(saved_groups):
        raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, the optimizer has "
                         f"{len(groups)}")
    for g, sg in zip(groups, saved_groups):
        if len(g["params"]) != len(sg["params"]):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of the "
                             "optimizer's group")
    id_map = {}
    where = {}
    for gindex, (g, sg) in enumerate(zip(groups, saved_groups)):
        for pindex, (old_id, p) in enumerate(zip(sg["params"], g["params"])):
            id_map[old_id] = p
            where[old_id] = (gindex, pindex)
    algo = ALGORITHMS.get(getattr(optimizer, "optimizer_name", None))
    stacked1 = algo.stacked1 if algo else 1
    state = defaultdict(dict)
    for k, v in sd["state"].items():
        if k in id_map:
            p = id_map[k]
            gindex, pindex = where[k]
            state[p] = _load_param_state(optimizer, p, v, optimizer.get_config(gindex, pindex, groups[gindex]),
                                         move_to_device, f"parameter {pindex} of group {gindex}", stacked1)
        else:
            state[k] = v
    new_groups = []
    for g, sg in zip(groups, saved_groups):
        ng = dict(g)
        ng.update({k: v for k, v in sg.items() if k != "params"})
        ng["params"] = g["params"]
        named_from_betas(sg, ng, optimizer.betas_keys)
        optimizer.check_loaded_group(ng)
        set_betas_and_eps(ng, optimizer.betas_keys)
        new_groups.append(ng)
    optimizer.__setstate__({"state": state, "param_groups": new_groups})


def _load_param_state(optimizer, p, saved, config, move_to_device, name, stacked1=1):
    def load(t, key):  # a copy, so that the state dict and the optimizer never share a tensor
        if move_to_device and key in ("state1", "state2"):
            # a paged optimizer's state straight into unified memory: moved to the device first
            # and paged after, it was copied twice and held twice on the device at the peak
            paged = paged_copy(optimizer, t, p.device)
            if paged is not None:
                return paged
        return t.to(p.device, copy=True) if move_to_device else t.clone()

    st = {}
    for key, val in saved.items():
        if key == QUANT_STATE_KEY:
            for kk, vv in val.items():
                st[kk] = load(vv, kk) if isinstance(vv, torch.Tensor) else vv
        elif isinstance(val, torch.Tensor) and key != "step":
            st[key] = load(val, key)
        else:
            st[key] = val
    if "step" in st:
        step = st["step"].item() if isinstance(st["step"], torch.Tensor) and st["step"].numel() == 1 else st["step"]
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or step != int(step) or step < 0:
            raise ValueError(f"load_state_dict: {name}: step must be a whole number of steps taken, got {step!r}")
        st["step"] = int(step)
    shard = local(p)
    st = from_saved(p, st, num_blocks(shard.numel(), config["block_wise"]))
    _check_loaded(optimizer, st, shard, name, stacked1)
    if "state1" in st and st["state1"].dtype == torch.uint8 and "qmap1" in st and state_bits(st) == 4:
        _check_4bit(st, shard.numel())
    elif "state1" in st and st["state1"].dtype == torch.uint8:
        for i in ("1", "2"):
            if f"state{i}" in st:
                _to_layout(st, i, shard.numel(), config["block_wise"], stacked1 if i == "1" else 1)
    for i in ("1", "2"):  # one update for all states in the default maps (a check at load, not a step)
        if isinstance(st.get(f"qmap{i}"), torch.Tensor):
            st[f"qmap{i}"] = shared_map(st[f"qmap{i}"])
    if "state1" in st:  # state the settings need that an older checkpoint may lack
        dev = st["state1"].device
        if config["percentile_clipping"] < 100 and "gnorm_vec" not in st:
            st["gnorm_vec"] = torch.zeros(100, dtype=torch.float32, device=dev)
        if config["max_unorm"] > 0.0 and "unorm_vec" not in st:
            st["unorm_vec"] = torch.zeros(1, dtype=torch.float32, device=dev)
    for key in ("state1", "state2"):
        if key in st:
            st[key] = as_paged(optimizer, st[key])
    return st


def _check_loaded(optimizer, st, shard, name, stacked1=1):
    """Refuses, naming the parameter and the key, a loaded state that this optimizer's kernel
    could not run on: keys of another optimizer class, a missing or extra state, a state whose
    size is not the parameter's, or an 8-bit state without its map or absmax."""
    if not st:
        return
    known = optimizer.non_castable_tensor_keys | {"step"}
    unknown = sorted(k for k in st if k not in known)
    if unknown:
        raise ValueError(f"load_state_dict: {name}: unknown state key {unknown[0]!r}; the state dict is not one of "
                         f"{type(optimizer).__name__}'s")
    states = optimizer.num_states
    dtypes = [st[k].dtype for k in ("state1", "state2") if isinstance(st.get(k), torch.Tensor)]
    if len(set(dtypes)) > 1:
        raise ValueError(f"load_state_dict: {name}: state1 is {dtypes[0]} and state2 {dtypes[1]}; a parameter's "
                         "states are all float32 (32-bit state) or all uint8 (8-bit or 4-bit state)")
    for i in (1, 2):
        key = f"state{i}"
        t = st.get(key)
        if i > states:
            if t is not None:
                raise ValueError(f"load_state_dict: {name}: {key} is not a state of {type(optimizer).__name__} "
                                 f"(it keeps {states}); the state dict is of another optimizer class")
            continue
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"load_state_dict: {name}: {key} is missing; {type(optimizer).__name__} keeps {states} "
                             "state tensor(s) per parameter")
        if t.dtype == torch.uint8:
            # its scale: absmax{i} per block, or (tensor-wise, the reference's keys) max{i}
            qmap, absmax = st.get(f"qmap{i}"), st.get(f"absmax{i}", st.get(f"max{i}"))
            if (not isinstance(qmap, torch.Tensor) or qmap.numel() not in (16, 256)
                    or not isinstance(absmax, torch.Tensor)):
                raise ValueError(f"load_state_dict: {name}: the quantized {key} needs qmap{i} (16 or 256 values) and "
                                 f"absmax{i} (or max{i}), got " + ", ".join(
                                     f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else v!r}"
                                     for k, v in ((f"qmap{i}", qmap), (f"absmax{i}", absmax))))
            _check_map(qmap, f"qmap{i}", name, nonnegative=i == 2 and states == 2)
            if qmap.numel() == 16:
                continue  # 4-bit codes, two a byte: _check_4bit checks their size
        elif t.dtype != torch.float32:
            raise ValueError(f"load_state_dict: {name}: {key} must be float32 (32-bit state) or uint8 (8-bit state), "
                             f"got {t.dtype}")
        shape = (stacked1, *shard.shape) if i == 1 and stacked1 > 1 else tuple(shard.shape)  # AdEMAMix: 2 EMAs
        if t.numel() != shard.numel() * (stacked1 if i == 1 else 1):
            raise ValueError(f"load_state_dict: {name}: {key} has shape {tuple(t.shape)}, the parameter has shape "
                             f"{tuple(shard.shape)}")
        if tuple(t.shape) != shape:  # (a view would drop a paged copy's mark, and it would be paged again)
            st[key] = t.view(shape)


def _check_map(qmap, key, name, nonnegative):
    """Refuses a loaded code map the kernels cannot requantize into: not float32, not finite or
    not ascending (check_code_values, as quantize_blockwise checks its map), or, for a second
    moment's map (state2 of Adam and AdEMAMix), with a negative entry: the second moment is
    never negative, and a negative code would make its square root, and so the parameter, NaN."""
    if qmap.device.type == "meta":
        return  # no values to read
    where = f"load_state_dict: {name}"
    if qmap.dtype != torch.float32:
        raise ValueError(f"{where}: {key} must be float32, got {qmap.dtype}")
    check_code_values(qmap, where, search=True, name=key)
    if nonnegative and not bool((qmap >= 0).all()):
        raise ValueError(f"{where}: {key} maps a second moment and must be non-negative (a negative code would make "
                         f"the step's square root NaN); got minimum {qmap.min().item():g}")


def _check_4bit(st, n):
    """4-bit state has one layout (two codes a byte, an absmax per 128 values): refuses any other."""
    for i in ("1", "2"):
        if f"state{i}" not in st:
            continue
        codes, absmax = st[f"state{i}"], st.get(f"absmax{i}")
        blocks = -(-n // BLOCKSIZE_4BIT)
        if codes.numel() != (n + 1) // 2 or absmax is None or absmax.numel() != blocks:
            raise ValueError(f"load_state_dict: 4-bit state{i} of a parameter of {n} values must hold {(n + 1) // 2} "
                             f"bytes and {blocks} absmax values, got {codes.numel()} and "
                             f"{None if absmax is None else absmax.numel()}")
        st[f"absmax{i}"] = absmax.reshape(-1).float()


def _to_layout(st, i, n, block_wise, stacked=1):
    """Brings a loaded 8-bit state`i` to the layout `block_wise` asks for: `absmax{i}` per 256
    values, or `max{i}` (and `new_max{i}`) per tensor. A state saved in the other layout, or
    with absmax of an older blocksize (inferred from its length), is dequantized and quantized
    again. stacked > 1: the state holds that many states of n values one after the other
    (AdEMAMix's state1, block-wise), each with its row of absmax, [stacked, blocks]."""
    saved_key = f"absmax{i}" if f"absmax{i}" in st else f"max{i}"
    if saved_key not in st:
        raise ValueError(f"load_state_dict: 8-bit state{i} has neither absmax{i} nor max{i}")
    if stacked > 1:
        scales = st.pop(saved_key).reshape(stacked, -1)
        st.pop(f"new_max{i}", None)
        parts = []
        for k in range(stacked):
            part = {f"state{i}": st[f"state{i}"][k], f"qmap{i}": st[f"qmap{i}"], saved_key: scales[k]}
            _to_layout(part, i, n, block_wise)
            parts.append(part)
        key = scale_key(i, block_wise)
        # (the parts' codes are views of state{i}, requantized in place: no new tensor, which a
        # paged optimizer would copy into unified memory again)
        st[key] = torch.stack([part[key] for part in parts])
        return
    scale = st.pop(saved_key).reshape(-1).float()
    new_max = st.pop(f"new_max{i}", None)
    key, want = scale_key(i, block_wise), num_blocks(n, block_wise)
    q = st[f"state{i}"]
    if (key == saved_key and scale.numel() == want) or n == 0:
        st[key] = scale
    else:
        code = st[f"qmap{i}"]
        if saved_key == f"max{i}":  # one scale for the tensor
            if scale.numel() != 1:
                raise ValueError(f"load_state_dict: state{i} is tensor-wise (max{i}) and needs one max{i} value, "
                                 f"got {scale.numel()}")
            values = code[q.long()] * scale
        else:  # one absmax a block, of the blocksize their number says
            bs = next((b for b in CHECKPOINT_BLOCKSIZES if -(-n // b) == scale.numel()), None)
            if bs is None:
                raise ValueError(f"load_state_dict: state{i} has {scale.numel()} absmax values for {n} elements; "
                                 "no supported blocksize gives that many blocks")
            values = F.dequantize_blockwise(q, absmax=scale, code=code, blocksize=bs)
        st[key] = torch.zeros(want, dtype=torch.float32, device=q.device)
        quantize_into(st, i, values.reshape(q.shape), block_wise)
    if not block_wise:
        st[f"new_max{i}"] = (new_max.reshape(-1).float() if new_max is not None and new_max.numel() == 1
                             else torch.zeros(1, dtype=torch.float32, device=q.device))
