"""The hyper-parameter checks torch.optim makes in its constructors, for ours: a ValueError
naming the argument (a TypeError where it is not a number), raised when the optimizer is built
or a param group added (never in the step)."""
import numbers

import torch

# Settings that must be >= 0 (NaN is refused too: `not 0 <= nan`).
NON_NEGATIVE = ("lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay", "initial_accumulator_value",
                "max_unorm")


def _number(value, name, owner):
    """value as a float: a real number or a one-value tensor (torch.optim takes a tensor lr)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def check_hyperparameters(settings, owner="optimizer", num_betas=None):
    """Raises a ValueError naming the first setting of `settings` (a param group, its defaults or
    an override) that torch.optim would refuse: a negative value of NON_NEGATIVE, or a beta
    outside [0, 1); a TypeError for a value that is not a number. num_betas: how many betas the
    algorithm reads (more are allowed, fewer are refused)."""
    for name in NON_NEGATIVE:
        if name not in settings:
            continue
        value = settings[name]
        if not 0.0 <= _number(value, name, owner):
            raise ValueError(f"{owner}: invalid {name} value: {value} ({name} must be >= 0)")
    betas = settings.get("betas")
    if betas is not None:
        if not isinstance(betas, (tuple, list)):
            raise TypeError(f"{owner}: betas must be a tuple of numbers, got {type(betas).__name__} {betas!r}")
        if num_betas is not None and len(betas) < num_betas:
            raise ValueError(f"{owner}: betas must hold {num_betas} values, got {tuple(betas)}")
        for i, beta in enumerate(betas):
            if not 0.0 <= _number(beta, f"betas[{i}]", owner) < 1.0:
                raise ValueError(f"{owner}: invalid beta parameter at index {i}: {beta} (betas must be in [0, 1))")


def betas_of(betas, owner="optimizer"):
    """`betas` as given, or read from a string such as "(0.9, 0.995)": fairseq passes its
    command line's betas so, and the optimizers of the library we replace accept it."""
    if not isinstance(betas, str):
        return betas
    try:
        return tuple(float(b) for b in betas.replace("(", "").replace(")", "").split(",") if b.strip())
    except ValueError:
        raise ValueError(f"{owner}: betas {betas!r} is not a list of numbers") from None
