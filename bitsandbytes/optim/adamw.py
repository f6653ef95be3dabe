"""AdamW with 32-bit, 8-bit or 4-bit state, optionally paged."""
from .adam import check_amsgrad
from .optimizer import Optimizer2State
from .variants import variant


class AdamW(Optimizer2State):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, p *= 1 - lr * wd."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 optim_bits=32, args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True,
                 is_paged=False):
        check_amsgrad(amsgrad)
        super().__init__("adamw", params, lr, betas, eps, weight_decay, optim_bits, args, min_8bit_size,
                         percentile_clipping, block_wise, is_paged=is_paged)


AdamW8bit = variant(AdamW, "AdamW8bit", optim_bits=8, is_paged=False)
AdamW32bit = variant(AdamW, "AdamW32bit", optim_bits=32, is_paged=False)
AdamW4bit = variant(AdamW, "AdamW4bit", optim_bits=4, is_paged=False)
PagedAdamW = variant(AdamW, "PagedAdamW", is_paged=True)
PagedAdamW8bit = variant(AdamW, "PagedAdamW8bit", optim_bits=8, is_paged=True)
PagedAdamW4bit = variant(AdamW, "PagedAdamW4bit", optim_bits=4, is_paged=True)
PagedAdamW32bit = variant(AdamW, "PagedAdamW32bit", optim_bits=32, is_paged=True)
