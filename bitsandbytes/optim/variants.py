"""Makes the `8bit`, `32bit` and `Paged` variants of an optimizer class: the same class with
optim_bits and/or is_paged fixed."""


def variant(base, name, optim_bits=None, is_paged=None):
    fixed = {}
    if optim_bits is not None:
        fixed["optim_bits"] = optim_bits
    if is_paged is not None:
        fixed["is_paged"] = is_paged

    def __init__(self, params, *args, **kwargs):
        kwargs.update(fixed)
        base.__init__(self, params, *args, **kwargs)

    what = ", ".join(f"{k}={v}" for k, v in fixed.items())
    doc = f"{base.__name__} with {what}.\n\n{base.__doc__ or ''}"
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": base.__module__})
