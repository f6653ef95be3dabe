"""Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms"): the sign of an
interpolation of momentum and gradient, decoupled weight decay."""
from .optimizer import Optimizer1State
from .variants import variant


class Lion(Optimizer1State):
    """Lion: p = p * (1 - lr * wd) - lr * sign(b1 * m + (1 - b1) * g); m = b2 * m + (1 - b2) * g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0, optim_bits=32, args=None,
                 min_8bit_size=4096, percentile_clipping=100, block_wise=True, is_paged=False):
        super().__init__("lion", params, lr, betas, 0.0, weight_decay, optim_bits, args, min_8bit_size,
                         percentile_clipping, block_wise, is_paged=is_paged)


Lion8bit = variant(Lion, "Lion8bit", optim_bits=8, drop=("optim_bits",))
Lion32bit = variant(Lion, "Lion32bit", optim_bits=32, drop=("optim_bits",))
PagedLion = variant(Lion, "PagedLion", is_paged=True, drop=("is_paged",))
PagedLion8bit = variant(Lion, "PagedLion8bit", optim_bits=8, is_paged=True, drop=("optim_bits", "is_paged"))
PagedLion32bit = variant(Lion, "PagedLion32bit", optim_bits=32, is_paged=True,
                         drop=("optim_bits", "is_paged"))
