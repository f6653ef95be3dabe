"""SGD with momentum (torch.optim.SGD's update); LARS, which adds a trust ratio, is in lars.py."""
from .hyper_checks import check_hyperparameters
from .optimizer import _StateOptimizer
from .variants import variant


class SGD(_StateOptimizer):
    """SGD with momentum, dampening, nesterov and L2 weight decay, as torch.optim.SGD."""

    betas_keys = ("momentum", "dampening")  # the reference keeps them in betas

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False, optim_bits=32, args=None,
                 min_8bit_size=4096, percentile_clipping=100, block_wise=True, is_paged=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        check_hyperparameters(defaults, type(self).__name__)  # torch's order: the values, then nesterov
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__("momentum", params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, 0.0, is_paged)


SGD8bit = variant(SGD, "SGD8bit", optim_bits=8, drop=("optim_bits",), keyword_only=("is_paged",))
SGD32bit = variant(SGD, "SGD32bit", optim_bits=32, drop=("optim_bits",), keyword_only=("is_paged",))
