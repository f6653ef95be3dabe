"""The hyper-parameter checks torch.optim makes in its constructors, for ours: a ValueError
naming the argument, raised once when the optimizer is built (never in the step)."""

# Settings that must be >= 0 (NaN is refused too: `not 0 <= nan`).
NON_NEGATIVE = ("lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay", "initial_accumulator_value")


def check_hyperparameters(settings, owner="optimizer"):
    """Raises a ValueError naming the first setting of `settings` (a param group's defaults or
    an override) that torch.optim would refuse: a negative value of NON_NEGATIVE, or a beta
    outside [0, 1)."""
    for name in NON_NEGATIVE:
        value = settings.get(name)
        if value is not None and not 0.0 <= value:
            raise ValueError(f"{owner}: invalid {name} value: {value} ({name} must be >= 0)")
    betas = settings.get("betas")
    if betas is not None:
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
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
