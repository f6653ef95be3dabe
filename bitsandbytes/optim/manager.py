"""GlobalOptimManager: per-parameter overrides of the optimizer configuration (for example
32-bit state for embeddings while the rest of the model gets 8-bit state)."""
import weakref

import torch

from .hyper_checks import betas_of, check_hyperparameters
from .override_keys import known_override_keys


def _override_settings(config, where):
    """An override's settings as the optimizers read them: the keys they know (known_override_keys),
    betas read from a string where given so, each value checked as torch.optim checks it."""
    config = known_override_keys(config, where)
    if "betas" in config:
        config["betas"] = betas_of(config["betas"], where)
    check_hyperparameters(config, where)
    return config


class _WeakOverrides:
    """Overrides keyed by the parameter object itself, held weakly: an entry dies with its
    parameter, so a new tensor that happens to get a dead one's id() inherits nothing.
    (Not a WeakKeyDictionary: it compares colliding keys with ==, elementwise on tensors.)"""

    def __init__(self):
        self._by_id = {}  # id(p) -> (weak reference to p, its overrides)

    def _forget(self, ref, pid):
        # only the entry of the tensor that died: its id may already be a new tensor's
        entry = self._by_id.get(pid)
        if entry is not None and entry[0] is ref:
            del self._by_id[pid]

    def setdefault(self, p):
        """p's overrides, created empty where it has none."""
        entry = self._by_id.get(id(p))
        if entry is None or entry[0]() is not p:
            pid = id(p)
            entry = (weakref.ref(p, lambda ref, pid=pid: self._forget(ref, pid)), {})
            self._by_id[pid] = entry
        return entry[1]

    def get(self, p):
        """p's overrides, or None."""
        entry = self._by_id.get(id(p))
        return entry[1] if entry is not None and entry[0]() is p else None

    def __len__(self):
        return len(self._by_id)


class GlobalOptimManager:
    """A process-wide registry of configuration overrides, each belonging to one parameter
    object (held weakly: the manager keeps no parameter or module alive).

    Overrides can be given by parameter object (`override_config`) or by module and attribute
    name (`register_module_override`, resolved when an optimizer plans its step, so it follows
    the attribute if the module's parameter is replaced). `register_parameters` is kept for the
    reference library's workflow (register, move the model, then override): a parameter keeps
    its identity when the model is moved, so its overrides apply to it and to no other.
    Every optimizer of bitsandbytes.optim honours them per parameter.
    """

    _instance = None

    def __init__(self):
        raise RuntimeError("GlobalOptimManager is a singleton: call GlobalOptimManager.get_instance()")

    def initialize(self):
        self.param_overrides = _WeakOverrides()
        self.module_overrides = []  # (weak reference to a module, attribute name, overrides)
        self.registered = weakref.WeakSet()  # parameters given to register_parameters
        self.optimizer = None
        self.uses_config_override = False

    @classmethod
    def get_instance(cls):
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.initialize()
        return cls._instance

    def register_parameters(self, params):
        """Records the parameters (a list of tensors or of param-group dicts) whose settings
        will be overridden; the overrides follow the parameter objects, wherever they move."""
        groups = list(params)
        if groups and isinstance(groups[0], dict):
            tensors = [p for group in groups for p in group["params"]]
        else:
            tensors = groups
        for p in tensors:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"register_parameters: params must hold tensors or param-group dicts, "
                                f"got {type(p).__name__}")
            self.registered.add(p)

    def override_config(self, parameters, key=None, value=None, key_value_dict=None):
        """Overrides optimizer settings (optim_bits, lr, betas, ...) for one parameter or a
        list of them: either one `key`/`value` pair or a `key_value_dict`."""
        if isinstance(parameters, torch.Tensor):
            parameters = [parameters]
        if key is not None and value is not None:
            if key_value_dict is not None:
                raise ValueError("override_config: give key/value or key_value_dict, not both")
            key_value_dict = {key: value}
        if key_value_dict is None:
            raise ValueError("override_config: give a key and a value, or key_value_dict")
        key_value_dict = _override_settings(key_value_dict, "override_config")
        parameters = list(parameters)
        for p in parameters:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"override_config: parameters must be tensors, got {type(p).__name__}")
        self.uses_config_override = True
        for p in parameters:
            self.param_overrides.setdefault(p).update(key_value_dict)

    def register_module_override(self, module, param_name, config):
        """Overrides the settings of `getattr(module, param_name)` (resolved when a step is
        planned, so it survives moving the module to another device). The module is held
        weakly: the override ends with it."""
        if not isinstance(getattr(module, param_name, None), torch.Tensor):
            raise ValueError(f"register_module_override: {type(module).__name__} has no parameter {param_name!r}")
        config = _override_settings(config, "register_module_override")
        self.uses_config_override = True
        self.module_overrides = [e for e in self.module_overrides if e[0]() is not None]
        self.module_overrides.append((weakref.ref(module), param_name, dict(config)))

    def config_for(self, p, gindex=None, pindex=None):
        """The overrides that apply to parameter p, merged (empty if none): its module's, then
        its own. gindex and pindex are accepted for compatibility; position plays no part."""
        merged = {}
        for module_ref, name, config in self.module_overrides:
            module = module_ref()
            if module is not None and getattr(module, name, None) is p:
                merged.update(config)
        own = self.param_overrides.get(p)
        if own:
            merged.update(own)
        return merged
