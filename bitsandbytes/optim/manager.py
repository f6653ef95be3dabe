"""GlobalOptimManager: per-parameter overrides of the optimizer configuration (for example
32-bit state for embeddings while the rest of the model gets 8-bit state)."""
import torch


class GlobalOptimManager:
    """A process-wide registry of configuration overrides, keyed by parameter.

    Overrides can be given by parameter object (`override_config`), by module and attribute
    name (`register_module_override`, resolved when an optimizer takes its first step), and
    by position for parameters registered before the model was moved (`register_parameters`
    then `override_config`). Every optimizer of bitsandbytes.optim honours them per parameter.
    """

    _instance = None

    def __init__(self):
        raise RuntimeError("GlobalOptimManager is a singleton: call GlobalOptimManager.get_instance()")

    def initialize(self):
        self.pid2config = {}
        self.index2config = {}
        self.optimizer = None
        self.uses_config_override = False
        self.module_weight_config_triple = []
        self._registered = []  # (group index, param index, param) from register_parameters

    @classmethod
    def get_instance(cls):
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.initialize()
        return cls._instance

    def register_parameters(self, params):
        """Remembers the parameters' positions (group index, index in group), so that overrides
        made later by parameter object also apply to optimizers built from these positions."""
        param_groups = list(params)
        if not param_groups:
            return
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for gindex, group in enumerate(param_groups):
            for pindex, p in enumerate(group["params"]):
                self._registered.append((gindex, pindex, p))
                if id(p) in self.pid2config:
                    self.index2config[(gindex, pindex)] = self.pid2config[id(p)]

    def override_config(self, parameters, key=None, value=None, key_value_dict=None):
        """Overrides optimizer settings (optim_bits, lr, betas, ...) for one parameter or a
        list of them: either one `key`/`value` pair or a `key_value_dict`."""
        self.uses_config_override = True
        if isinstance(parameters, torch.Tensor):
            parameters = [parameters]
        if key is not None and value is not None:
            if key_value_dict is not None:
                raise ValueError("override_config: give key/value or key_value_dict, not both")
            key_value_dict = {key: value}
        if key_value_dict is None:
            raise ValueError("override_config: give a key and a value, or key_value_dict")
        for p in parameters:
            config = self.pid2config.setdefault(id(p), {})
            config.update(key_value_dict)
            for gindex, pindex, q in self._registered:
                if q is p:
                    self.index2config[(gindex, pindex)] = config

    def register_module_override(self, module, param_name, config):
        """Overrides the settings of `getattr(module, param_name)` (resolved at the first step,
        so it survives moving the module to another device)."""
        self.uses_config_override = True
        self.module_weight_config_triple.append((module, param_name, dict(config)))

    def config_for(self, p, gindex, pindex):
        """The overrides that apply to parameter p at (gindex, pindex), merged (empty if none)."""
        merged = {}
        if (gindex, pindex) in self.index2config:
            merged.update(self.index2config[(gindex, pindex)])
        for module, name, config in self.module_weight_config_triple:
            if getattr(module, name, None) is p:
                merged.update(config)
        if id(p) in self.pid2config:
            merged.update(self.pid2config[id(p)])
        return merged
