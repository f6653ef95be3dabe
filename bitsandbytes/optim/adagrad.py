"""Adagrad (torch.optim.Adagrad's update)."""
from .optimizer import _StateOptimizer
from .variants import variant


class Adagrad(_StateOptimizer):
    """Adagrad: s += g^2; p -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(s) + eps)."""

    betas_keys = ()  # the reference's groups carry betas (0, 0)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 optim_bits=32, args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True,
                 is_paged=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__("adagrad", params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, 0.0, is_paged)


Adagrad8bit = variant(Adagrad, "Adagrad8bit", optim_bits=8, keyword_only=("is_paged",))
Adagrad32bit = variant(Adagrad, "Adagrad32bit", optim_bits=32, keyword_only=("is_paged",))
