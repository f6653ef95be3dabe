"""The effective settings of each parameter: the library-wide `args` (optim_bits, block_wise,
...), its group's settings, and the GlobalOptimManager's overrides for it."""
from types import SimpleNamespace

# Settings that only decide how the state is allocated: parameters overriding only these
# still share their group's launch.
INIT_ONLY_KEYS = frozenset({"optim_bits", "min_8bit_size"})


def args_namespace(args, **given):
    """The library-wide settings: from `args` (an object or dict, as the reference library
    accepts) where given, else from the keyword arguments."""
    if args is None:
        return SimpleNamespace(**given)
    get = args.get if isinstance(args, dict) else lambda k, d: getattr(args, k, d)
    return SimpleNamespace(**{k: get(k, v) for k, v in given.items()})


def overrides(optimizer, p, gindex, pindex):
    """The manager's overrides of parameter p at (gindex, pindex) of `optimizer`."""
    return optimizer.mng.config_for(p, gindex, pindex)


def launch_overrides(optimizer, p, gindex, pindex):
    """The overrides that decide how p is updated (not how its state is allocated), and a key
    that is equal for parameters with equal ones."""
    ov = {k: v for k, v in overrides(optimizer, p, gindex, pindex).items() if k not in INIT_ONLY_KEYS}
    return ov, (repr(sorted(ov.items())) if ov else None)


def effective(optimizer, group, override):
    """args, then the group's settings, then the parameter's overrides."""
    config = dict(vars(optimizer.args))
    config.update({k: v for k, v in group.items() if k != "params"})
    config.update(override)
    return config
