"""What defines each optimizer algorithm, in one table: the kernel that runs it, how many state
tensors it keeps and which are signed, its weight decay, and how its settings become the
kernel's hyper-parameters. bitsandbytes.optim and bitsandbytes.functional both read it.
"""
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


def _momentum(config, step):
    return dict(beta1=config.get("momentum", 0.0), dampening=config.get("dampening", 0.0),
                nesterov=config.get("nesterov", False))


def _lars(config, step):
    h = _momentum(config, step)
    h["max_unorm"] = config.get("max_unorm", 0.0)
    return h


def _rmsprop(config, step):
    return dict(beta1=config["alpha"])


def _adagrad(config, step):
    return dict(lr=config["lr"] / (1.0 + (step - 1) * config.get("lr_decay", 0.0)))


@dataclass(frozen=True)
class Algorithm:
    """kernel: the op's algorithm; num_states: state tensors (state1, state2); signed: whether each
    state holds signed values (a signed 8-bit map) or non-negative ones (squares: an unsigned map);
    decoupled: weight decay as p *= 1 - lr * wd rather than g += wd * p; hyper(config, step): the
    kernel hyper-parameters this algorithm takes from its settings beyond lr, eps, weight_decay."""
    kernel: str
    num_states: int
    signed: tuple
    decoupled: bool
    hyper: Callable


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
             beta1=0.0, beta2=0.0)
    h.update(algorithm(optimizer_name).hyper(config, step))
    return h
