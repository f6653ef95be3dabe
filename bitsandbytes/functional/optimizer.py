"""The low-level optimizer updates behind bitsandbytes.optim, and percentile clipping.

`optimizer_update_multi` updates a list of tensors that share dtype, device and state kind
in one launch (one kernel launch on CUDA). `optimizer_update_32bit`,
`optimizer_update_8bit_blockwise` and `optimizer_update_8bit` (tensor-wise) are the one-tensor
forms, in the reference library's argument order. Every update happens in place
on the current stream and never synchronises with the host.

Algorithms (`optimizer_name`): "adam", "adamw" (decoupled weight decay), "lamb" (Adam with
the trust ratio `max_unorm`), "momentum" / "sgd", "lars" (momentum with the trust ratio),
"rmsprop", "adagrad", "lion", "ademamix" (state1 holds the fast and slow EMAs stacked,
[2, *shape]; beta3 and alpha are the slow EMA's decay and weight for this step). beta1 is the
momentum for momentum/sgd/lars and alpha for rmsprop.
"""
import torch

from .. import _ops  # noqa: F401  (the library, loaded before the fakes below are registered)
from .._extension import OptimizerTensors
from .._formats import FLOAT_DTYPES, dtype_list
from .algorithms import algorithm
from .blockwise import default_code


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def prepare_update(params, state1, state2=None, absmax1=None, absmax2=None):
    """The tensors of one launch that stay the same between steps (parameters, states, absmax),
    for optimizer_update_multi(prepared=...): a step then hands over only the scalars and reads
    each parameter's .grad, which saves the host the conversion of every list (about 0.1 us a
    tensor) at every step. Make a new one whenever any of these tensors is replaced."""
    return OptimizerTensors(*(_as_list(x) for x in (params, state1, state2, absmax1, absmax2)))


def optimizer_update_multi(optimizer_name, params, grads, state1, state2, beta1, beta2, eps, step, lr,
                           qmap1=None, qmap2=None, absmax1=None, absmax2=None, weight_decay=0.0, gnorm_scale=None,
                           max_unorm=0.0, bias_correction=True, dampening=0.0, nesterov=False, block_wise=True,
                           decoupled_weight_decay=None, prepared=None, beta3=0.0, alpha=0.0):
    """Updates params[i] in place from grads[i] with its states (float32: 32-bit state;
    uint8: 8-bit state with maps qmap1/qmap2 and absmax1/absmax2). `step` is the step being
    taken (1 for the first). gnorm_scale: None or a float32 tensor with one clipping factor
    per tensor, on the parameters' device. With `prepared` (prepare_update of these params and
    states) the tensor lists are not passed again, and with grads None each parameter's .grad
    is taken."""
    algo = algorithm(optimizer_name)
    decoupled = algo.decoupled if decoupled_weight_decay is None else decoupled_weight_decay
    read_grads = grads is None
    if read_grads and prepared is None:
        raise ValueError("optimizer_update_multi: grads may be None only with prepared tensors (prepare_update)")
    if prepared is not None:
        params, state1, state2, absmax1, absmax2 = prepared.lists
    params = _as_list(params)
    if not params:
        return
    state1, state2 = _as_list(state1), _as_list(state2)
    if algo.num_states == 1:
        state2 = []
    if step < 1:
        raise ValueError(f"{optimizer_name}: step must be >= 1 (the step being taken), got {step}")
    bc1 = bc2 = 1.0
    if algo.kernel in ("adam", "ademamix") and bias_correction:
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
    scalars = (float(lr), float(beta1), float(beta2), float(beta3), float(alpha), float(eps), float(weight_decay),
               bool(decoupled), bc1, bc2, float(dampening), bool(nesterov), int(step), float(max_unorm),
               bool(block_wise))
    if read_grads:
        done = prepared.step(algo.kernel, qmap1, qmap2, gnorm_scale, scalars)
        if done:
            return
        if done is False:
            raise RuntimeError(f"{optimizer_name}: a parameter of this update has no gradient")
        grads = [p.grad for p in params]
    grads = _as_list(grads)
    if any(g is None for g in grads):
        raise RuntimeError(f"{optimizer_name}: a parameter of this update has no gradient")
    torch.ops.bitsandbytes.optimizer_update(algo.kernel, params, grads, state1, state2, _as_list(absmax1),
                                            _as_list(absmax2), qmap1, qmap2, gnorm_scale, *scalars)


def _check_skip_zeros(skip_zeros):
    if skip_zeros:
        raise NotImplementedError("skip_zeros=True is not supported: every element is updated")


def _scale_tensor(gnorm_scale, device):
    if gnorm_scale is None:
        return None
    if isinstance(gnorm_scale, torch.Tensor):
        return gnorm_scale.detach().reshape(1).to(device=device, dtype=torch.float32)
    if float(gnorm_scale) == 1.0:
        return None
    return torch.full((1,), float(gnorm_scale), dtype=torch.float32, device=device)


def _check_ademamix_settings(fn, optimizer_name, beta3, alpha):
    """beta3 and alpha (AdEMAMix's slow EMA) are in the reference's argument order; only
    "ademamix" reads them, so for any other algorithm a value other than 0 is refused rather
    than ignored."""
    if (beta3 != 0.0 or alpha != 0.0) and algorithm(optimizer_name).kernel != "ademamix":
        raise ValueError(f"{fn}: beta3 and alpha are AdEMAMix's settings, which optimizer_name "
                         f"{optimizer_name!r} does not take; got beta3={beta3}, alpha={alpha} (pass 0)")


def optimizer_update_32bit(optimizer_name, g, p, state1, beta1, eps, step, lr, state2=None, beta2=0.0, beta3=0.0,
                           alpha=0.0, weight_decay=0.0, gnorm_scale=1.0, unorm_vec=None, max_unorm=0.0,
                           skip_zeros=False, bias_correction=True, dampening=0.0, nesterov=False):
    """One optimizer step of p (in place) with float32 states state1 (and state2 for
    Adam-family algorithms; ademamix: state1 [2, *p.shape], beta3 and alpha), in the reference
    library's argument order. gnorm_scale multiplies the gradient (percentile clipping).
    max_unorm > 0 applies the trust ratio (lars, lamb); the update norm is computed inside the
    call, so `unorm_vec` is unused."""
    _check_skip_zeros(skip_zeros)
    _check_ademamix_settings("optimizer_update_32bit", optimizer_name, beta3, alpha)
    optimizer_update_multi(optimizer_name, [p], [g], [state1], [state2] if state2 is not None else [], beta1, beta2,
                           eps, step, lr, weight_decay=weight_decay, gnorm_scale=_scale_tensor(gnorm_scale, p.device),
                           max_unorm=max_unorm, bias_correction=bias_correction, dampening=dampening,
                           nesterov=nesterov, beta3=beta3, alpha=alpha)


def optimizer_update_8bit_blockwise(optimizer_name, g, p, state1, state2, beta1, beta2, beta3, alpha, eps, step, lr,
                                    qmap1, qmap2, absmax1, absmax2, weight_decay=0.0, gnorm_scale=1.0,
                                    skip_zeros=False, max_unorm=0.0, bias_correction=True, dampening=0.0,
                                    nesterov=False, block_wise=True):
    """One optimizer step of p (in place) with 8-bit states, in the reference library's
    argument order: uint8 codes into qmap1 (state1) and qmap2 (state2), one absmax per 256
    values (block_wise) or per tensor (ademamix: state1 [2, *p.shape] and absmax1 [2, blocks],
    both halves with qmap1). The states are dequantized, updated in float32 and requantized
    with their new absmax in one pass."""
    _check_skip_zeros(skip_zeros)
    _check_ademamix_settings("optimizer_update_8bit_blockwise", optimizer_name, beta3, alpha)
    optimizer_update_multi(optimizer_name, [p], [g], [state1], [state2] if state2 is not None else [], beta1, beta2,
                           eps, step, lr, qmap1=qmap1, qmap2=qmap2, absmax1=[absmax1],
                           absmax2=[absmax2] if absmax2 is not None else [], weight_decay=weight_decay,
                           gnorm_scale=_scale_tensor(gnorm_scale, p.device), max_unorm=max_unorm,
                           bias_correction=bias_correction, dampening=dampening, nesterov=nesterov,
                           block_wise=block_wise, beta3=beta3, alpha=alpha)


def optimizer_update_8bit(optimizer_name, g, p, state1, state2, beta1, beta2, eps, step, lr, qmap1, qmap2, max1, max2,
                          new_max1, new_max2, weight_decay=0.0, gnorm_scale=1.0, unorm_vec=None, max_unorm=0.0):
    """One optimizer step of p (in place) with tensor-wise 8-bit states, in the reference
    library's argument order and contract: the states are dequantized with max1/max2 (one
    float32 each), updated, and requantized with their new maximum, which is written to
    new_max1/new_max2; max1/max2 are left as they were, for the caller to swap with the new
    ones before the next step (as the optimizers' `max1`/`new_max1` state). The update norm
    of the trust ratio is computed inside the call, so `unorm_vec` is unused."""
    for name, t in (("max1", max1), ("new_max1", new_max1), ("max2", max2), ("new_max2", new_max2)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.numel() != 1):
            raise ValueError(f"optimizer_update_8bit: {name} must be a tensor of one float32 value")
    new_max1.copy_(max1)  # the update reads the old maximum where it writes the new one
    if state2 is not None:
        new_max2.copy_(max2)
    optimizer_update_multi(optimizer_name, [p], [g], [state1], [state2] if state2 is not None else [], beta1, beta2,
                           eps, step, lr, qmap1=qmap1, qmap2=qmap2, absmax1=[new_max1],
                           absmax2=[new_max2] if state2 is not None else [], weight_decay=weight_decay,
                           gnorm_scale=_scale_tensor(gnorm_scale, p.device), max_unorm=max_unorm, block_wise=False)


GNORM_HISTORY = 100  # squared gradient norms kept per parameter by percentile clipping


def percentile_clipping(grad, gnorm_vec, step, percentile=5):
    """Clips a gradient at a percentile of its recent norms, in the reference library's format:
    gnorm_vec holds the last 100 SQUARED gradient norms (float32), updated in place: entry
    `step % 100` gets the new one, and at step 1 all 100 entries do. Returns (current_gnorm,
    clip_value, gnorm_scale) as 0-dim float32 tensors on grad's device, computed without a host
    synchronisation: clip_value is the square root of the entry of rank `percentile` (from 0,
    ascending), gnorm_scale = clip_value / current_gnorm where the norm is above it, else 1."""
    if not isinstance(grad, torch.Tensor) or grad.dtype not in FLOAT_DTYPES:
        raise TypeError(f"percentile_clipping: grad must be a {dtype_list(FLOAT_DTYPES)} tensor, got "
                        f"{grad.dtype if isinstance(grad, torch.Tensor) else type(grad).__name__}")
    if gnorm_vec.numel() != GNORM_HISTORY or gnorm_vec.dtype != torch.float32 or not gnorm_vec.is_contiguous():
        raise ValueError(f"percentile_clipping: gnorm_vec must be {GNORM_HISTORY} contiguous float32 values, "
                         f"got {gnorm_vec.numel()} {gnorm_vec.dtype} values")
    current, clip, scale = percentile_clipping_multi([grad], [gnorm_vec], step, percentile)
    return current[0], clip[0], scale[0]


def percentile_clipping_multi(grads, gnorm_vecs, step, percentile):
    """percentile_clipping of several gradients at once, each with its own history (as the
    optimizers keep it: not checked here, at every step), in a fixed number of launches whatever
    their count: (current_gnorm, clip_value, gnorm_scale), each a float32 tensor with one value
    per gradient."""
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise TypeError(f"percentile_clipping: percentile must be an integer, got {type(percentile).__name__}")
    if percentile != int(percentile) or not 0 <= percentile < GNORM_HISTORY:
        raise ValueError(f"percentile_clipping: percentile must be an integer in [0, {GNORM_HISTORY - 1}], "
                         f"got {percentile}")
    if step < 1:
        raise ValueError(f"percentile_clipping: step must be >= 1, got {step}")
    grads = [g.detach() for g in grads]
    squares = torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)).square()
    history = torch.stack([h.reshape(-1) for h in gnorm_vecs])
    slot = step % GNORM_HISTORY
    if step == 1:
        history.copy_(squares[:, None].expand_as(history))
    else:
        history[:, slot] = squares
    torch._foreach_copy_([h.view(-1) for h in gnorm_vecs], list(history.unbind(0)))
    clip = torch.sort(history, dim=1).values[:, int(percentile)].sqrt()
    current = history[:, slot].sqrt()
    scale = torch.where(current > clip, clip / current, torch.ones_like(current))
    return current, clip, scale


def state_maps(device, bits=8):
    """The signed (first moments) and unsigned (second moments) maps of `bits`-bit state on
    `device`: the dynamic maps (8), or create_optimizer_4bit_map's (4)."""
    return default_code(device, signed=True, bits=bits), default_code(device, signed=False, bits=bits)


def paged_zeros(shape, dtype=torch.float32, device="cuda"):
    """A zero tensor in CUDA unified (managed) memory: it lives on the GPU while used there
    and can be evicted to host memory under memory pressure. On other devices an ordinary
    tensor."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.zeros(shape, dtype=dtype, device=device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    like = torch.empty(0, device=device)
    return torch.ops.bitsandbytes.paged_zeros(like, list(shape), dtype)


def prefetch_to_device(tensors):
    """Queues a migration of paged tensors (one or a list) to their GPU on the current stream
    (a no-op for tensors that are not in managed memory, and on the CPU)."""
    tensors = [t for t in _as_list(tensors) if t.device.type == "cuda" and t.numel() > 0]
    if tensors:
        torch.ops.bitsandbytes.prefetch_to_device(tensors)


# How many times paged memory was sent to the host on purpose: a paged optimizer that saw
# the count change prefetches its state before its next step (optim/paging.py).
_host_moves = 0


def prefetch_to_host(tensors):
    """Queues a migration of paged tensors (one or a list) to host memory on the current
    stream, freeing their GPU memory until they are used or prefetched there again (a no-op
    for tensors that are not in managed memory, and on the CPU)."""
    global _host_moves
    tensors = [t for t in _as_list(tensors) if t.device.type == "cuda" and t.numel() > 0]
    if tensors:
        _host_moves += 1
        torch.ops.bitsandbytes.prefetch_to_host(tensors)


def host_moves():
    """The number of prefetch_to_host calls that moved something so far."""
    return _host_moves


def cuda_memory_numbers(on_device):
    """[total, free, reserved, peak_reserved] bytes of the GPU of the tensor `on_device`: the
    driver's total and free memory, and what torch's caching allocator holds there now and has
    held at most (torch.cuda.mem_get_info, memory_reserved and max_memory_reserved, in one op)."""
    if on_device.device.type != "cuda":
        raise ValueError(f"cuda_memory_numbers: on_device must be a CUDA tensor, got one on {on_device.device}")
    return torch.ops.bitsandbytes.cuda_memory_numbers.default(on_device)


# Fake kernels of the ops above (torch.compile, opcheck).


@torch.library.register_fake("bitsandbytes::optimizer_update")
def _optimizer_update_fake(algorithm, params, grads, state1, state2, absmax1, absmax2, qmap1, qmap2, gnorm_scale, lr,
                           beta1, beta2, beta3, alpha, eps, weight_decay, decoupled_weight_decay, bias_correction1,
                           bias_correction2, dampening, nesterov, step, max_unorm, block_wise):
    torch._check_value(len(grads) == len(params), lambda: "optimizer_update: grads must hold one tensor per parameter")
    torch._check_value(len(state1) == len(params),
                       lambda: "optimizer_update: state1 must hold one tensor per parameter")
    return None


@torch.library.register_fake("bitsandbytes::paged_zeros")
def _paged_zeros_fake(like, size, dtype):
    return torch.empty(size, dtype=dtype, device=like.device)


@torch.library.register_fake("bitsandbytes::prefetch_to_device")
def _prefetch_to_device_fake(tensors):
    return None


@torch.library.register_fake("bitsandbytes::prefetch_to_host")
def _prefetch_to_host_fake(tensors):
    return None
