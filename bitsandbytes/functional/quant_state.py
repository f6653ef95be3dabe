"""QuantState: everything needed to dequantize a block-wise quantized tensor."""
import json
from collections.abc import Mapping

import torch


def _dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def _dtype_from_name(name):
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"QuantState.from_dict: unknown dtype {name!r}")
    return dtype


def nested_stats_missing(absmax):
    """The error of a state whose absmax holds codes but which lacks the statistics that read them."""
    return (f"quant_state.absmax holds {absmax.dtype} codes of nested statistics, but the state has none "
            "(state2 and offset; in a state dict: nested_absmax, nested_quant_map, nested_blocksize, "
            "nested_dtype, nested_offset)")


class QuantState:
    """absmax (one per block, itself quantized when nested), the map `code`, the block size,
    and the original shape and dtype. `state2` and `offset` describe the nested absmax."""

    _PACKED_PREFIX = "quant_state.bitsandbytes__"
    # The names of a 4-bit state's formats and serialized keys, as code written for the library
    # we replace reads them off the class (as_dict writes exactly these).
    valid_quant_types = ("fp4", "nf4")
    valid_qs_type_keys = [f"bitsandbytes__{t}" for t in valid_quant_types]
    valid_qs_keys = ["absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state", "quant_type",
                     "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"]

    def __init__(self, absmax, shape=None, code=None, blocksize=None, quant_type=None, dtype=None, offset=None,
                 state2=None):
        self.absmax = absmax
        self.shape = torch.Size(shape) if shape is not None else None
        self.code = code
        self.dtype = dtype
        self.blocksize = blocksize
        self.quant_type = quant_type
        self.offset = offset
        self.state2 = state2
        self.nested = state2 is not None

    def __eq__(self, other):
        if not isinstance(other, QuantState):
            return False

        def same(a, b):
            if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
                return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                        and torch.equal(a.cpu(), b.cpu()))
            return a == b

        return (same(self.absmax, other.absmax) and self.shape == other.shape and same(self.code, other.code)
                and self.dtype == other.dtype and self.blocksize == other.blocksize
                and self.quant_type == other.quant_type and same(self.offset, other.offset)
                and self.state2 == other.state2)

    def as_dict(self, packed=False):
        """A flat dict of tensors and plain values. With packed=True the non-tensor entries are
        folded into one uint8 tensor, so that the dict holds tensors only (a state dict)."""
        d = {
            "quant_type": self.quant_type,
            "absmax": self.absmax,
            "blocksize": self.blocksize,
            "quant_map": self.code,
            "dtype": _dtype_name(self.dtype),
            "shape": tuple(self.shape) if self.shape is not None else None,
        }
        if self.nested:
            d.update({
                "nested_absmax": self.state2.absmax,
                "nested_blocksize": self.state2.blocksize,
                "nested_quant_map": self.state2.code.clone(),
                "nested_dtype": _dtype_name(self.state2.dtype),
                "nested_offset": float(self.offset),
            })
        if not packed:
            return d
        tensors = {k: v for k, v in d.items() if isinstance(v, torch.Tensor)}
        plain = {k: v for k, v in d.items() if not isinstance(v, torch.Tensor)}
        blob = torch.frombuffer(bytearray(json.dumps(plain).encode()), dtype=torch.uint8)
        tensors[self._PACKED_PREFIX + str(self.quant_type)] = blob
        return tensors

    @classmethod
    def from_dict(cls, qs_dict, device):
        """Inverse of as_dict (packed or not); tensors are moved to `device`."""
        fn = "QuantState.from_dict"
        if not isinstance(qs_dict, Mapping):
            raise TypeError(f"{fn}: qs_dict must be a dict of the state's entries, got {type(qs_dict).__name__}")
        qs_dict = dict(qs_dict)
        # (the keys may carry a module prefix, "weight.quant_state.bitsandbytes__nf4")
        packed_keys = [k for k in qs_dict if cls._PACKED_PREFIX in k and isinstance(qs_dict[k], torch.Tensor)]
        if len(packed_keys) > 1:
            raise ValueError(f"{fn}: several packed entries {packed_keys}")
        if packed_keys:
            blob = qs_dict.pop(packed_keys[0])
            try:
                plain = json.loads(bytes(blob.cpu().numpy().tobytes()).decode())
            except (UnicodeDecodeError, ValueError) as e:
                raise ValueError(f"{fn}: the packed entry {packed_keys[0]!r} is not a serialized state ({e})") from None
            if not isinstance(plain, dict):
                raise ValueError(f"{fn}: the packed entry {packed_keys[0]!r} is not a serialized state")
            qs_dict.update(plain)
        qs_dict = {k.split(".")[-1]: v for k, v in qs_dict.items()}  # tolerate prefixed keys
        for key in ("absmax", "quant_map", "dtype", "blocksize"):
            if key not in qs_dict:
                raise ValueError(f"{fn}: missing key {key!r}")
        for key in ("absmax", "quant_map"):
            if not isinstance(qs_dict[key], torch.Tensor):
                raise TypeError(f"{fn}: {key} must be a tensor, got {type(qs_dict[key]).__name__}")
        nested_keys = ("nested_absmax", "nested_quant_map", "nested_blocksize", "nested_dtype", "nested_offset")
        present = [k for k in nested_keys if k in qs_dict]
        if present and len(present) < len(nested_keys):
            missing = [k for k in nested_keys if k not in qs_dict]
            raise ValueError(f"{fn}: the nested statistics are incomplete: {present} without {missing}")
        if not present and not qs_dict["absmax"].is_floating_point():
            raise ValueError(f"{fn}: {nested_stats_missing(qs_dict['absmax'])}")
        state2 = offset = None
        if present:
            offset = torch.tensor(float(qs_dict["nested_offset"]), device=device)
            # The nested state quantized the absmax vector, which has as many values as its codes.
            state2 = cls(absmax=qs_dict["nested_absmax"].to(device), shape=qs_dict["absmax"].shape, code=qs_dict["nested_quant_map"].to(device),
                         blocksize=qs_dict["nested_blocksize"], dtype=_dtype_from_name(qs_dict["nested_dtype"]))
        return cls(absmax=qs_dict["absmax"].to(device), shape=qs_dict.get("shape"),
                   code=qs_dict["quant_map"].to(device), blocksize=qs_dict["blocksize"],
                   quant_type=qs_dict.get("quant_type"), dtype=_dtype_from_name(qs_dict["dtype"]), offset=offset,
                   state2=state2)

    def __getitem__(self, idx):
        """The older list layout of a state: [absmax, shape, dtype, blocksize, [offset, state2] or
        None, quant_type]."""
        nested = [self.offset, self.state2] if self.nested else None
        return [self.absmax, self.shape, self.dtype, self.blocksize, nested, self.quant_type][idx]

    def copy_to(self, device):
        """A new state with this one's tensors on `device`; this one is left as it is."""
        state2 = self.state2.copy_to(device) if self.nested else None
        offset = self.offset.to(device) if isinstance(self.offset, torch.Tensor) else self.offset
        return QuantState(absmax=self.absmax.to(device), shape=self.shape,
                          code=self.code.to(device) if self.code is not None else None, blocksize=self.blocksize,
                          quant_type=self.quant_type, dtype=self.dtype, offset=offset, state2=state2)

    def to(self, device):
        """Moves the tensors of this state (and of the nested state) to `device`, in place."""
        self.absmax = self.absmax.to(device)
        self.code = self.code.to(device)
        if self.nested:
            self.offset = self.offset.to(device)
            self.state2.to(device)
        return self

    def __repr__(self):
        return (f"QuantState(shape={tuple(self.shape) if self.shape is not None else None}, dtype={self.dtype}, "
                f"blocksize={self.blocksize}, nested={self.nested})")
