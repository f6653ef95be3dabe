"""The settings a GlobalOptimManager override may set: every setting an optimizer of
bitsandbytes.optim reads per parameter (its group's settings and the library-wide ones).
A key outside this set is ignored by every optimizer: dropped with a warning that names it
(code written for the library we replace passes some, such as is_sparse in its documentation's
example, which that library stores and never reads; a typo is still seen)."""
import warnings

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


def known_override_keys(config, where):
    """`config` without the keys that no optimizer reads, with a UserWarning naming them."""
    unknown = sorted(str(k) for k in config if k not in OVERRIDE_KEYS)
    if not unknown:
        return dict(config)
    warnings.warn(f"{where}: ignoring optimizer setting(s) {', '.join(map(repr, unknown))}, which no optimizer "
                  f"reads; the settings that can be overridden are {', '.join(sorted(OVERRIDE_KEYS))}",
                  UserWarning, stacklevel=4)  # the line that called the manager
    return {k: v for k, v in config.items() if k in OVERRIDE_KEYS}
