"""The launch plan of a step: the parameters with a gradient, grouped into launches of one
multi-tensor update each (same group, overrides, dtype, device, state kind, code maps and step
count). It is rebuilt only when the set of parameters with a gradient changes, or the state or
groups are replaced."""
import torch

from .._extension import GradsRecord
from ..functional.optimizer import prepare_update
from . import config as C
from .sharding import local
from .state import maps_key, scale_of, state_bits


class Launch:
    """One multi-tensor update of a step: the parameters and their states, fixed until the plan
    is rebuilt."""

    def __init__(self, gindex, override, params, states):
        self.gindex = gindex
        self.override = override
        self.owners = params  # the parameters themselves (DTensors under FSDP2)
        self.params = [local(p) for p in params]  # what the kernel updates: the local shards
        self.sharded = any(a is not b for a, b in zip(self.params, params))
        # A parameter that is not contiguous (a transposed view, say) is updated in a contiguous
        # copy, refreshed from it before the update and written back after (strided_in/out):
        # the kernels walk a tensor's memory in order, as its state does.
        self.strided = [i for i, t in enumerate(self.params) if not t.is_contiguous()]
        for i in self.strided:
            self.params[i] = self.params[i].detach().contiguous()
        self.states = states
        self.quantized = states[0]["state1"].dtype == torch.uint8  # 8-bit or 4-bit codes
        self.state1 = [s["state1"] for s in states]
        self.state2 = [s["state2"] for s in states] if "state2" in states[0] else []
        self.absmax1 = [scale_of(s, 1) for s in states] if self.quantized else []
        self.absmax2 = [scale_of(s, 2) for s in states] if self.quantized and self.state2 else []
        # these tensors stay the same until the plan is rebuilt: hand them to the extension once
        self.prepared = prepare_update(self.params, self.state1, self.state2, self.absmax1, self.absmax2)

    def grads(self):
        """The gradients to pass to the kernel, or None where it reads each parameter's .grad."""
        if not (self.sharded or self.strided):
            return None
        grads = [local(p.grad) for p in self.owners]
        for i in self.strided:
            grads[i] = grads[i].contiguous()
        return grads

    def strided_in(self):
        for i in self.strided:
            self.params[i].copy_(local(self.owners[i]))

    def strided_out(self):
        for i in self.strided:
            local(self.owners[i]).copy_(self.params[i])


class Plan:
    """The launches of a step, and the record of which parameters had a gradient when it was
    built."""

    def __init__(self, optimizer):
        launches = {}
        for gindex, group in enumerate(optimizer.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients "
                                       f"(parameter {pindex} of group {gindex}); use dense gradients")
                state = optimizer.state[p]
                if len(state) == 0:
                    optimizer.init_state(group, p, gindex, pindex)
                override, override_key = C.launch_overrides(optimizer, p, gindex, pindex)
                key = (gindex, override_key, p.dtype, p.device, state_bits(state), maps_key(state), state["step"])
                if key not in launches:
                    launches[key] = (override, [], [])
                launches[key][1].append(p)
                launches[key][2].append(state)
        self.launches = [Launch(key[0], ov, ps, sts) for key, (ov, ps, sts) in launches.items()]
        self.grads = GradsRecord([p for group in optimizer.param_groups for p in group["params"]])
        self.version = optimizer.state._version  # any change of optimizer.state bumps it
        self.built_at = self.version.value

    def __iter__(self):
        return iter(self.launches)

    def __len__(self):
        return len(self.launches)

    def is_current(self):
        """Whether the parameters with a gradient, and the state, are those the plan was built for."""
        return self.version.value == self.built_at and self.grads.matches()
