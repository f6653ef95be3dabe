"""`optimizer.state` as the step sees it: a mapping whose every change is noticed.

The launch plan holds each parameter's state tensors (plan.py) so that a step costs no work per
parameter. Whatever replaces, deletes, clears or resets that state (`opt.state[p]["state1"] =
t`, `del opt.state[p]`, `opt.state[p].clear()`, `opt.state = defaultdict(dict)`, a load) bumps
one shared version, and a plan built at another version is rebuilt: the kernel always updates
what `optimizer.state` holds, and `state_dict()` saves it. Both classes pickle and copy as the
plain dict / defaultdict(dict) torch uses."""
from collections import defaultdict


class StateVersion:
    """A counter shared by an optimizer's state mapping and its per-parameter dicts."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0

    def bump(self):
        self.value += 1


def _changes(name):
    method = getattr(dict, name)

    def changed(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        self._version.bump()
        return result

    changed.__name__ = name
    return changed


class ParamState(dict):
    """One parameter's state. The step writes its own count with dict.__setitem__ (no bump)."""

    def __init__(self, version, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._version = version

    for _name in ("__setitem__", "__delitem__", "pop", "popitem", "clear", "update", "setdefault", "__ior__"):
        locals()[_name] = _changes(_name)
    del _name

    def __reduce__(self):
        return dict, (dict(self),)


class StateMap(defaultdict):
    """parameter -> ParamState; a value stored in it becomes a ParamState of the same version."""

    def __init__(self, version, items=()):
        super().__init__(None)
        self._version = version
        for key, value in dict(items).items():
            self[key] = value

    def __missing__(self, key):
        value = self[key] = ParamState(self._version)
        return value

    def __setitem__(self, key, value):
        if not (isinstance(value, ParamState) and value._version is self._version) and isinstance(value, dict):
            value = ParamState(self._version, value)
        super().__setitem__(key, value)
        self._version.bump()

    for _name in ("__delitem__", "pop", "popitem", "clear"):
        locals()[_name] = _changes(_name)
    del _name

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def _plain(self):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self.items()}

    def __reduce__(self):
        return defaultdict, (dict,), None, None, iter(self._plain().items())

    def __copy__(self):
        return defaultdict(dict, self)
