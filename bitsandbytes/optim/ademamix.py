"""AdEMAMix (Pagliardini et al. 2024, "The AdEMAMix Optimizer: Better, Faster, Older"): Adam
whose update adds a slow EMA of the gradient, weighted by alpha, to the bias-corrected fast one:

    m1 = b1 m1 + (1 - b1) g        m2 = b3 m2 + (1 - b3) g        nu = b2 nu + (1 - b2) g^2
    p  = p (1 - lr wd) - lr (m1 / (1 - b1^t) + alpha m2) / (sqrt(nu / (1 - b2^t)) + eps)

with optional warm-ups: alpha rises linearly over t_alpha steps, and beta3 rises from beta1
over t_beta3 steps (functional/algorithms.py computes both on the host at each step). The state
is the reference library's, so that checkpoints interchange: `state1` holds m1 and m2 stacked
([2, *shape]), `state2` holds nu; 8-bit state keeps `absmax1` [2, blocks] and `absmax2`
[blocks] (256 values a block), m1 and m2 with the signed dynamic map, nu with the unsigned one.
"""
import torch

from ..functional.algorithms import scheduled_alpha, scheduled_beta3
from .hyper_checks import betas_of
from .optimizer import Optimizer2State
from .variants import variant


class AdEMAMix(Optimizer2State):
    """AdEMAMix with 32-bit or 8-bit (block-wise) state, optionally paged."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0, t_alpha=None, t_beta3=None, eps=1e-8,
                 weight_decay=1e-2, optim_bits=32, min_8bit_size=4096, is_paged=False):
        betas = betas_of(betas, type(self).__name__)
        if len(betas) != 3:
            raise ValueError(f"{type(self).__name__}: betas must hold 3 values (beta1, beta2, beta3), got {betas!r}")
        for name, t in (("t_alpha", t_alpha), ("t_beta3", t_beta3)):
            if t is not None and not t > 0:
                raise ValueError(f"{type(self).__name__}: {name} must be None or a positive number of steps, got {t}")
        if t_beta3 is not None and (betas[0] == 0.0 or betas[2] == 0.0):
            raise ValueError(f"{type(self).__name__}: the beta3 schedule (t_beta3) needs betas[0] and betas[2] > 0 "
                             f"(it interpolates their logarithms), got {betas!r}")
        super().__init__("ademamix", params, lr, betas, eps, weight_decay, optim_bits, None, min_8bit_size, 100, True,
                         is_paged=is_paged, alpha=alpha, t_alpha=t_alpha, t_beta3=t_beta3)


AdEMAMix8bit = variant(AdEMAMix, "AdEMAMix8bit", optim_bits=8, drop=("optim_bits",))
AdEMAMix32bit = variant(AdEMAMix, "AdEMAMix32bit", optim_bits=32, drop=("optim_bits",))
PagedAdEMAMix = variant(AdEMAMix, "PagedAdEMAMix", is_paged=True, drop=("is_paged",))
PagedAdEMAMix8bit = variant(AdEMAMix, "PagedAdEMAMix8bit", optim_bits=8, is_paged=True,
                            drop=("optim_bits", "is_paged"))
PagedAdEMAMix32bit = variant(AdEMAMix, "PagedAdEMAMix32bit", optim_bits=32, is_paged=True,
                             drop=("optim_bits", "is_paged"))


class _ReferenceAdEMAMix(torch.optim.Optimizer):
    """AdEMAMix in plain torch, one parameter at a time, in the parameter's dtype: the
    definition the fused optimizers are compared with. Its state (`m1_m2` stacked, `nu`) is
    laid out as AdEMAMix's state1 and state2."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0, eps=1e-8, weight_decay=1e-2,
                 t_beta3=None, t_alpha=None):
        defaults = dict(lr=lr, betas=betas, alpha=alpha, eps=eps, weight_decay=weight_decay, t_beta3=t_beta3,
                        t_alpha=t_alpha)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            t = group["step"]
            beta1, beta2, beta3 = group["betas"]
            alpha = scheduled_alpha(group["alpha"], group["t_alpha"], t)
            beta3 = scheduled_beta3(beta1, beta3, group["t_beta3"], t)
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["m1_m2"] = p.new_zeros((2, *p.shape))
                    state["nu"] = torch.zeros_like(p)
                m1, m2, nu = state["m1_m2"][0], state["m1_m2"][1], state["nu"]
                m1.lerp_(g, 1 - beta1)
                m2.lerp_(g, 1 - beta3)
                nu.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (nu / (1 - beta2 ** t)).sqrt_().add_(eps)
                update = (m1 / (1 - beta1 ** t) + alpha * m2) / denom
                p.mul_(1 - lr * wd).add_(update, alpha=-lr)
        return loss
