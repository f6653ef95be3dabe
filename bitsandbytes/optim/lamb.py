"""LAMB (You et al.): Adam whose update is scaled down to max_unorm * ||p|| where its norm
is larger (the trust ratio, capped at max_unorm)."""
from .optimizer import _StateOptimizer
from .variants import variant


class LAMB(_StateOptimizer):
    """LAMB. adam_w_mode=True decays weights decoupled (p *= 1 - lr * wd), else as L2.
    8-bit state is tensor-wise by default (block_wise=False, `max1`/`max2`), as the reference
    library's LAMB keeps it, so that checkpoints go both ways."""

    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, adam_w_mode=True, optim_bits=32, args=None, min_8bit_size=4096,
                 percentile_clipping=100, block_wise=False, max_unorm=1.0, is_paged=False):
        if amsgrad:
            raise NotImplementedError("amsgrad is not supported by LAMB")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction,
                        adam_w_mode=adam_w_mode)
        super().__init__("lamb", params, defaults, optim_bits, args, min_8bit_size, percentile_clipping, block_wise,
                         max_unorm, is_paged)


LAMB8bit = variant(LAMB, "LAMB8bit", optim_bits=8, drop=("optim_bits",), keyword_only=("is_paged",))
LAMB32bit = variant(LAMB, "LAMB32bit", optim_bits=32, drop=("optim_bits",), keyword_only=("is_paged",))
