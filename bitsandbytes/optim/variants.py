"""Makes the `8bit`, `32bit` and `Paged` variants of an optimizer class: the same class with
optim_bits and/or is_paged fixed, under the reference library's positional signature.

That signature differs per family: the variants of Lion, SGD, LARS, RMSprop and LAMB have no
`optim_bits` parameter (and PagedLion* no `is_paged`), so positional arguments after
weight_decay / nesterov / adam_w_mode shift by one; the Adam, AdamW and Adagrad variants keep
the parameter and ignore its value. Parameters of ours that the reference lacks stay
keyword-only, so that a positional call never lands on them."""
import inspect


def variant(base, name, optim_bits=None, is_paged=None, drop=(), keyword_only=()):
    """A subclass of `base` named `name` with the fixed values given, whose __init__ takes
    `base.__init__`'s parameters less `drop`, with those in `keyword_only` keyword-only."""
    fixed = {}
    if optim_bits is not None:
        fixed["optim_bits"] = optim_bits
    if is_paged is not None:
        fixed["is_paged"] = is_paged
    base_params = inspect.signature(base.__init__).parameters.values()
    positional = [p for p in base_params if p.name not in drop and p.name not in keyword_only]
    named = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in base_params if p.name in keyword_only]
    signature = inspect.Signature(positional + named)

    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        values = dict(bound.arguments)
        self = values.pop("self")
        values.update(fixed)  # fixed values win over given ones: the reference ignores those
        base.__init__(self, **values)

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{name}.__init__"
    what = ", ".join(f"{k}={v}" for k, v in fixed.items())
    doc = f"{base.__name__} with {what}.\n\n{base.__doc__ or ''}"
    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": base.__module__})
