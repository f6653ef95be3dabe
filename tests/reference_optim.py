"""Plain-torch references of the optimizer algorithms, written from their papers and torch's
documentation, independent of the kernels. Parameters are kept as an fp32 master copy
rounded to the parameter dtype after every step, as a fused kernel with fp32 arithmetic does.
"""
import torch


class ReferenceOptimizer:
    """name: adam, adamw, sgd, rmsprop, adagrad, lion, lars, lamb. hyper: the optimizer's
    keyword arguments (lr, betas, eps, weight_decay, momentum, ...)."""

    def __init__(self, name, params, **hyper):
        self.name = name
        self.params = list(params)
        self.h = hyper
        self.state = [dict(step=0, m=torch.zeros_like(p, dtype=torch.float32),
                           v=torch.zeros_like(p, dtype=torch.float32)) for p in self.params]
        if name == "adagrad":
            for s in self.state:
                s["m"].fill_(hyper.get("initial_accumulator_value", 0.0))

    @torch.no_grad()
    def step(self, grad_scales=None):
        for i, (p, s) in enumerate(zip(self.params, self.state)):
            if p.grad is None:
                continue
            g = p.grad.float()
            if grad_scales is not None:
                g = g * grad_scales[i]
            s["step"] += 1
            new = self._update(p.float(), g, s)
            p.copy_(new.to(p.dtype))

    def _update(self, p, g, s):
        h, t, name = self.h, s["step"], self.name
        lr, wd = h.get("lr", 1e-3), h.get("weight_decay", 0.0)
        m, v = s["m"], s["v"]
        decoupled = name in ("adamw", "lion") or (name == "lamb" and h.get("adam_w_mode", True))
        if wd and not decoupled:
            g = g + wd * p
        if name in ("adam", "adamw", "lamb"):
            b1, b2 = h.get("betas", (0.9, 0.999))
            eps = h.get("eps", 1e-8)
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            bc1, bc2 = (1 - b1 ** t, 1 - b2 ** t) if h.get("bias_correction", True) else (1.0, 1.0)
            u = (m / bc1) / (v.sqrt() / bc2 ** 0.5 + eps)
        elif name in ("sgd", "lars"):
            mom, damp = h.get("momentum", 0.0), h.get("dampening", 0.0)
            if t == 1:
                m.copy_(g)
            else:
                m.mul_(mom).add_((1 - damp) * g)
            u = g + mom * m if h.get("nesterov", False) else m.clone()
        elif name == "rmsprop":
            alpha, eps = h.get("alpha", 0.99), h.get("eps", 1e-8)
            m.mul_(alpha).add_((1 - alpha) * g * g)
            u = g / (m.sqrt() + eps)
        elif name == "adagrad":
            eps = h.get("eps", 1e-10)
            lr = lr / (1 + (t - 1) * h.get("lr_decay", 0.0))
            m.add_(g * g)
            u = g / (m.sqrt() + eps)
        elif name == "lion":
            b1, b2 = h.get("betas", (0.9, 0.99))
            u = torch.sign(b1 * m + (1 - b1) * g)
            m.mul_(b2).add_((1 - b2) * g)
        else:
            raise ValueError(name)
        trust = 1.0
        max_unorm = h.get("max_unorm", {"lars": 0.02, "lamb": 1.0}.get(name, 0.0))
        if name in ("lars", "lamb") and max_unorm > 0:
            unorm, pnorm = u.norm(), p.norm()
            if unorm > max_unorm * pnorm:
                trust = (max_unorm * pnorm / unorm).item()
        decay = 1 - lr * wd if decoupled else 1.0
        return p * decay - lr * trust * u
