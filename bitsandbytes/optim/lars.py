"""LARS (You et al., "Large Batch Training of Convolutional Networks"): momentum SGD with a
trust ratio. `LARS*` run on the fused kernels with 32-bit or 8-bit state; `PytorchLARS` is
the same algorithm in plain torch operations, a readable reference to check them against."""
import torch

from .optimizer import _StateOptimizer
from .variants import variant


class LARS(_StateOptimizer):
    """LARS (You et al.): momentum SGD whose update is scaled down to max_unorm * ||p|| where
    its norm is larger (the trust ratio, capped at 1). 8-bit state is tensor-wise by default
    (block_wise=False, `max1`), the reference library's only layout for LARS."""

    betas_keys = ("momentum", "dampening")  # the reference keeps them in betas

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, optim_bits=32, args=None,
                 min_8bit_size=4096, percentile_clipping=100, max_unorm=0.02, block_wise=False, is_paged=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__("lars", params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, max_unorm, is_paged)


LARS8bit = variant(LARS, "LARS8bit", optim_bits=8, drop=("optim_bits",),
                   keyword_only=("block_wise", "is_paged"))
LARS32bit = variant(LARS, "LARS32bit", optim_bits=32, drop=("optim_bits",),
                    keyword_only=("block_wise", "is_paged"))


class PytorchLARS(torch.optim.Optimizer):
    """LARS in plain torch: g' = g + wd * p; buf = momentum * buf + (1 - dampening) * g'
    (buf = g' at the first step); update = g' + momentum * buf with nesterov, else buf (g'
    without momentum); where ||update|| > max_unorm * ||p|| the update is scaled to that norm;
    p -= lr * update. max_unorm=0 gives torch.optim.SGD's step."""

    def __init__(self, params, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False, max_unorm=0.02):
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                            ("max_unorm", max_unorm)):
            if value < 0.0:
                raise ValueError(f"PytorchLARS: {name} must be >= 0, got {value}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("PytorchLARS: nesterov needs a momentum > 0 and dampening = 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        max_unorm=max_unorm)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, max_unorm = group["momentum"], group["max_unorm"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"] != 0:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                update = d_p
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
                    update = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                scale = 1.0
                if max_unorm > 0.0:
                    # the trust ratio: the update may not be longer than max_unorm * ||p||
                    pnorm = torch.linalg.vector_norm(p.detach().float())
                    unorm = torch.linalg.vector_norm(update.float())
                    if unorm > max_unorm * pnorm:
                        scale = (max_unorm * pnorm / unorm).item()
                p.add_(update, alpha=-group["lr"] * scale)
        return loss
