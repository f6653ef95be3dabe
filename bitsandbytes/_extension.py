"""The compiled extension's direct entries, and when a call may take them.

Everything else reaches the kernels through `torch.ops.bitsandbytes.*`. The one direct entry
is the optimizer step over a launch's tensors (csrc/python/optimizer_entries.cpp): it hands
the tensor lists to C++ once and then calls the same op through the dispatcher at each step,
so errors, results and dispatch modes are the op's. What the dispatcher cannot see is a
torch-function override (a tensor subclass with its own `__torch_function__`, a
TorchFunctionMode) and tracing by torch.compile; where one may apply, callers use torch.ops.
This module is the only importer of `bitsandbytes._C`'s entries.
"""
import torch

from . import _C

_PLAIN_TORCH_FUNCTION = torch._C._disabled_torch_function_impl


def _is_plain(t):
    """A tensor whose type adds no torch-function override: torch.Tensor, or a subclass that
    disables it (Parameter, the quantized parameters)."""
    cls = type(t)
    if cls is torch.Tensor or cls is torch.nn.Parameter:
        return True
    if not isinstance(t, torch.Tensor):
        return False
    impl = getattr(cls.__torch_function__, "__func__", cls.__torch_function__)
    return impl is _PLAIN_TORCH_FUNCTION


def direct_call_allowed():
    """Whether a direct entry gives what torch.ops would now: not tracing, no torch-function mode."""
    return not torch.compiler.is_compiling() and not torch._C._is_torch_function_mode_enabled()


class OptimizerTensors:
    """The tensors of one optimizer launch that stay the same between steps (parameters, states,
    absmax), handed to the extension once. `handle` is None where a tensor is not plain: the
    caller then passes the lists to torch.ops at every step. Make a new one whenever any of
    these tensors is replaced."""

    def __init__(self, params, state1, state2, absmax1, absmax2):
        self.lists = tuple(list(x) for x in (params, state1, state2, absmax1, absmax2))
        plain = all(_is_plain(t) for lst in self.lists for t in lst)
        self.handle = _C.optimizer_tensors(*self.lists) if plain else None

    def step(self, algorithm, qmap1, qmap2, gnorm_scale, scalars):
        """torch.ops.bitsandbytes.optimizer_update on these tensors and each parameter's .grad.
        Returns None where the direct entry does not apply (the caller takes torch.ops), False
        where a parameter has no gradient (nothing done), True once the step is queued."""
        if self.handle is None or not direct_call_allowed():
            return None
        if not all(x is None or _is_plain(x) for x in (qmap1, qmap2, gnorm_scale)):
            return None
        return _C.optimizer_step(self.handle, algorithm, qmap1, qmap2, gnorm_scale, *scalars)


class GradsRecord:
    """Which of an optimizer's parameters have a gradient now; `matches()` tells whether that is
    still so (compared in C++; from Python where a parameter is not a plain tensor)."""

    def __init__(self, params):
        self.params = list(params)
        if all(_is_plain(p) for p in self.params):
            self._handle = _C.optimizer_grads(self.params)
            self._had = None
        else:
            self._handle = None
            self._had = self._now()

    def _now(self):
        return tuple(p.grad is not None for p in self.params)

    def matches(self):
        if self._handle is not None:
            return _C.optimizer_grads_match(self._handle)
        return self._now() == self._had
