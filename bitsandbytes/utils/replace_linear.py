"""Swapping every torch.nn.Linear of a model for another linear class."""
import torch


def replace_linear(model, linear_replacement, skip_modules=("lm_head",), copy_weights=False,
                   post_processing_function=None):
    """Replaces, recursively and in place, each torch.nn.Linear child of `model` whose
    attribute name is not in `skip_modules` by `linear_replacement(in_features, out_features,
    bias)`. copy_weights=True hands the old weight and bias Parameters to the new module.
    post_processing_function names a method of the replacement called after the swap (the
    reference documents it so; its code looked the name up on the replaced module).
    Returns `model`."""
    for name, module in model.named_children():
        if len(list(module.children())) > 0:
            replace_linear(module, linear_replacement, skip_modules, copy_weights, post_processing_function)
        if isinstance(module, torch.nn.Linear) and name not in skip_modules:
            new = linear_replacement(module.in_features, module.out_features, module.bias is not None)
            if copy_weights:
                new.weight = module.weight
                new.bias = module.bias
            model._modules[name] = new
            if post_processing_function is not None:
                func = getattr(new, post_processing_function, None)
                if func is not None:
                    func(new)
    return model
