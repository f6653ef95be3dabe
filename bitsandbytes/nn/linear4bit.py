"""Linear4bit and Params4bit: the QLoRA linear layer with a frozen NF4/FP4 weight, and the
weight itself; Embedding4bit for inference.

The weight is quantized (packed codes, 4-bit QuantState) when it is moved to a device
(`.cuda()`, `.to(device)`, `.to("cpu")`), or at the first forward if it never was. The state
dict holds `weight` (the packed codes) and `weight.<key>` for each entry of
`quant_state.as_dict(packed=True)` (`absmax`, `quant_map`, `nested_absmax`,
`nested_quant_map`, `quant_state.bitsandbytes__nf4|fp4`), as the reference library's does.
"""
import warnings

import torch

from .._formats import FLOAT_DTYPES, dtype_list
from ..autograd.matmul_4bit import linear_4bit
from ..functional.fourbit import dequantize_4bit, quantize_4bit
from ..functional.quant_state import QuantState
from .parameters import QuantizedParameter, QuantizedParameterModule

_QUANT_STATE_KEYS = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
_PACKED_KEY = "quant_state.bitsandbytes__"


class Params4bit(QuantizedParameter):
    """A Parameter that quantizes itself to 4-bit codes when moved to a device. Quantized,
    `data` holds the packed codes ([ceil(n/2) bytes, 1] viewed as quant_storage) and
    `quant_state` what dequantizes them; `bnb_quantized` says which form `data` holds. Extra
    keyword arguments are kept as attributes, so `Params4bit(w, requires_grad=False,
    **old.__dict__)` rebuilds one (as transformers does)."""

    _attribute_defaults = {"quant_state": None, "blocksize": 64, "compress_statistics": True, "quant_type": "fp4",
                           "quant_storage": torch.uint8, "module": None, "bnb_quantized": False}
    _device_attributes = ("quant_state",)
    _transient_attributes = ("module",)

    def __new__(cls, data=None, requires_grad=False, quant_state=None, blocksize=64, compress_statistics=True,
                quant_type="fp4", quant_storage=torch.uint8, module=None, bnb_quantized=False, **attrs):
        return super().__new__(cls, data, requires_grad, **attrs, quant_state=quant_state, blocksize=blocksize,
                               compress_statistics=compress_statistics, quant_type=quant_type,
                               quant_storage=quant_storage, module=module, bnb_quantized=bnb_quantized)

    @classmethod
    def from_prequantized(cls, data, quantized_stats, requires_grad=False, device="cuda", module=None, **kwargs):
        """A quantized Params4bit from packed codes and the entries of QuantState.as_dict (a
        checkpoint's `weight.*` keys, without the prefix)."""
        device = torch.device(device)
        state = QuantState.from_dict(quantized_stats, device=device)
        self = cls(data.to(device), requires_grad=requires_grad, quant_state=state, blocksize=state.blocksize,
                   compress_statistics=state.nested, quant_type=state.quant_type, quant_storage=data.dtype,
                   module=module, bnb_quantized=True, **kwargs)
        if module is not None:
            module.quant_state = state
        return self

    def _is_quantized(self):
        return bool(self.bnb_quantized)

    def _wants_quantization(self):
        return not self.bnb_quantized and self.data.is_floating_point()

    def _quantize(self, device):
        w = self.data.contiguous().to(device)
        packed, state = quantize_4bit(w, blocksize=self.blocksize, compress_statistics=self.compress_statistics,
                                      quant_type=self.quant_type, quant_storage=self.quant_storage)
        self.data = packed
        self.quant_state = state
        self.bnb_quantized = True
        if self.module is not None:
            self.module.quant_state = state
        return self

    def _sync_with_data(self):
        super()._sync_with_data()
        if self.module is not None and self.quant_state is not None:
            self.module.quant_state = self.quant_state  # the module's copy follows the moved state

    # The state dict: `weight` (packed) and `weight.<quant state key>`.

    def _state_dict_entries(self, name):
        if not self.bnb_quantized or self.quant_state is None:
            return {}
        return {f"{name}.{k}": v for k, v in self.quant_state.as_dict(packed=True).items()}

    def _owns_state_dict_key(self, key, name):
        if not key.startswith(name + "."):
            return False
        rest = key[len(name) + 1:]
        return rest in _QUANT_STATE_KEYS or rest.startswith(_PACKED_KEY)

    def _fit_load(self, state_dict, prefix, name, missing_keys):
        w = state_dict.get(prefix + name)
        head = prefix + name + "."
        if not isinstance(w, torch.Tensor) or any(k.startswith(head) for k in state_dict):
            return
        if w.is_floating_point() and not (self.bnb_quantized and w.shape == self.data.shape and
                                          w.dtype == self.data.dtype):
            if self.bnb_quantized and self.quant_state is not None and w.shape == self.quant_state.shape:
                # a float weight into a quantized layer: quantized with the layer's settings
                packed, state = quantize_4bit(w.detach().to(self.device).contiguous(), blocksize=self.blocksize,
                                              compress_statistics=self.compress_statistics,
                                              quant_type=self.quant_type, quant_storage=self.quant_storage)
                state_dict[prefix + name] = packed
                state_dict.update({head + k: v for k, v in state.as_dict(packed=True).items()})
            return
        if self.bnb_quantized:  # packed codes without their quant state: not loadable
            missing_keys.extend(head + k for k in ("absmax", "quant_map"))
            del state_dict[prefix + name]

    def _prepare_load(self, state_dict, prefix, name):
        head = prefix + name + "."
        stats = {k[len(head):]: v for k, v in state_dict.items() if k.startswith(head)}
        if prefix + name not in state_dict:
            raise KeyError(f"{type(self.module).__name__ if self.module is not None else 'Linear4bit'}: the state "
                           f"dict holds a 4-bit quant state under {head}* but no {prefix + name}")
        device = self.device if self.device.type != "meta" else state_dict[prefix + name].device
        loaded = type(self).from_prequantized(state_dict[prefix + name], stats, device=device, module=self.module)
        _check_quant_state(loaded, prefix + name)
        expected = _module_weight_shape(self.module)
        if expected is not None and loaded.quant_state.shape != expected:
            raise ValueError(f"{type(self.module).__name__}: {prefix + name} holds a 4-bit weight of shape "
                             f"{tuple(loaded.quant_state.shape)}, the layer's is {tuple(expected)}")
        return loaded


def _module_weight_shape(module):
    """The weight shape a 4-bit layer was built for (None where the module does not say)."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return torch.Size((module.out_features, module.in_features))
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return torch.Size((module.num_embeddings, module.embedding_dim))
    return None


def _check_quant_state(p, key):
    """A loaded 4-bit weight whose quant state cannot describe its packed codes is refused."""
    qs = p.quant_state
    n = qs.shape.numel() if qs.shape is not None else 0
    blocks = -(-n // qs.blocksize)
    bytes_needed = (n + 1) // 2
    if p.data.numel() * p.data.element_size() != bytes_needed:
        raise ValueError(f"Linear4bit: {key} holds {p.data.numel() * p.data.element_size()} bytes of codes, its quant "
                         f"state (shape {tuple(qs.shape)}) needs {bytes_needed}")
    if qs.absmax.numel() != blocks:
        raise ValueError(f"Linear4bit: {key}.absmax holds {qs.absmax.numel()} values, the quant state (shape "
                         f"{tuple(qs.shape)}, blocksize {qs.blocksize}) needs {blocks}")
    if qs.nested and qs.state2.absmax.numel() != -(-blocks // qs.state2.blocksize):
        raise ValueError(f"Linear4bit: {key}.nested_absmax holds {qs.state2.absmax.numel()} values, the quant state "
                         f"needs {-(-blocks // qs.state2.blocksize)}")


def _check_compute_dtype(module, x):
    """The compute dtype of a layer built without one: the input's, as the reference library sets it,
    with its warning where fp16 input meets a float32 compute dtype."""
    if x.dtype in (torch.float32, torch.bfloat16):
        module.compute_dtype = x.dtype
    elif x.dtype == torch.float16 and module.compute_dtype in (None, torch.float32):
        if x.numel() == x.shape[-1]:
            warnings.warn("Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
                          "(default). This will lead to slow inference.")
        else:
            warnings.warn("Input type into Linear4bit is torch.float16, but bnb_4bit_compute_dtype=torch.float32 "
                          "(default). This will lead to slow inference or training speed.")


class Linear4bit(QuantizedParameterModule, torch.nn.Linear):
    """torch.nn.Linear with a frozen 4-bit weight (QLoRA). compute_dtype: the dtype of the product
    (default: the first input's); quant_type "nf4" or "fp4"; compress_statistics: quantize the
    block absmax too (8-bit, "double quantization"); quant_storage: the dtype the packed codes
    are viewed as (uint8, or a float type for FSDP)."""

    def __init__(self, input_features, output_features, bias=True, compute_dtype=None, compress_statistics=True,
                 quant_type="fp4", quant_storage=torch.uint8, device=None):
        if compute_dtype is not None and compute_dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}: compute_dtype must be None or one of "
                            f"{dtype_list(FLOAT_DTYPES)}, got {compute_dtype!r}")
        super().__init__(input_features, output_features, bias, device)
        self.weight = Params4bit(self.weight.data, requires_grad=False, compress_statistics=compress_statistics,
                                 quant_type=quant_type, quant_storage=quant_storage, module=self)
        self.compute_dtype = compute_dtype
        self.compute_type_is_set = compute_dtype is not None
        self.quant_state = None
        self.quant_storage = quant_storage

    def set_compute_type(self, x):
        _check_compute_dtype(self, x)

    def forward(self, x):
        w = self._param("weight")
        if not w.bnb_quantized:
            w.quantize_()  # never moved to a device: quantize on first use, where it is
            self.quant_state = w.quant_state
        if w.quant_state is None and self.quant_state is not None:  # the module kept it (FSDP)
            w.quant_state = self.quant_state
        if not self.compute_type_is_set:
            self.set_compute_type(x)
            self.compute_type_is_set = True
        in_dtype = x.dtype
        if self.compute_dtype is not None and in_dtype != self.compute_dtype:
            if not x.is_floating_point():  # (the cast would make a result of truncated integers)
                raise TypeError(f"{type(self).__name__}: the input must be floating point, got {in_dtype}")
            x = x.to(self.compute_dtype)
        bias = self._param("bias")
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)  # a copy: the parameter keeps its dtype
        out = linear_4bit(x, w, w.quant_state, bias)
        return out if out.dtype == in_dtype else out.to(in_dtype)


class LinearFP4(Linear4bit):
    """Linear4bit with FP4 codes."""

    def __init__(self, input_features, output_features, bias=True, compute_dtype=None, compress_statistics=True,
                 quant_storage=torch.uint8, device=None):
        super().__init__(input_features, output_features, bias, compute_dtype, compress_statistics, "fp4",
                         quant_storage, device)


class LinearNF4(Linear4bit):
    """Linear4bit with NF4 codes (the QLoRA default)."""

    def __init__(self, input_features, output_features, bias=True, compute_dtype=None, compress_statistics=True,
                 quant_storage=torch.uint8, device=None):
        super().__init__(input_features, output_features, bias, compute_dtype, compress_statistics, "nf4",
                         quant_storage, device)


class Embedding4bit(QuantizedParameterModule, torch.nn.Embedding):
    """An embedding table stored as 4-bit codes, for inference: a lookup dequantizes only the rows
    it reads where each row holds whole blocks (embedding_dim a multiple of the blocksize), else
    the whole table."""

    def __init__(self, num_embeddings, embedding_dim, dtype=None, quant_type="fp4", quant_storage=torch.uint8,
                 device=None):
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.dtype = self.weight.data.dtype
        self.weight = Params4bit(self.weight.data, requires_grad=False, compress_statistics=False,
                                 quant_type=quant_type, quant_storage=quant_storage, module=self)

    def forward(self, input):
        w = self.weight
        if not w.bnb_quantized:
            w.quantize_()
        state = w.quant_state
        V, D = self.num_embeddings, self.embedding_dim
        if D % state.blocksize == 0 and D % 2 == 0:
            rows = w.data.view(torch.uint8).reshape(-1)[: V * D // 2].view(V, D // 2)
            absmax = state.absmax.view(V, D // state.blocksize)
            flat = input.reshape(-1)
            # index_select, not indexing: an index outside [0, V) is an error, as in nn.Embedding,
            # where indexing would read -1 as the last row
            sub = QuantState(absmax=absmax.index_select(0, flat).reshape(-1), shape=(flat.numel(), D),
                             code=state.code, blocksize=state.blocksize, quant_type=state.quant_type,
                             dtype=state.dtype)
            out = dequantize_4bit(rows.index_select(0, flat).reshape(-1, 1), sub)
            return out.reshape(*input.shape, D)
        table = dequantize_4bit(w.data, state)
        return torch.nn.functional.embedding(input, table, self.padding_idx)


class EmbeddingFP4(Embedding4bit):
    def __init__(self, num_embeddings, embedding_dim, dtype=None, quant_storage=torch.uint8, device=None):
        super().__init__(num_embeddings, embedding_dim, dtype, "fp4", quant_storage, device)


class EmbeddingNF4(Embedding4bit):
    def __init__(self, num_embeddings, embedding_dim, dtype=None, quant_storage=torch.uint8, device=None):
        super().__init__(num_embeddings, embedding_dim, dtype, "nf4", quant_storage, device)
