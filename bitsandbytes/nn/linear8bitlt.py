"""Linear8bitLt and Int8Params: the LLM.int8() linear layer and its weight.

With has_fp16_weights=False the weight is quantized row-wise (int8 CB, float32 row absmax
SCB) when it is moved to a device (`.cuda()`, `.to("cuda")`, `.to(0)`, `.to("cpu")`), or at
the first forward if it never was; the layer then keeps only the int8 weight. With
has_fp16_weights=True (the default) the weight stays 16-bit and trainable, and is quantized
again at each forward. The state dict of a quantized layer holds `weight` (int8), `SCB`,
`weight_format` (0: row-major) and `bias`, as the reference library's does.
"""
import torch

from ..autograd import MatmulLtState, matmul
from ..autograd._functions import WEIGHT_STREAM_MAX_ROWS
from ..functional.int8 import int8_weight_quant
from ..utils.weight_formats import LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING, to_row_major
from .parameters import QuantizedParameter, QuantizedParameterModule

_ROW_MAJOR = LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING["row"]


def _rebuild_int8_params(data, requires_grad, attrs):
    # Named by pickles written by earlier releases.
    return Int8Params._rebuild(data, requires_grad, attrs)


class Int8Params(QuantizedParameter):
    """A Parameter that quantizes itself to int8 (CB + SCB) when moved to a device, unless
    it holds trainable 16-bit weights (has_fp16_weights=True). Extra keyword arguments are
    kept as attributes, so `Int8Params(w, requires_grad=False, **old.__dict__)` rebuilds one.

    Quantized, `data` is the int8 weight CB (CB is the same tensor) and SCB holds the float32
    absmax of each row; the layer's state dict then holds `SCB` and `weight_format` beside
    `weight`. Moves, copies and pickles are QuantizedParameter's."""

    _attribute_defaults = {"has_fp16_weights": False, "CB": None, "SCB": None}
    _data_aliases = ("CB",)
    _device_attributes = ("SCB",)

    def __new__(cls, data=None, requires_grad=True, has_fp16_weights=False, CB=None, SCB=None, **attrs):
        return super().__new__(cls, data, requires_grad, **attrs, has_fp16_weights=has_fp16_weights, CB=CB, SCB=SCB)

    def _is_quantized(self):
        return self.data.dtype == torch.int8

    @property
    def _is_int8(self):
        return self._is_quantized()

    def _wants_quantization(self):
        return not self.has_fp16_weights and self.data.is_floating_point()

    def _quantize(self, device):
        """Quantizes the 16/32-bit data on `device` in place: data becomes CB, SCB is set."""
        w = self.data.contiguous().to(device)
        if w.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            w = w.to(torch.float16)
        CB, SCB = int8_weight_quant(w)
        self.data = CB
        self.CB = CB
        self.SCB = SCB
        self.requires_grad = False
        return self

    # The reference library's state-dict layout: `SCB` and `weight_format` beside `weight`.

    def _state_dict_entries(self, name):
        if self.has_fp16_weights or self.SCB is None:
            return {}
        return {"SCB": self.SCB, "weight_format": torch.tensor(_ROW_MAJOR, dtype=torch.uint8)}

    def _owns_state_dict_key(self, key, name):
        return key in ("SCB", "weight_format")

    def _fit_load(self, state_dict, prefix, name, missing_keys):
        w, scb = state_dict.get(prefix + name), state_dict.get(prefix + "SCB")
        if not isinstance(w, torch.Tensor):
            return
        if scb is None and w.is_floating_point():
            if self._is_quantized():  # a float weight into a quantized layer: quantized, as a move would
                if tuple(w.shape) == tuple(self.shape):
                    CB, SCB = int8_weight_quant(w.detach().to(self.device).contiguous())
                    state_dict[prefix + name], state_dict[prefix + "SCB"] = CB, SCB
            return
        if scb is None:  # int8 codes without their row statistics: not loadable
            missing_keys.append(prefix + "SCB")
            del state_dict[prefix + name]
            return
        rows = self.shape[0] if self.dim() else 1  # the layer's rows (a tiled weight's shape is another)
        if not isinstance(scb, torch.Tensor) or scb.numel() != rows or not scb.is_floating_point():
            raise ValueError(f"Linear8bitLt: {prefix}SCB must hold one float per row of {prefix}{name} ({rows}), "
                             f"got " + (f"{scb.dtype} of shape {tuple(scb.shape)}" if isinstance(scb, torch.Tensor)
                                        else repr(scb)))

    def _prepare_load(self, state_dict, prefix, name):
        if prefix + "SCB" not in state_dict:
            return self
        if not self._is_quantized():
            raise RuntimeError(
                f"Linear8bitLt: the state dict holds a quantized weight ({prefix}SCB) but this layer is not "
                "quantized; build it with has_fp16_weights=False and move it to its device "
                "(.cuda(), .to(device)) before load_state_dict()")
        fmt = state_dict.get(prefix + "weight_format")
        if fmt is not None and prefix + name in state_dict:
            # older releases saved the weight of a layer that had run on the GPU in cuBLASLt's tiled
            # order (col_turing, col_ampere): loaded in row-major order, as the 0.45 releases do
            try:
                state_dict[prefix + name] = to_row_major(state_dict[prefix + name], fmt, self.shape)
            except ValueError as e:
                raise ValueError(f"Linear8bitLt: {prefix}weight_format: {e}") from None
        return self

    def _finish_load(self, state_dict, prefix, name):
        if prefix + "SCB" not in state_dict:
            return
        # (one float a row, in whatever shape it was saved: [rows] or [rows, 1])
        scb = state_dict[prefix + "SCB"].reshape(-1)
        if self.SCB is None:  # int8 data whose statistics were a meta placeholder (dropped on the move)
            self.SCB = scb.to(self.device, torch.float32, copy=True)
        else:
            self.SCB.copy_(scb)


_is_compiling = torch.compiler.is_compiling
# The decode path's op, looked up once: every attribute lookup shows at decode sizes.
_weight_linear = torch.ops.bitsandbytes.int8_weight_linear.default


def _bias_as(bias, x):
    """The bias in x's dtype for this call: a cast copy, through which autograd still reaches
    the parameter. The parameter itself keeps its dtype (an in-place cast would round an fp32
    bias through a 16-bit input's dtype for good)."""
    return bias if bias is None or bias.dtype == x.dtype else bias.to(x.dtype)


class Linear8bitLt(QuantizedParameterModule, torch.nn.Linear):
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

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        w = self.weight
        if isinstance(w, Int8Params) and w.SCB is None and w._is_quantized() and self.state.SCB is not None:
            w.SCB = self.state.SCB  # quantized through the matmul state only
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if prefix + "SCB" in state_dict and self.state.SCB is not None:
            self.state.SCB = self.weight.SCB

    def init_8bit_state(self):
        self.state.CB = self.weight.CB
        self.state.SCB = self.weight.SCB

    def forward(self, x):
        # Decoding with an int8 weight: the weight-streaming op is the whole forward (its
        # Autograd kernel gives the gradients of x and bias). At these sizes the kernel takes
        # tens of microseconds, so the general path's Python steps would show in the latency.
        w = self._param("weight")
        bias = self._param("bias")
        if (not _is_compiling() and w.dtype == torch.int8 and getattr(w, "SCB", None) is not None
                and x.dim() >= 1 and x.shape[-1] > 0
                and 0 < x.numel() // x.shape[-1] <= WEIGHT_STREAM_MAX_ROWS):
            state = self.state
            state.is_training = self.training
            state.CB = w.data
            state.SCB = w.SCB
            return _weight_linear(x, w, w.SCB, _bias_as(bias, x))
        return self._forward_general(x)

    def _forward_general(self, x):
        state = self.state
        state.is_training = self.training
        w = self.weight
        if w.dtype != torch.int8 and not state.has_fp16_weights:
            w.quantize_()  # never moved to a device: quantize on first use
        if w.dtype == torch.int8:
            # Module moves and state-dict loads keep CB/SCB beside the data (_apply, load).
            state.CB = w.CB if w.CB is not None else w.data
            state.SCB = w.SCB
        return matmul(x, w, bias=_bias_as(self.bias, x), state=state)
