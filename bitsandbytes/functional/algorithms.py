"""What defines each optimizer algorithm, in one table: the kernel that runs it, how many state
tensors it keeps and which are signed, its weight decay, and how its settings become the
kernel's hyper-parameters. bitsandbytes.optim and bitsandbytes.functional both read it.
"""
import math
from dataclasses import dataclass
from typing import Callable

BLOCKSIZE = 256  # values per absmax of the block-wise 8-bit state
BLOCKSIZE_4BIT = 128  # values per absmax of the 4-bit state (always block-wise)
# The optimizers whose state may be 4-bit (the kernels' 4-bit update is Adam's).
FOUR_BIT_OPTIMIZERS = frozenset({"adam", "adamw"})


def _betas(config, step):
    return dict(beta1=config["betas"][0], beta2=config["betas"][1])


def _lamb(config, step):
    h = _betas(config, step)
    h["bias_correction"] = config.get("bias_correction", True)
    h["decoupled_weight_decay"] = config.get("adam_w_mode", True)
    h["max_unorm"] = config.get("max_unorm", 0.0)
    return h


def scheduled_alpha(alpha, t_alpha, step):
    """AdEMAMix's alpha at `step`: a linear warm-up from 0 over t_alpha steps (None: constant)."""
    return alpha if t_alpha is None else min(step * alpha / t_alpha, alpha)


def scheduled_beta3(beta1, beta3, t_beta3, step):
    """AdEMAMix's beta3 at `step`: over t_beta3 steps (None: constant) from beta1 to beta3 such
    that the slow EMA's half-life grows linearly (Pagliardini et al. 2024, eq. 4)."""
    if t_beta3 is None:
        return beta3
    ln1, ln3 = math.log(beta1), math.log(beta3)
    s = step / t_beta3
    return min(math.exp(ln1 * ln3 / ((1 - s) * ln3 + s * ln1)), beta3)


def _ademamix(config, step):
    # computed on the host from the step count it keeps: the kernel reads plain floats
    beta1, beta2, beta3 = config["betas"]
    return dict(beta1=beta1, beta2=beta2,
                beta3=scheduled_beta3(beta1, beta3, config.get("t_beta3"), step),
                alpha=scheduled_alpha(config["alpha"], config.get("t_alpha"), step))


def _momentum(config, step):
    return dict(beta1=config.get("momentum", 0.0), dampening=config.get("dampening", 0.0),
                nesterov=config.get("nesterov", False))


def _lars(config, step):
    h = _momentum(config, step)
    h["max_unorm"] = config.get("max_unorm", 0.0)
    return h


def _rmsprop(config, step):
    # momentum and centering are refused when the optimizer is built; a scheduler may still set
    # momentum on a group later (OneCycleLR does, where the defaults hold "momentum"): refused
    # here rather than ignored, which would step without the momentum torch's RMSprop applies
    if config.get("momentum", 0) != 0 or config.get("centered", False):
        raise NotImplementedError(f"RMSprop with momentum or centering is not supported; a param group has "
                                  f"momentum = {config.get('momentum', 0)}, centered = {config.get('centered', False)} "
                                  "(OneCycleLR sets momentum unless cycle_momentum=False)")
    return dict(beta1=config["alpha"])


def _adagrad(config, step):
    return dict(lr=config["lr"] / (1.0 + (step - 1) * config.get("lr_decay", 0.0)))


@dataclass(frozen=True)
class Algorithm:
    """kernel: the op's algorithm; num_states: state tensors (state1, state2); signed: whether each
    state holds signed values (a signed 8-bit map) or non-negative ones (squares: an unsigned map);
    decoupled: weight decay as p *= 1 - lr * wd rather than g += wd * p; hyper(config, step): the
    kernel hyper-parameters this algorithm takes from its settings beyond lr, eps, weight_decay;
    stacked1: values of state1 per parameter value (AdEMAMix keeps its fast and slow EMAs
    stacked there, [2, *shape], both with the signed map)."""
    kernel: str
    num_states: int
    signed: tuple
    decoupled: bool
    hyper: Callable
    stacked1: int = 1


ALGORITHMS = {
    "adam": Algorithm("adam", 2, (True, False), False, _betas),
    "adamw": Algorithm("adam", 2, (True, False), True, _betas),
    "lamb": Algorithm("adam", 2, (True, False), True, _lamb),
    "momentum": Algorithm("momentum", 1, (True,), False, _momentum),
    "sgd": Algorithm("momentum", 1, (True,), False, _momentum),
    "lars": Algorithm("momentum", 1, (True,), False, _lars),
    "rmsprop": Algorithm("rmsprop", 1, (False,), False, _rmsprop),
    "adagrad": Algorithm("adagrad", 1, (False,), False, _adagrad),
    "lion": Algorithm("lion", 1, (True,), True, _betas),
    "ademamix": Algorithm("ademamix", 2, (True, False), True, _ademamix, stacked1=2),
}


def algorithm(optimizer_name):
    """The table entry of `optimizer_name`; a ValueError naming the known ones otherwise."""
    try:
        return ALGORITHMS[optimizer_name]
    except (KeyError, TypeError):
        raise ValueError(f"optimizer_name must be one of {sorted(ALGORITHMS)}, got {optimizer_name!r}") from None


def kernel_hyper(optimizer_name, config, step):
    """The keyword arguments of optimizer_update_multi for one step of `optimizer_name` with the
    effective settings `config` (lr, eps, weight_decay and the algorithm's own)."""
    h = dict(lr=config["lr"], eps=config.get("eps", 0.0), weight_decay=config.get("weight_decay", 0.0),
             beta1=0.0, beta2=0.0, beta3=0.0, alpha=0.0)
    h.update(algorithm(optimizer_name).hyper(config, step))
    return h
