"""The settings a GlobalOptimManager override may set: every setting an optimizer of
bitsandbytes.optim reads per parameter (its group's settings and the library-wide ones).
A key outside this set would be ignored by every optimizer, so it is refused instead."""

LIBRARY_WIDE = frozenset({"optim_bits", "min_8bit_size", "percentile_clipping", "block_wise", "max_unorm"})

GROUP_SETTINGS = frozenset({
    "lr", "betas", "eps", "weight_decay",  # every optimizer
    "momentum", "dampening", "nesterov",  # SGD, LARS
    "alpha", "centered",  # RMSprop
    "lr_decay", "initial_accumulator_value",  # Adagrad
    "bias_correction", "adam_w_mode",  # LAMB
    "t_alpha", "t_beta3",  # AdEMAMix (and alpha, above)
})

OVERRIDE_KEYS = LIBRARY_WIDE | GROUP_SETTINGS


def check_override_keys(config, where):
    """Raises a ValueError naming each key of `config` that no optimizer reads."""
    unknown = sorted(str(k) for k in config if k not in OVERRIDE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown optimizer setting(s) {', '.join(map(repr, unknown))}; "
                         f"the settings that can be overridden are {', '.join(sorted(OVERRIDE_KEYS))}")
