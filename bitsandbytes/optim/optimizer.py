"""Base classes of the 8-bit and 32-bit optimizers.

A step costs a handful of launches per parameter group: the tensors of a group that share
dtype, device, state kind (8-bit or 32-bit), step count and settings form one launch of
`functional.optimizer_update_multi`. The launch plan is rebuilt only when the set of
parameters with gradients changes; the op re-uploads its device table of pointers only when
the tensors change.

State per parameter (`optimizer.state[p]`) uses the reference library's keys: `step`,
`state1`, `state2` and, for 8-bit state, `qmap1`, `qmap2`, `absmax1`, `absmax2`
(plus `gnorm_vec` with percentile clipping).
"""
from collections import defaultdict
from itertools import chain
from types import SimpleNamespace

import torch

try:  # the hooks of torch.optim.Optimizer.register_optimizer_step_{pre,post}_hook
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # then torch's own wrapper of step() runs them
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = None

from .. import functional as F
from ..functional import optimizer as FO
from ..functional.blockwise import default_code
from .manager import GlobalOptimManager
from .sharding import from_saved, local, to_saved

QUANT_STATE_KEY = "__bnb_optimizer_quant_state__"
_NESTED_KEYS = ("state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2")
# Settings that only decide how the state is allocated: parameters overriding only these
# still share their group's launch.
_INIT_ONLY_KEYS = {"optim_bits", "min_8bit_size"}
# Blocksizes an older checkpoint's absmax may have been made with, most likely first.
_CHECKPOINT_BLOCKSIZES = (2048, 256, 4096, 1024, 512, 128, 64)


def _args_namespace(args, **given):
    """The library-wide settings: from `args` (an object or dict, as the reference library
    accepts) where given, else from the keyword arguments."""
    if args is None:
        return SimpleNamespace(**given)
    get = args.get if isinstance(args, dict) else lambda k, d: getattr(args, k, d)
    return SimpleNamespace(**{k: get(k, v) for k, v in given.items()})


class _Launch:
    """One multi-tensor update of a step: the parameters and their states, fixed until the
    plan is rebuilt."""

    def __init__(self, gindex, override, params, states):
        self.gindex = gindex
        self.override = override
        self.owners = params  # the parameters themselves (DTensors under FSDP2)
        self.params = [local(p) for p in params]  # what the kernel updates: the local shards
        self.sharded = any(a is not b for a, b in zip(self.params, params))
        self.states = states
        self.eight_bit = states[0]["state1"].dtype == torch.uint8
        # the state tensors stay the same until the plan is rebuilt: list them once
        self.state1 = [s["state1"] for s in states]
        self.state2 = [s["state2"] for s in states] if "state2" in states[0] else None
        self.absmax1 = [s["absmax1"] for s in states] if self.eight_bit else None
        self.absmax2 = [s["absmax2"] for s in states] if self.eight_bit and self.state2 is not None else None
        self.buffers = FO.UpdateBuffers(self.params[0].device)
        # these tensors stay the same until the plan is rebuilt: hand them to the extension once
        self.prepared = FO.PreparedUpdate(self.params, self.state1, self.state2, self.absmax1, self.absmax2)
        self.scale = None  # percentile-clipping factors, one per tensor


class Optimizer8bit(torch.optim.Optimizer):
    """The machinery shared by every optimizer: per-parameter configuration (with the
    GlobalOptimManager overrides), state allocation, the launch plan, and state dicts in the
    reference library's format."""

    def __init__(self, params, defaults, optim_bits=32, is_paged=False):
        self._plan = None
        super().__init__(params, defaults)
        self.initialized = False
        self.optim_bits = optim_bits
        self.is_paged = is_paged
        self.mng = GlobalOptimManager.get_instance()
        self.non_castable_tensor_keys = {"qmap1", "qmap2", "absmax1", "absmax2", "state1", "state2", "gnorm_vec",
                                         "unorm_vec", "max1", "max2", "new_max1", "new_max2"}
        self._plan = None
        self._plan_signature = None
        self._grads_handle = None

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self._plan = None  # the new parameters join at the next step

    # --- configuration ---------------------------------------------------------------

    def _override(self, p, gindex, pindex):
        return self.mng.config_for(p, gindex, pindex)

    def get_config(self, gindex, pindex, group):
        """The effective settings of parameter `pindex` of group `gindex`."""
        config = dict(vars(self.args))
        config.update({k: v for k, v in group.items() if k != "params"})
        config.update(self._override(group["params"][pindex], gindex, pindex))
        return config

    def check_overrides(self):
        """Kept for compatibility: module overrides are resolved at every plan build."""

    # --- state -----------------------------------------------------------------------

    def _zeros(self, shape, dtype, device, paged=False):
        if paged and self.is_paged and torch.device(device).type == "cuda":
            return F.paged_zeros(shape, dtype=dtype, device=device)
        return torch.zeros(shape, dtype=dtype, device=device)

    def init_state(self, group, p, gindex, pindex):
        config = self.get_config(gindex, pindex, group)
        state = self.state[p]
        state["step"] = 0
        # Decided on the whole parameter, so that sharding never changes a state's precision.
        eight_bit = config["optim_bits"] == 8 and p.numel() >= config["min_8bit_size"]
        shard = local(p)
        if config["optim_bits"] not in (8, 32):
            raise ValueError(f"{type(self).__name__}: optim_bits must be 8 or 32, got {config['optim_bits']}")
        dev = shard.device
        nonneg = self.optimizer_name in ("rmsprop", "adagrad")  # state1 holds squares
        init1 = float(config.get("initial_accumulator_value", 0.0) or 0.0)
        if eight_bit:
            blocks = -(-shard.numel() // FO.BLOCKSIZE) if config["block_wise"] else 1
            state["state1"] = self._zeros(shard.shape, torch.uint8, dev, paged=True)
            state["qmap1"] = default_code(dev, signed=not nonneg)
            state["absmax1"] = self._zeros((blocks,), torch.float32, dev)
            if init1 != 0.0:
                self._quantize_into(state, "1", torch.full(shard.shape, init1, device=dev), config["block_wise"])
            if self.num_states == 2:
                state["state2"] = self._zeros(shard.shape, torch.uint8, dev, paged=True)
                state["qmap2"] = default_code(dev, signed=False)
                state["absmax2"] = self._zeros((blocks,), torch.float32, dev)
        else:
            state["state1"] = self._zeros(shard.shape, torch.float32, dev, paged=True)
            if init1 != 0.0:
                state["state1"].fill_(init1)
            if self.num_states == 2:
                state["state2"] = self._zeros(shard.shape, torch.float32, dev, paged=True)
        if config["percentile_clipping"] < 100:
            state["gnorm_vec"] = torch.zeros(100, dtype=torch.float32, device=dev)

    @staticmethod
    def _quantize_into(state, i, values, block_wise):
        """Replaces state`i` (codes and absmax) by the quantization of float `values`."""
        code = state[f"qmap{i}"]
        if block_wise:
            q, qs = F.quantize_blockwise(values, code=code, blocksize=FO.BLOCKSIZE)
            absmax = qs.absmax
        else:
            q, (absmax, _) = F.quantize(values, code=code)
        state[f"state{i}"].copy_(q)
        state[f"absmax{i}"].copy_(absmax.reshape(-1))

    # --- the step --------------------------------------------------------------------

    def _signature(self):
        return tuple(p.grad is not None for group in self.param_groups for p in group["params"])

    def _plan_is_current(self):
        """Whether the parameters with a gradient are those the launch plan was built for (one
        call into the extension; a Python pass over every parameter's .grad where it cannot)."""
        if self._plan is None:
            return False
        if self._grads_handle is not None:
            return FO.grads_match(self._grads_handle)
        return self._signature() == self._plan_signature

    def _build_plan(self):
        launches = {}
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                                       f"(parameter {pindex} of group {gindex}); use dense gradients")
                state = self.state[p]
                if len(state) == 0:
                    self.init_state(group, p, gindex, pindex)
                override = {k: v for k, v in self._override(p, gindex, pindex).items() if k not in _INIT_ONLY_KEYS}
                override_key = repr(sorted(override.items())) if override else None
                eight_bit = state["state1"].dtype == torch.uint8
                key = (gindex, override_key, p.dtype, p.device, eight_bit, state["step"])
                if key not in launches:
                    launches[key] = (override, [], [])
                launches[key][1].append(p)
                launches[key][2].append(state)
        self._plan = [_Launch(key[0], ov, ps, sts) for key, (ov, ps, sts) in launches.items()]
        self._grads_handle = FO.prepare_grads([p for group in self.param_groups for p in group["params"]])
        # the Python pass over every .grad, only where the extension cannot look itself
        self._plan_signature = self._signature() if self._grads_handle is None else None

    def step(*args, **kwargs):
        """Performs one optimization step (all parameters with a gradient): step(closure=None)."""
        self = args[0]
        if _global_optimizer_pre_hooks is None:  # torch's wrapper runs the hooks
            return self._step(*args[1:], **kwargs)
        if torch._C._autograd._profiler_enabled():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return self._step_with_hooks(args, kwargs)
        return self._step_with_hooks(args, kwargs)

    # torch.optim.Optimizer wraps step() to run the step hooks inside a profiler range; that
    # range cost about 20 us of host time a step, profiling or not, which an isolated 8-bit step
    # would wait for. Marked as wrapped, step() runs the same hooks itself and opens the range
    # only while a profiler records.
    step.hooked = _global_optimizer_pre_hooks is not None

    def _step_with_hooks(self, args, kwargs):
        for pre_hook in chain(_global_optimizer_pre_hooks.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"{type(self).__name__}.step: a step pre-hook must return None or a tuple of "
                                       f"(new_args, new_kwargs), got {result}")
                args, kwargs = result
        out = self._step(*args[1:], **kwargs)
        self._optimizer_step_code()
        for post_hook in chain(self._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    @torch.no_grad()
    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.initialized = True
        if not self._plan_is_current():
            self._build_plan()
        for launch in self._plan:
            self._run(launch)
        return loss

    def _run(self, launch):
        group = self.param_groups[launch.gindex]
        config = dict(vars(self.args))
        config.update(group)
        config.update(launch.override)
        # (a gradient that turned sparse since the plan was built is refused by the op)
        # The extension reads the gradients of plain parameters itself (grads None).
        grads = [local(p.grad) for p in launch.owners] if launch.sharded else None
        step = launch.states[0]["step"] + 1
        scale = None
        pc = config["percentile_clipping"]
        if pc < 100:
            grads = grads or [p.grad for p in launch.owners]
            factors = [F.percentile_clipping(g, s["gnorm_vec"], step, pc)[2] for g, s in zip(grads, launch.states)]
            if launch.scale is None:
                launch.scale = torch.ones(len(grads), dtype=torch.float32, device=grads[0].device)
            launch.scale.copy_(torch.stack(factors))
            scale = launch.scale
        if self.is_paged:
            self._prefetch(launch)
        states = launch.states
        two = self.num_states == 2
        kwargs = {}
        if launch.eight_bit:
            kwargs = dict(qmap1=states[0]["qmap1"], qmap2=states[0]["qmap2"] if two else None,
                          absmax1=launch.absmax1, absmax2=launch.absmax2)
        FO.optimizer_update_multi(
            self.optimizer_name, launch.params, grads, launch.state1, launch.state2, step=step, gnorm_scale=scale,
            block_wise=config["block_wise"], buffers=launch.buffers, prepared=launch.prepared, **kwargs,
            **self._hyper(config, step))
        # counted once the update is queued (and not where it was refused)
        for state in launch.states:
            state["step"] = step

    def _prefetch(self, launch):
        """Paged state (state1/state2 in managed memory) back to the GPU before the update."""
        if launch.params[0].device.type == "cuda":
            F.prefetch_to_device(launch.state1 + (launch.state2 or []))

    def _hyper(self, config, step):
        """The kernel's hyper-parameters for this optimizer from the effective settings."""
        name = self.optimizer_name
        h = dict(lr=config["lr"], eps=config.get("eps", 0.0), weight_decay=config.get("weight_decay", 0.0),
                 beta1=0.0, beta2=0.0)
        if name in ("adam", "adamw", "lamb", "lion"):
            h["beta1"], h["beta2"] = config["betas"]
        elif name in ("momentum", "lars"):
            h["beta1"] = config.get("momentum", 0.0)
            h["dampening"] = config.get("dampening", 0.0)
            h["nesterov"] = config.get("nesterov", False)
        elif name == "rmsprop":
            h["beta1"] = config["alpha"]
        elif name == "adagrad":
            h["lr"] = config["lr"] / (1.0 + (step - 1) * config.get("lr_decay", 0.0))
        if name == "lamb":
            h["bias_correction"] = config.get("bias_correction", True)
            h["decoupled_weight_decay"] = config.get("adam_w_mode", True)
        if name in ("lamb", "lars"):
            h["max_unorm"] = config.get("max_unorm", 0.0)
        return h

    # --- state dicts -----------------------------------------------------------------

    def state_dict(self):
        """torch's format, with each parameter's state tensors nested under
        `__bnb_optimizer_quant_state__` as the reference library saves them."""
        sd = super().state_dict()
        params = [p for group in self.param_groups for p in group["params"]]
        packed = {}
        for k, st in sd["state"].items():
            st = to_saved(params[k], dict(st), FO.BLOCKSIZE) if isinstance(k, int) and k < len(params) else dict(st)
            inner = {key: st.pop(key) for key in _NESTED_KEYS if key in st}
            if inner:
                st[QUANT_STATE_KEY] = inner
            packed[k] = st
        sd["state"] = packed
        return sd

    def load_state_dict(self, state_dict):
        """Loads our own state dicts and the reference library's (nested or flat keys, absmax
        made with blocksize 256 or an older 2048). Tensors move to the parameter's device but
        keep their dtype: 8-bit codes, maps and absmax are never cast."""
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
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
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                gindex, pindex = where[k]
                state[p] = self._load_param_state(p, v, self.get_config(gindex, pindex, groups[gindex]))
            else:
                state[k] = v
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            ng = dict(g)
            ng.update({k: v for k, v in sg.items() if k != "params"})
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.__setstate__({"state": state, "param_groups": new_groups})
        self._plan = None

    def _load_param_state(self, p, saved, config):
        st = {}
        for key, val in saved.items():
            if key == QUANT_STATE_KEY:
                for kk, vv in val.items():
                    st[kk] = vv.to(p.device, copy=True) if isinstance(vv, torch.Tensor) else vv
            elif isinstance(val, torch.Tensor) and key != "step":
                st[key] = val.to(p.device, copy=True)
            else:
                st[key] = val
        if isinstance(st.get("step"), torch.Tensor):
            st["step"] = int(st["step"].item())
        shard = local(p)
        st = from_saved(p, st, -(-shard.numel() // FO.BLOCKSIZE) if config["block_wise"] else 1)
        if "state1" in st and st["state1"].dtype == torch.uint8:
            for i in ("1", "2"):
                if f"absmax{i}" in st:
                    self._reblock(st, i, local(p).numel(), config["block_wise"])
        return st

    def _reblock(self, st, i, n, block_wise):
        """Brings a loaded 8-bit state to our layout (absmax per 256 values, or one per
        tensor), inferring the blocksize it was saved with from the length of its absmax."""
        absmax = st[f"absmax{i}"].reshape(-1).float()
        want = -(-n // FO.BLOCKSIZE) if block_wise else 1
        st[f"absmax{i}"] = absmax
        if absmax.numel() == want or n == 0:
            return
        code, q = st[f"qmap{i}"], st[f"state{i}"]
        if absmax.numel() == 1:
            values = code[q.long()] * absmax
        else:
            bs = next((b for b in _CHECKPOINT_BLOCKSIZES if -(-n // b) == absmax.numel()), None)
            if bs is None:
                raise ValueError(f"load_state_dict: state{i} has {absmax.numel()} absmax values for {n} elements; "
                                 "no supported blocksize gives that many blocks")
            values = F.dequantize_blockwise(q, absmax=absmax, code=code, blocksize=bs)
        st[f"absmax{i}"] = torch.zeros(want, dtype=torch.float32, device=q.device)
        self._quantize_into(st, i, values.reshape(q.shape), block_wise)


class _StateOptimizer(Optimizer8bit):
    num_states = 1

    def __init__(self, optimizer_name, params, defaults, optim_bits=32, args=None, min_8bit_size=4096,
                 percentile_clipping=100, block_wise=True, max_unorm=0.0, is_paged=False):
        if optimizer_name not in FO.ALGORITHMS:
            raise ValueError(f"unknown optimizer {optimizer_name!r}")
        if not 0.0 <= defaults.get("lr", 0.0):
            raise ValueError(f"Invalid learning rate: {defaults['lr']}")
        self.optimizer_name = optimizer_name
        self.args = _args_namespace(args, optim_bits=optim_bits, min_8bit_size=min_8bit_size,
                                    percentile_clipping=percentile_clipping, block_wise=block_wise,
                                    max_unorm=max_unorm)
        super().__init__(params, defaults, self.args.optim_bits, is_paged)


class Optimizer1State(_StateOptimizer):
    """Optimizers with one state tensor (momentum, RMSprop, Adagrad, Lion, LARS)."""

    num_states = 1

    def __init__(self, optimizer_name, params, lr=1e-3, betas=(0.9, 0.0), eps=1e-8, weight_decay=0.0, optim_bits=32,
                 args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True, max_unorm=0.0,
                 skip_zeros=False, is_paged=False, extra=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **(extra or {}))
        super().__init__(optimizer_name, params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, max_unorm, is_paged)


class Optimizer2State(_StateOptimizer):
    """Optimizers with two state tensors (Adam, AdamW, LAMB)."""

    num_states = 2

    def __init__(self, optimizer_name, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 optim_bits=32, args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True,
                 max_unorm=0.0, skip_zeros=False, is_paged=False, extra=None):
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **(extra or {}))
        super().__init__(optimizer_name, params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, max_unorm, is_paged)
