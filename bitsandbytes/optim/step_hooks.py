"""torch.optim's step hooks (global and per optimizer), run by our optimizers themselves.

torch.optim.Optimizer wraps step() to run the step hooks inside a profiler range; that range
cost about 20 us of host time a step, profiling or not, which an isolated 8-bit step would wait
for. A step() marked as already wrapped (`hooked`) is left alone by torch: it runs the same
hooks itself here and opens the range only while a profiler records."""
from itertools import chain

import torch

try:  # the hooks of torch.optim.Optimizer.register_optimizer_step_{pre,post}_hook
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # then torch's own wrapper of step() runs them
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = None

RUNS_HOOKS = _global_optimizer_pre_hooks is not None


def step_with_hooks(optimizer, run, args, kwargs):
    """run(*args, **kwargs) between the pre- and post-hooks, as torch's wrapper would."""
    if not RUNS_HOOKS:  # torch's wrapper runs the hooks
        return run(*args, **kwargs)
    if torch._C._autograd._profiler_enabled():
        with torch.autograd.profiler.record_function(f"Optimizer.step#{type(optimizer).__name__}.step"):
            return _hooked(optimizer, run, args, kwargs)
    return _hooked(optimizer, run, args, kwargs)


def _hooked(optimizer, run, args, kwargs):
    full = (optimizer, *args)  # the hooks see step's arguments with self first, as under torch
    for pre_hook in chain(_global_optimizer_pre_hooks.values(), optimizer._optimizer_step_pre_hooks.values()):
        result = pre_hook(optimizer, full, kwargs)
        if result is not None:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(f"{type(optimizer).__name__}.step: a step pre-hook must return None or a tuple of "
                                   f"(new_args, new_kwargs), got {result}")
            full, kwargs = result
    out = run(*full[1:], **kwargs)
    optimizer._optimizer_step_code()
    for post_hook in chain(optimizer._optimizer_step_post_hooks.values(), _global_optimizer_post_hooks.values()):
        post_hook(optimizer, full, kwargs)
    return out
