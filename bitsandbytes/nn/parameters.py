"""QuantizedParameter: a Parameter that quantizes itself when moved to a device, and the module
mixin that keeps such parameters whole through module moves and state dicts.

What every quantized weight needs, whatever its format, lives here once: quantize on
`.to(device)` / `.cuda()` / `.cpu()`; keep the quantized data and its attributes (scales, quant
state) through `module.to`, `module.cuda`, `copy.copy`, `copy.deepcopy`, `pickle` and
`torch.save`; save and load the attributes a quantized weight adds to its module's state dict.
A format (Int8Params, a future Params4bit) supplies only its quantize step and its attributes.
"""
import copy

import torch


def _rebuild_quantized_parameter(cls, data, requires_grad, attrs):
    """Unpickles a QuantizedParameter (module-level so that pickle can name it)."""
    return cls._rebuild(data, requires_grad, attrs)


class QuantizedParameter(torch.nn.Parameter):
    """A Parameter whose data is quantized when it is moved to a device.

    A subclass provides:

    - `_attribute_defaults`: a dict of its own attributes and their defaults. `__new__` takes
      them as keyword arguments; any other keyword argument is kept as an attribute too, so
      that `Cls(w, requires_grad=False, **old.__dict__)` rebuilds one (as transformers does).
      A subclass with positional attributes (Params4bit's signature) defines its own `__new__`
      that calls `QuantizedParameter.__new__(cls, data, requires_grad, **attrs)`.
    - `_is_quantized()`: whether `data` holds the quantized form. (Not a property named
      `is_quantized`: torch.Tensor has one, for torch's own quantized tensors.)
    - `_wants_quantization()`: whether a move to a device should quantize the data now.
    - `_quantize(device)`: quantizes the data onto `device` in place (sets `self.data` and the
      attributes that describe it) and returns self; called through `quantize_`, which clears
      requires_grad first.
    - `_data_aliases`: attributes that are the quantized data itself (Int8Params: CB). They are
      bound to `data` again after every move, copy and load instead of being copied.
    - `_device_attributes`: attributes that follow the data to its device: tensors, or objects
      with a `.to(device)` that moves them (a QuantState).
    - `_transient_attributes`: attributes left out of copies and pickles (a back-reference to
      the owning module, which sets it again).
    - For state dicts (see QuantizedParameterModule), optionally:
      `_state_dict_entries(name)` the tensors saved beside the parameter, keyed relative to the
      module's prefix; `_owns_state_dict_key(key, name)` which keys of a state dict are those
      entries; `_prepare_load(state_dict, prefix, name)` checks them before the parameter
      itself is loaded and returns the parameter to load into (self, or a replacement whose
      data has the stored shape); `_finish_load(state_dict, prefix, name)` reads them after.
      `_fit_load(state_dict, prefix, name, missing_keys)` runs first, on every load: it makes a
      state dict fit a quantized parameter (a float weight is quantized as a move would) or
      refuses one that does not (a quantized weight without its statistics is reported missing
      and not loaded, so strict=True fails and strict=False leaves the layer as it was).

    Gradients: data that is not floating point (int8, packed 4-bit) cannot require grad, so
    `requires_grad` is only honoured for floating-point data; quantizing clears it.
    """

    _attribute_defaults = {}
    _data_aliases = ()
    _device_attributes = ()
    _transient_attributes = ()

    def __new__(cls, data=None, requires_grad=True, **attrs):
        if data is None:
            data = torch.empty(0)
        obj = torch.Tensor._make_subclass(cls, data, requires_grad and data.is_floating_point())
        obj.__dict__.update(cls._attribute_defaults)
        obj.__dict__.update(attrs)
        return obj

    # What a subclass supplies.

    def _is_quantized(self):
        raise NotImplementedError

    def _wants_quantization(self):
        raise NotImplementedError

    def _quantize(self, device):
        raise NotImplementedError

    def quantize_(self, device=None):
        """Quantizes the data in place on `device` (default: where it is) and returns self. The
        quantized data cannot carry a gradient, so requires_grad is cleared first."""
        self.requires_grad_(False)
        return self._quantize(self.device if device is None else torch.device(device))

    # Moves.

    def to(self, *args, **kwargs):
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and device.type != "meta" and self._wants_quantization():
            return self.quantize_(device)
        if self._is_quantized():
            dtype = None  # quantized data keeps its dtype (casts are for the 16/32-bit tensors)
        data = self.data.to(device=device, dtype=dtype, non_blocking=non_blocking)
        attrs = self._copied_attributes()
        if device is not None:
            for name in self._device_attributes:
                attrs[name] = _moved(attrs.get(name), device, non_blocking)
        return type(self)._rebuild(data, self.requires_grad, attrs)

    def cuda(self, device=None, non_blocking=False):
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif isinstance(device, int):
            device = torch.device("cuda", device)
        return self.to(device, non_blocking=non_blocking)

    def cpu(self):
        return self.to("cpu")

    def _sync_with_data(self):
        """After a module move, which replaces only `.data`: aliases point at the new data and
        the device attributes follow it to its device."""
        if not self._is_quantized():
            return
        for name in self._data_aliases:
            setattr(self, name, self.data)
        for name in self._device_attributes:
            value = getattr(self, name, None)
            if value is not None and not (isinstance(value, torch.Tensor) and value.device == self.data.device):
                setattr(self, name, _moved(value, self.data.device, False))

    # Copies and pickles.

    @classmethod
    def _rebuild(cls, data, requires_grad, attrs):
        obj = QuantizedParameter.__new__(cls, data, requires_grad, **attrs)
        obj._bind_aliases()
        return obj

    def _with_data(self, data):
        """This parameter, attributes and all (the transient ones too), holding `data`."""
        obj = type(self)._rebuild(data, self.requires_grad, self._copied_attributes())
        for name in self._transient_attributes:
            if name in self.__dict__:
                setattr(obj, name, self.__dict__[name])
        return obj

    def _bind_aliases(self):
        if self._is_quantized():
            for name in self._data_aliases:
                setattr(self, name, self.data)

    def _copied_attributes(self):
        # requires_grad is the tensor's own flag, passed on by itself; it lands in __dict__ only
        # where a caller wrote it there (accelerate's init_empty_weights rebuilds a parameter
        # as `Cls(p.to(device), **p.__dict__)` after setting __dict__["requires_grad"]).
        skip = set(self._data_aliases) | set(self._transient_attributes) | {"requires_grad"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __reduce_ex__(self, proto):
        return (_rebuild_quantized_parameter, (type(self), self.data, self.requires_grad, self._copied_attributes()))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        attrs = {k: copy.deepcopy(v, memo) for k, v in self._copied_attributes().items()}
        result = type(self)._rebuild(self.data.clone(memory_format=torch.preserve_format), self.requires_grad, attrs)
        # An alias that is not the data (unquantized data beside a separately set CB) is copied.
        for name in self._data_aliases:
            if getattr(result, name, None) is None and getattr(self, name, None) is not None:
                setattr(result, name, copy.deepcopy(getattr(self, name), memo))
        memo[id(self)] = result
        return result

    def __copy__(self):
        return type(self)._rebuild(self.data, self.requires_grad, self._copied_attributes())

    # State dicts: by default a quantized parameter adds nothing to its module's.

    def _state_dict_entries(self, name):
        return {}

    def _owns_state_dict_key(self, key, name):
        return False

    def _fit_load(self, state_dict, prefix, name, missing_keys):
        pass

    def _prepare_load(self, state_dict, prefix, name):
        return self

    def _finish_load(self, state_dict, prefix, name):
        pass


def _moved(value, device, non_blocking):
    """`value` on `device`, never by moving the caller's object in place (a moved copy of a
    parameter must leave the original's state where it was)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.is_meta and torch.device(device).type != "meta":
        # A placeholder of a model built on the meta device: it has no values to move, and its
        # loader sets the real one (transformers passes SCB=<meta tensor>, then sets SCB).
        return None
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if hasattr(value, "copy_to"):
        return value.copy_to(device)
    return value.to(device)


class QuantizedParameterModule(torch.nn.Module):
    """Mixin for modules that own QuantizedParameters (put it before the torch module class:
    `class Linear8bitLt(QuantizedParameterModule, torch.nn.Linear)`). It keeps their
    attributes beside the data after module moves and adds their entries to the state dict."""

    def _quantized_parameters(self):
        return [(name, p) for name, p in self._parameters.items() if isinstance(p, QuantizedParameter)]

    def _param(self, name):
        """The registered parameter `name` (or None) read from the module's table: the attribute
        goes through nn.Module.__getattr__, about 0.5 us a lookup, a tenth of a decode call's
        host time. A name that is not a registered parameter (a parametrization's property)
        takes the attribute."""
        params = self._parameters
        return params[name] if name in params else getattr(self, name)

    def _apply(self, fn, *args, **kwargs):
        result = super()._apply(fn, *args, **kwargs)
        for _, p in self._quantized_parameters():
            p._sync_with_data()
        return result

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for _, p in self._quantized_parameters():
            p._sync_with_data()
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, p in self._quantized_parameters():
            for key, value in p._state_dict_entries(name).items():
                destination[prefix + key] = value if keep_vars else value.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        owned = {}
        for name, p in self._quantized_parameters():
            p._fit_load(state_dict, prefix, name, missing_keys)
            keys = [k for k in state_dict if k.startswith(prefix) and p._owns_state_dict_key(k[len(prefix):], name)]
            if keys:
                owned[name] = keys
                self._parameters[name] = p._prepare_load(state_dict, prefix, name)
        loading = dict(self._quantized_parameters())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for name, p in loading.items():
            now = self._parameters.get(name)
            if now is not None and not isinstance(now, QuantizedParameter):
                # load_state_dict(assign=True) put a plain Parameter holding the state dict's
                # tensor in the quantized one's place: the quantized parameter takes that tensor
                self._parameters[name] = p._with_data(now.data)
        for name, keys in owned.items():
            for key in keys:
                if key in unexpected_keys:
                    unexpected_keys.remove(key)
            p = self._parameters[name]
            p._sync_with_data()
            p._finish_load(state_dict, prefix, name)
