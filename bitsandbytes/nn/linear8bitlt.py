"""Linear8bitLt and Int8Params: the LLM.int8() linear layer and its weight.

With has_fp16_weights=False the weight is quantized row-wise (int8 CB, float32 row absmax
SCB) when it is moved to a device (`.cuda()`, `.to("cuda")`, `.to(0)`, `.to("cpu")`), or at
the first forward if it never was; the layer then keeps only the int8 weight. With
has_fp16_weights=True (the default) the weight stays 16-bit and trainable, and is quantized
again at each forward. The state dict of a quantized layer holds `weight` (int8), `SCB`,
`weight_format` (0: row-major) and `bias`, as the reference library's does.
"""
import copy

import torch

from ..autograd import MatmulLtState, matmul
from ..autograd._functions import WEIGHT_STREAM_MAX_ROWS
from ..functional.int8 import int8_vectorwise_quant

_ROW_MAJOR = 0


def _rebuild_int8_params(data, requires_grad, attrs):
    param = Int8Params(data, requires_grad=requires_grad)
    param.__dict__.update(attrs)
    if param.data.dtype == torch.int8:
        param.CB = param.data  # CB is the weight's own storage, as after quantization
    return param


class Int8Params(torch.nn.Parameter):
    """A Parameter that quantizes itself to int8 (CB + SCB) when moved to a device, unless
    it holds trainable 16-bit weights (has_fp16_weights=True). Extra keyword arguments are
    kept as attributes, so `Int8Params(w, requires_grad=False, **old.__dict__)` rebuilds one."""

    def __new__(cls, data=None, requires_grad=True, has_fp16_weights=False, CB=None, SCB=None, **attrs):
        if data is None:
            data = torch.empty(0)
        # An int8 weight cannot carry a gradient (only 16/32-bit weights train).
        obj = torch.Tensor._make_subclass(cls, data, requires_grad and data.is_floating_point())
        obj.__dict__.update(attrs)
        obj.has_fp16_weights = has_fp16_weights
        obj.CB = CB
        obj.SCB = SCB
        return obj

    @property
    def _is_int8(self):
        return self.data.dtype == torch.int8

    def _quantize(self, device):
        """Quantizes the 16/32-bit data on `device` in place: data becomes CB, SCB is set."""
        w = self.data.contiguous().to(device)
        if w.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            w = w.to(torch.float16)
        CB, SCB, _ = int8_vectorwise_quant(w)
        self.data = CB
        self.CB = CB
        self.SCB = SCB
        self.requires_grad = False
        return self

    def to(self, *args, **kwargs):
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if (device is not None and device.type != "meta" and not self.has_fp16_weights
                and self.data.is_floating_point()):
            return self._quantize(device)
        if self._is_int8:
            dtype = None  # the int8 weight keeps its dtype (casts are for the 16-bit tensors)
        data = self.data.to(device=device, dtype=dtype, non_blocking=non_blocking)
        SCB = self.SCB.to(device, non_blocking=non_blocking) if self.SCB is not None and device else self.SCB
        attrs = {k: v for k, v in self.__dict__.items() if k not in ("CB", "SCB", "has_fp16_weights")}
        return Int8Params(data, requires_grad=self.requires_grad, has_fp16_weights=self.has_fp16_weights,
                          CB=data if data.dtype == torch.int8 else None, SCB=SCB, **attrs)

    def cuda(self, device=None, non_blocking=False):
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif isinstance(device, int):
            device = torch.device("cuda", device)
        return self.to(device, non_blocking=non_blocking)

    def cpu(self):
        return self.to("cpu")

    def __reduce_ex__(self, proto):
        attrs = {k: v for k, v in self.__dict__.items() if k != "CB"}
        return (_rebuild_int8_params, (self.data, self.requires_grad, attrs))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        attrs = {k: copy.deepcopy(v, memo) for k, v in self.__dict__.items() if k != "CB"}
        result = _rebuild_int8_params(self.data.clone(memory_format=torch.preserve_format), self.requires_grad, attrs)
        if result.CB is None and self.CB is not None:
            result.CB = copy.deepcopy(self.CB, memo)
        memo[id(self)] = result
        return result

    def __copy__(self):
        return _rebuild_int8_params(self.data, self.requires_grad,
                                    {k: v for k, v in self.__dict__.items() if k != "CB"})


_is_compiling = torch.compiler.is_compiling


class Linear8bitLt(torch.nn.Linear):
    """torch.nn.Linear with an int8 forward (bnb.matmul, LLM.int8()).

    threshold > 0 enables the mixed-precision decomposition (6.0 is the usual value);
    has_fp16_weights=False gives int8 inference with the weight stored as int8."""

    def __init__(self, input_features, output_features, bias=True, has_fp16_weights=True, threshold=0.0,
                 index=None, device=None):
        super().__init__(input_features, output_features, bias, device)
        self.state = MatmulLtState()
        self.index = index
        self.state.threshold = threshold
        self.state.has_fp16_weights = has_fp16_weights
        if threshold > 0.0 and not has_fp16_weights:
            self.state.use_pool = True
        self.weight = Int8Params(self.weight.data, has_fp16_weights=has_fp16_weights,
                                 requires_grad=has_fp16_weights)

    def _sync_int8_weight(self):
        """Keeps CB/SCB beside the weight after module-level moves (which only swap .data)."""
        w = self.weight
        if not isinstance(w, Int8Params) or w.data.dtype != torch.int8:
            return
        w.CB = w.data
        if w.SCB is not None and w.SCB.device != w.data.device:
            w.SCB = w.SCB.to(w.data.device)

    def _apply(self, fn, *args, **kwargs):
        # Module moves replace only weight.data; bring SCB along to the same device.
        result = super()._apply(fn, *args, **kwargs)
        self._sync_int8_weight()
        return result

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._sync_int8_weight()
        super()._save_to_state_dict(destination, prefix, keep_vars)
        SCB = getattr(self.weight, "SCB", None)
        if SCB is None:
            SCB = self.state.SCB
        if not self.state.has_fp16_weights and SCB is not None:
            destination[prefix + "SCB"] = SCB if keep_vars else SCB.detach()
            destination[prefix + "weight_format"] = torch.tensor(_ROW_MAJOR, dtype=torch.uint8)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        scb_key, format_key = prefix + "SCB", prefix + "weight_format"
        if scb_key in state_dict:
            if getattr(self.weight, "SCB", None) is None or self.weight.data.dtype != torch.int8:
                raise RuntimeError(
                    f"Linear8bitLt: the state dict holds a quantized weight ({scb_key}) but this layer is not "
                    "quantized; build it with has_fp16_weights=False and move it to its device "
                    "(.cuda(), .to(device)) before load_state_dict()")
            fmt = state_dict.get(format_key)
            if fmt is not None and int(fmt) != _ROW_MAJOR:
                raise RuntimeError(f"Linear8bitLt: {format_key} = {int(fmt)} is not supported; only row-major "
                                   "int8 weights (0) can be loaded")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for key in (scb_key, format_key):
            if key in unexpected_keys:
                unexpected_keys.remove(key)
        if scb_key in state_dict:
            self._sync_int8_weight()
            self.weight.SCB.copy_(state_dict[scb_key])
            if self.state.SCB is not None:
                self.state.SCB = self.weight.SCB

    def init_8bit_state(self):
        self.state.CB = self.weight.CB
        self.state.SCB = self.weight.SCB

    def forward(self, x):
        # Decoding with an int8 weight: the weight-streaming op is the whole forward (its
        # Autograd kernel gives the gradients of x and bias). At these sizes the kernel takes
        # tens of microseconds, so the general path's Python steps would show in the latency.
        w = self.weight
        bias = self.bias
        if (not _is_compiling() and w.dtype == torch.int8 and getattr(w, "SCB", None) is not None
                and x.dim() >= 1 and x.shape[-1] > 0
                and 0 < x.numel() // x.shape[-1] <= WEIGHT_STREAM_MAX_ROWS and (bias is None or bias.dtype == x.dtype)):
            state = self.state
            state.is_training = self.training
            state.CB = w.data
            state.SCB = w.SCB
            return torch.ops.bitsandbytes.int8_weight_linear.default(x, w, w.SCB, bias)
        return self._forward_general(x)

    def _forward_general(self, x):
        state = self.state
        state.is_training = self.training
        w = self.weight
        if w.dtype != torch.int8 and not state.has_fp16_weights:
            w._quantize(w.device)  # never moved to a device: quantize on first use
        if w.dtype == torch.int8:
            # Module moves and state-dict loads keep CB/SCB beside the data (_apply, load).
            state.CB = w.CB if w.CB is not None else w.data
            state.SCB = w.SCB
        bias = self.bias
        if bias is not None and bias.dtype != x.dtype:
            bias.data = bias.data.to(x.dtype)
        return matmul(x, w, bias=bias, state=state)
