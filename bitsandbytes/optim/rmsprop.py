"""RMSprop (torch.optim.RMSprop's update without momentum or centering)."""
from .hyper_checks import check_hyperparameters
from .optimizer import _StateOptimizer
from .variants import variant


class RMSprop(_StateOptimizer):
    """RMSprop: v = alpha * v + (1 - alpha) * g^2; p -= lr * g / (sqrt(v) + eps)."""

    betas_keys = ("alpha", "momentum")  # the reference keeps them in betas

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 optim_bits=32, args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True,
                 is_paged=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)
        # a value torch refuses is a ValueError before any "not supported"
        check_hyperparameters(defaults, type(self).__name__)
        if momentum != 0:
            raise NotImplementedError("RMSprop with momentum is not supported")
        if centered:
            raise NotImplementedError("centered RMSprop is not supported")
        super().__init__("rmsprop", params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, 0.0, is_paged)

    def check_new_group(self, param_group, where):
        if param_group.get("momentum", 0) != 0 or param_group.get("centered"):
            raise NotImplementedError(f"{where}: RMSprop with momentum or centering is not supported")

    def check_loaded_group(self, group):
        # a reference checkpoint keeps momentum in betas[1]
        if group.get("momentum", 0) != 0:
            raise NotImplementedError(f"load_state_dict: RMSprop with momentum is not supported; the state dict's "
                                      f"param group has momentum (betas[1]) = {group['momentum']}")


RMSprop8bit = variant(RMSprop, "RMSprop8bit", optim_bits=8, drop=("optim_bits",), keyword_only=("is_paged",))
RMSprop32bit = variant(RMSprop, "RMSprop32bit", optim_bits=32, drop=("optim_bits",),
                       keyword_only=("is_paged",))
