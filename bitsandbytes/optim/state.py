"""Allocation of each parameter's optimizer state (`optimizer.state[p]`), with the reference
library's keys: `step`, `state1`, `state2` and, for 8-bit state, `qmap1`, `qmap2` and the
scales: `absmax1`, `absmax2` (one per 256 values) with block_wise, else `max1`, `max2` (one per
tensor) beside `new_max1`, `new_max2`; plus `gnorm_vec` with percentile clipping and
`unorm_vec` with a trust ratio (max_unorm > 0). 4-bit state has the 8-bit block-wise keys: its
state1/state2 hold two codes a byte, its maps 16 values, its absmax one value per 128. An
algorithm that stacks two states in state1 (AdEMAMix) gets state1 [2, *shape] and absmax1
[2, blocks].

Tensor-wise state follows the reference's scheme: a step dequantizes with `max1` (the maximum
the previous step found), finds the new maximum of the updated states in a pre-pass and
requantizes with it, and `max1` carries that maximum to the next step. The reference's kernel
collects the new maximum in `new_max1` and swaps the two afterwards; ours collects it in the
kernel's scratch and writes `max1` in place, so `new_max1` is only kept for the format (the
reference clears it before every step, so its value never matters)."""
import torch

from .. import functional as F
from ..functional.algorithms import BLOCKSIZE, BLOCKSIZE_4BIT, FOUR_BIT_OPTIMIZERS, algorithm
from ..functional.blockwise import default_code
from .sharding import DTensor, local

STATE_BITS = (4, 8, 32)


def state_bits(state):
    """How a parameter's state is kept: 32 (float32), 8 or 4 (codes; the map's size tells which)."""
    if state["state1"].dtype != torch.uint8:
        return 32
    return 4 if state["qmap1"].numel() == 16 else 8


def maps_key(state):
    """Which code maps a quantized state is kept in, as a key: one multi-tensor update hands its
    kernel one map per state, so parameters whose maps are different tensors go to different
    updates. Tensors over the same storage are the same map (as torch.load restores maps that
    were one tensor when saved); 32-bit state: ()."""
    return tuple((q.untyped_storage().data_ptr(), q.storage_offset(), q.numel())
                 for q in (state.get("qmap1"), state.get("qmap2")) if isinstance(q, torch.Tensor))


def shared_map(qmap):
    """The shared default map (default_code) where a loaded map holds its values, else the map
    itself, so that loaded states keep sharing one update (maps_key). Meta tensors hold no values."""
    if qmap.device.type == "meta":
        return qmap
    for signed in (True, False):
        code = default_code(qmap.device, signed=signed, bits=4 if qmap.numel() == 16 else 8)
        if qmap.dtype == code.dtype and qmap.shape == code.shape and torch.equal(qmap, code):
            return code
    return qmap


def check_optim_bits(optimizer, optim_bits, optimizer_name):
    """A ValueError for optim_bits this optimizer cannot keep its state in."""
    if optim_bits not in STATE_BITS:
        raise ValueError(f"{type(optimizer).__name__}: optim_bits must be 4, 8 or 32, got {optim_bits}")
    if optim_bits == 4 and optimizer_name not in FOUR_BIT_OPTIMIZERS:
        raise ValueError(f"{type(optimizer).__name__}: optim_bits=4 (4-bit state) is implemented for Adam and AdamW, "
                         "not for this optimizer; use optim_bits=8 or 32")


# The state tensors that keep their dtype on load and that state_dict() nests under
# `__bnb_optimizer_quant_state__`, as the reference library does with the same set.
STATE_TENSOR_KEYS = frozenset({"state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2", "max1", "max2",
                               "new_max1", "new_max2", "gnorm_vec", "unorm_vec"})


def zeros(optimizer, shape, dtype, device, paged=False):
    """Zeros for state; in unified memory for the paged optimizers' element-wise state on CUDA,
    marked as get_paged marks it (so F.prefetch_tensor takes it, as the reference's does) and
    registered, weakly, with the GlobalPageManager (so its prefetch_all moves it)."""
    if paged and optimizer.is_paged and torch.device(device).type == "cuda":
        t = F.get_paged(*shape, dtype=dtype, device=device)
        F.GlobalPageManager.get_instance().register_weakly(t)
        return t
    return torch.zeros(shape, dtype=dtype, device=device)


def paged_copy(optimizer, t, device):
    """A copy of t (on any device) in unified memory on `device`, where a paged optimizer keeps
    its state there (CUDA); else None."""
    if not optimizer.is_paged or type(t) is not torch.Tensor or torch.device(device).type != "cuda":
        return None
    out = zeros(optimizer, t.shape, t.dtype, device, paged=True)
    out.copy_(t)
    return out


def as_paged(optimizer, t):
    """t, or for a paged optimizer's state on CUDA a copy of it in unified memory: a loaded state
    dict's tensors are ordinary device memory, which the driver could not evict."""
    if getattr(t, "is_paged", False):
        return t
    out = paged_copy(optimizer, t, t.device) if isinstance(t, torch.Tensor) else None
    return t if out is None else out


def num_blocks(n, block_wise):
    """absmax values of an 8-bit state of n values: one per block, or one for the tensor."""
    return -(-n // BLOCKSIZE) if block_wise else 1


def scale_key(i, block_wise):
    """The key of state`i`'s 8-bit scale: `absmax{i}` per block, `max{i}` per tensor."""
    return f"absmax{i}" if block_wise else f"max{i}"


def scale_of(state, i):
    """The scale tensor of an 8-bit state`i`, whichever layout it has."""
    return state[f"absmax{i}"] if f"absmax{i}" in state else state[f"max{i}"]


def init_state(optimizer, p, config):
    """Fills optimizer.state[p] with zero state of the precision `config` asks for."""
    check_optim_bits(optimizer, config["optim_bits"], optimizer.optimizer_name)
    algo = algorithm(optimizer.optimizer_name)
    # Decided on the whole parameter, so that sharding never changes a state's precision.
    quantized = config["optim_bits"] < 32 and p.numel() >= config["min_8bit_size"]
    if quantized and config["optim_bits"] == 4:
        _init_4bit_state(optimizer, p, config, algo)
        return
    state = optimizer.state[p]
    state["step"] = 0
    eight_bit = quantized
    shard = local(p)
    dev = shard.device
    init1 = float(config.get("initial_accumulator_value", 0.0) or 0.0)
    for i in range(1, algo.num_states + 1):
        stack = (algo.stacked1,) if i == 1 and algo.stacked1 > 1 else ()
        if eight_bit:
            state[f"state{i}"] = zeros(optimizer, (*stack, *shard.shape), torch.uint8, dev, paged=True)
            state[f"qmap{i}"] = default_code(dev, signed=algo.signed[i - 1])
            bw = config["block_wise"]
            state[scale_key(i, bw)] = zeros(optimizer, (*stack, num_blocks(shard.numel(), bw)), torch.float32, dev)
            if not bw:
                state[f"new_max{i}"] = zeros(optimizer, (1,), torch.float32, dev)
        else:
            state[f"state{i}"] = zeros(optimizer, (*stack, *shard.shape), torch.float32, dev, paged=True)
    if init1 != 0.0:
        if eight_bit:
            quantize_into(state, "1", torch.full(shard.shape, init1, device=dev), config["block_wise"])
        else:
            state["state1"].fill_(init1)
    if config["percentile_clipping"] < 100:
        state["gnorm_vec"] = torch.zeros(100, dtype=torch.float32, device=dev)
    if config["max_unorm"] > 0.0:
        # The reference's kernels sum the squared update norm into it; ours keep that sum in
        # the kernel's scratch, so it is kept for the format (the reference clears it before use).
        state["unorm_vec"] = torch.zeros(1, dtype=torch.float32, device=dev)


def _init_4bit_state(optimizer, p, config, algo):
    """4-bit state: per moment, two codes a byte (uint8 of ceil(n / 2)), its 16-value map and
    one absmax per 128 values."""
    name = type(optimizer).__name__
    if not config["block_wise"]:
        raise ValueError(f"{name}: 4-bit state is block-wise (one absmax per {BLOCKSIZE_4BIT} values); "
                         "block_wise=False is not supported with optim_bits=4")
    if DTensor is not None and isinstance(p, DTensor):
        raise NotImplementedError(f"{name}: 4-bit state of sharded (DTensor) parameters is not supported; "
                                  "use optim_bits=8 or 32")
    state = optimizer.state[p]
    state["step"] = 0
    n, dev = p.numel(), p.device
    for i in range(1, algo.num_states + 1):
        state[f"state{i}"] = zeros(optimizer, ((n + 1) // 2,), torch.uint8, dev, paged=True)
        state[f"qmap{i}"] = default_code(dev, signed=algo.signed[i - 1], bits=4)
        state[f"absmax{i}"] = zeros(optimizer, (-(-n // BLOCKSIZE_4BIT),), torch.float32, dev)
    if config["percentile_clipping"] < 100:
        state["gnorm_vec"] = torch.zeros(100, dtype=torch.float32, device=dev)


def quantize_into(state, i, values, block_wise):
    """Replaces state`i` (codes and absmax) by the quantization of float `values`."""
    code = state[f"qmap{i}"]
    if block_wise:
        q, qs = F.quantize_blockwise(values, code=code, blocksize=BLOCKSIZE)
        absmax = qs.absmax.abs()  # the kernels read no non-finite mark (nonfinite.h) in state
    else:
        q, (absmax, _) = F.quantize(values, code=code)
    state[f"state{i}"].copy_(q)
    scale_of(state, i).copy_(absmax.reshape(-1))
