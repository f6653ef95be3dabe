"""Adam with 32-bit, 8-bit or 4-bit state, optionally paged (AdamW: adamw.py)."""
from .optimizer import Optimizer2State
from .variants import variant


def check_amsgrad(amsgrad):
    if amsgrad:
        raise NotImplementedError("amsgrad is not supported by the 8-bit/32-bit fused optimizers")


class Adam(Optimizer2State):
    """Adam (Kingma & Ba). weight_decay adds wd * p to the gradient, as torch.optim.Adam does;
    use AdamW for decoupled weight decay."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, optim_bits=32,
                 args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True, is_paged=False):
        check_amsgrad(amsgrad)
        super().__init__("adam", params, lr, betas, eps, weight_decay, optim_bits, args, min_8bit_size,
                         percentile_clipping, block_wise, is_paged=is_paged)


Adam8bit = variant(Adam, "Adam8bit", optim_bits=8, is_paged=False)
Adam32bit = variant(Adam, "Adam32bit", optim_bits=32, is_paged=False)
Adam4bit = variant(Adam, "Adam4bit", optim_bits=4, is_paged=False)
PagedAdam = variant(Adam, "PagedAdam", is_paged=True)
PagedAdam8bit = variant(Adam, "PagedAdam8bit", optim_bits=8, is_paged=True)
PagedAdam4bit = variant(Adam, "PagedAdam4bit", optim_bits=4, is_paged=True)
PagedAdam32bit = variant(Adam, "PagedAdam32bit", optim_bits=32, is_paged=True)
