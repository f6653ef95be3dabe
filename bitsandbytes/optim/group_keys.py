"""The param-group keys the reference library's optimizers read: `betas` and `eps`.

Its SGD and LARS keep (momentum, dampening) in `betas`, its RMSprop (alpha, momentum) and its
Adagrad (0, 0); none of them has the named keys. Ours keep the named keys (they decide the
step) and carry `betas` and `eps` beside them, so that a checkpoint of ours loads into the
reference's loader, and a checkpoint of the reference's (betas only) is honoured here."""


def set_betas_and_eps(group, betas_keys):
    """Gives `group` `betas` built from its named settings `betas_keys` (missing ones are 0)
    and an `eps` of 0 where it has none. betas_keys None: the optimizer uses `betas` itself."""
    if betas_keys is None:
        return
    values = [group[k] for k in betas_keys]
    group["betas"] = tuple(values + [0.0] * (2 - len(values)))
    group.setdefault("eps", 0.0)


def named_from_betas(saved_group, group, betas_keys):
    """Where `saved_group` is the reference's (`betas` without the named keys), sets the named
    settings of `group` from its `betas`."""
    if not betas_keys or "betas" not in saved_group or any(k in saved_group for k in betas_keys):
        return
    betas = saved_group["betas"]
    if len(betas) != 2:
        raise ValueError(f"load_state_dict: a param group's betas must hold 2 values, got {betas!r}")
    for key, value in zip(betas_keys, betas):
        group[key] = value
