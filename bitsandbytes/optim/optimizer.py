"""Base classes of the 8-bit and 32-bit optimizers, and the step.

A step costs a handful of launches per parameter group: the tensors of a group that share
dtype, device, state kind (8-bit or 32-bit), step count and settings form one launch of
`functional.optimizer_update_multi` (plan.py). The other jobs live beside this file: the
effective settings (config.py), state allocation (state.py), step hooks (step_hooks.py) and
state dicts (checkpoint.py). What defines each algorithm is functional/algorithms.py.
"""
import torch

from .. import functional as F
from ..functional import optimizer as FO
from ..functional.algorithms import algorithm, kernel_hyper
from . import checkpoint, config as C, state as S, step_hooks
from .group_keys import set_betas_and_eps
from .hyper_checks import betas_of, check_hyperparameters
from .manager import GlobalOptimManager
from .paging import Residency
from .plan import Launch, Plan
from .state_map import StateMap, StateVersion


class Optimizer8bit(torch.optim.Optimizer):
    """The machinery shared by every optimizer: per-parameter configuration (with the
    GlobalOptimManager overrides), state allocation, the launch plan, and state dicts in the
    reference library's format."""

    # The named settings the reference keeps in `betas` (group_keys.py); None: ours use betas.
    betas_keys = None

    def __init__(self, params, defaults, optim_bits=32, is_paged=False):
        self._plan = None
        self._residency = None  # where the plan's paged state may be (paging.py)
        self._state_version = StateVersion()
        _step_outside_compiled_graphs()
        super().__init__(params, defaults)
        self.initialized = False
        self.optim_bits = optim_bits
        self.is_paged = is_paged
        self.mng = GlobalOptimManager.get_instance()
        self.page_mng = F.GlobalPageManager.get_instance()
        self.name2qmap = {}
        self.non_castable_tensor_keys = set(S.STATE_TENSOR_KEYS)

    # `state` is torch's attribute, held as a StateMap so that any change of it is noticed and the
    # launch plan (which holds the state tensors) rebuilt (state_map.py).
    @property
    def state(self):
        return self.__dict__["_state"]

    @state.setter
    def state(self, value):
        version = self.__dict__.setdefault("_state_version", StateVersion())
        if not (isinstance(value, StateMap) and value._version is version):
            value = StateMap(version, value)
        self.__dict__["_state"] = value
        version.bump()

    # What a copy or pickle leaves out: the launch plan and paging record (rebuilt at the next
    # step), the state's change counter (made anew with the state), the process-wide managers
    # (looked up again) and torch's hooks (torch leaves them out too; they may be closures).
    _not_pickled = ("_plan", "_residency", "_state_version", "_state", "mng", "page_mng")

    def __getstate__(self):
        # torch's keeps defaults, state and param_groups only: a copy would lose this class's
        # settings (optimizer_name, is_paged, args, ...) and fail at its first step
        state = {k: v for k, v in self.__dict__.items() if k not in self._not_pickled and not k.endswith("_hooks")}
        state["state"] = self.state
        return state

    def __setstate__(self, state):
        state = dict(state)
        loaded = state.pop("state", None)
        state.pop("_state", None)
        super().__setstate__(state)
        self.__dict__.setdefault("_plan", None)
        self.__dict__.setdefault("_residency", None)
        self.mng = GlobalOptimManager.get_instance()
        self.page_mng = F.GlobalPageManager.get_instance()
        if loaded is not None:
            self.state = loaded

    @property
    def num_states(self):
        return algorithm(self.optimizer_name).num_states

    def add_param_group(self, param_group):
        # A group's own settings are checked as the constructor's are (the defaults it does not
        # set already were); a refused group is not added.
        where = f"{type(self).__name__}: param group {len(self.param_groups)}"
        if isinstance(param_group, dict) and isinstance(param_group.get("betas"), str):
            param_group = dict(param_group, betas=betas_of(param_group["betas"], where))
        if isinstance(param_group, dict):
            check_hyperparameters(param_group, where, num_betas=self._num_betas())
            self.check_new_group(param_group, where)
        super().add_param_group(param_group)
        set_betas_and_eps(self.param_groups[-1], self.betas_keys)
        self._plan = None  # the new parameters join at the next step

    def check_new_group(self, param_group, where):
        """A subclass's refusal of settings it cannot run (after the values' checks); none here."""

    def _num_betas(self):
        """How many betas a param group must hold: 3 for AdEMAMix, else 2 (where betas are read)."""
        name = getattr(self, "optimizer_name", None)
        return 3 if name == "ademamix" else 2 if name is not None else None

    # --- configuration ---------------------------------------------------------------

    def get_config(self, gindex, pindex, group):
        """The effective settings of parameter `pindex` of group `gindex`."""
        return C.effective(self, group, C.overrides(self, group["params"][pindex], gindex, pindex))

    def check_overrides(self):
        """Kept for compatibility: module overrides are resolved at every plan build."""

    # --- state -----------------------------------------------------------------------

    def init_state(self, group, p, gindex, pindex):
        S.init_state(self, p, self.get_config(gindex, pindex, group))

    def get_state_buffer(self, p, dtype=torch.float32):
        """A zero state tensor shaped like p: paged (unified memory, registered with the page
        manager) for a paged optimizer and a parameter of at least 1e5 values, else ordinary."""
        if not self.is_paged or p.numel() < 1e5:
            return torch.zeros_like(p, dtype=dtype)
        buf = F.get_paged(*p.shape, dtype=dtype, device=p.device)
        self.page_mng.paged_tensors.append(buf)
        return buf

    def prefetch_state(self, p):
        """Migrates p's paged state tensors to its GPU before they are used."""
        if self.is_paged:
            state = self.state[p]
            for key in ("state1", "state2"):
                if getattr(state.get(key), "is_paged", False):
                    F.prefetch_tensor(state[key])

    def fill_qmap(self):
        """`name2qmap`: the signed ("dynamic") and unsigned ("udynamic") dynamic maps."""
        self.name2qmap["dynamic"] = F.create_dynamic_map(signed=True)
        self.name2qmap["udynamic"] = F.create_dynamic_map(signed=False)

    def update_step(self, group, p, gindex, pindex):
        """Updates one parameter; subclasses that define their own algorithm override it."""
        raise NotImplementedError(f"{type(self).__name__}.update_step must be overridden")

    def _steps_per_parameter(self):
        # A subclass with its own update_step is stepped as the reference library steps: one
        # call per parameter. The built-in optimizers batch their parameters instead.
        return type(self).update_step is not _StateOptimizer.update_step

    # --- the step --------------------------------------------------------------------

    def step(*args, **kwargs):
        """Performs one optimization step (all parameters with a gradient): step(closure=None)."""
        self = args[0]
        return step_hooks.step_with_hooks(self, self._step, args[1:], kwargs)

    step.hooked = step_hooks.RUNS_HOOKS  # torch's wrapper leaves a hooked step() alone

    @torch.no_grad()
    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.initialized = True
        if self._steps_per_parameter():
            self._step_each_parameter()
            return loss
        if self._plan is None or not self._plan.is_current():
            self._plan = Plan(self)
            self._residency = Residency(self._plan) if self.is_paged else None
        if self._residency is not None:
            self._residency.prefetch()
        for launch in self._plan:
            self._run(launch)
        return loss

    def _run(self, launch):
        group = self.param_groups[launch.gindex]
        config = C.effective(self, group, launch.override)
        # (a gradient that turned sparse since the plan was built is refused by the op)
        # The extension reads the gradients of plain parameters itself (grads None).
        grads = launch.grads()
        launch.strided_in()
        step = launch.states[0]["step"] + 1
        scale = None
        pc = config["percentile_clipping"]
        if pc < 100:
            clipped = grads or [p.grad for p in launch.owners]
            scale = FO.percentile_clipping_multi(clipped, [s["gnorm_vec"] for s in launch.states], step, pc)[2]
        kwargs = {}
        if launch.quantized:
            states = launch.states
            kwargs = dict(qmap1=states[0]["qmap1"], qmap2=states[0]["qmap2"] if launch.state2 else None,
                          absmax1=launch.absmax1, absmax2=launch.absmax2)
        FO.optimizer_update_multi(
            self.optimizer_name, launch.params, grads, launch.state1, launch.state2, step=step, gnorm_scale=scale,
            block_wise=config["block_wise"], prepared=launch.prepared, **kwargs,
            **kernel_hyper(self.optimizer_name, config, step))
        launch.strided_out()
        # counted once the update is queued (and not where it was refused); the step's own count
        # is no change of the state the plan holds (state_map.py)
        for state in launch.states:
            dict.__setitem__(state, "step", step)

    def _step_each_parameter(self):
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if len(self.state[p]) == 0:
                    self.init_state(group, p, gindex, pindex)
                self.prefetch_state(p)
                self.update_step(group, p, gindex, pindex)

    # --- state dicts -----------------------------------------------------------------

    def state_dict(self):
        """torch's format, with each parameter's state tensors nested under
        `__bnb_optimizer_quant_state__` as the reference library saves them."""
        return checkpoint.state_dict(self, super().state_dict())

    def load_state_dict(self, state_dict, move_to_device=True):
        """Loads our own state dicts and the reference library's (see checkpoint.py). With
        move_to_device=False the state tensors stay on the device they were loaded on."""
        # torch's load hooks, as torch.optim.Optimizer.load_state_dict runs them: a pre-hook may
        # return a replacement state dict (the caller's own dict is never edited)
        state_dict = dict(state_dict)
        for hook in getattr(self, "_optimizer_load_state_dict_pre_hooks", {}).values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        checkpoint.load_state_dict(self, state_dict, move_to_device)
        self._plan = None
        for hook in getattr(self, "_optimizer_load_state_dict_post_hooks", {}).values():
            hook(self)

    def check_loaded_group(self, group):
        """Refuses settings a loaded param group asks for that this optimizer cannot run."""


def _step_outside_compiled_graphs():
    """Makes Optimizer8bit.step a graph break under torch.compile, run as it runs eagerly: its
    host work (the launch plan, state allocation, the direct entry into the extension) is Python
    that dynamo cannot trace without errors, and its device work is already one fused launch per
    group, which a graph would not make faster. Done when the first optimizer is built rather
    than at import, which would import dynamo (over a second) with the package."""
    step = Optimizer8bit.__dict__["step"]
    if not getattr(step, "outside_compiled_graphs", False):
        disabled = torch.compiler.disable(step, reason="a bitsandbytes optimizer step runs eagerly")
        disabled.hooked = step.hooked  # torch's wrapper must still leave it alone
        disabled.outside_compiled_graphs = True
        Optimizer8bit.step = disabled


def check_percentile_clipping(value):
    """A bool is refused: the reference's current release dropped percentile_clipping and
    block_wise, so its positional `is_paged` lands here, and must not clip silently."""
    if isinstance(value, bool):
        raise TypeError(f"percentile_clipping must be a number in [0, 100], got {value!r}: a positional is_paged "
                        "written for releases without percentile_clipping lands here; pass is_paged=... by keyword")


class _StateOptimizer(Optimizer8bit):
    """An optimizer of one algorithm of functional/algorithms.py, with the library-wide settings."""

    def __init__(self, optimizer_name, params, defaults, optim_bits=32, args=None, min_8bit_size=4096,
                 percentile_clipping=100, block_wise=True, max_unorm=0.0, is_paged=False):
        algorithm(optimizer_name)  # a ValueError for an unknown one
        check_percentile_clipping(percentile_clipping)
        check_hyperparameters({"max_unorm": max_unorm}, type(self).__name__)
        if "betas" in defaults:
            defaults = dict(defaults, betas=betas_of(defaults["betas"], type(self).__name__))
        check_hyperparameters(defaults, type(self).__name__, num_betas=3 if optimizer_name == "ademamix" else 2)
        self.optimizer_name = optimizer_name
        self.args = C.args_namespace(args, optim_bits=optim_bits, min_8bit_size=min_8bit_size,
                                     percentile_clipping=percentile_clipping, block_wise=block_wise,
                                     max_unorm=max_unorm)
        S.check_optim_bits(self, self.args.optim_bits, optimizer_name)
        super().__init__(params, defaults, self.args.optim_bits, is_paged)

    @torch.no_grad()
    def update_step(self, group, p, gindex, pindex):
        """One parameter's update (step() updates all of them in batched launches)."""
        if len(self.state[p]) == 0:
            self.init_state(group, p, gindex, pindex)
        override, _ = C.launch_overrides(self, p, gindex, pindex)
        self._run(Launch(gindex, override, [p], [self.state[p]]))


class Optimizer1State(_StateOptimizer):
    """Optimizers with one state tensor (momentum, RMSprop, Adagrad, Lion, LARS)."""

    def __init__(self, optimizer_name, params, lr=1e-3, betas=(0.9, 0.0), eps=1e-8, weight_decay=0.0, optim_bits=32,
                 args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True, max_unorm=0.0,
                 skip_zeros=False, is_paged=False, extra=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **(extra or {}))
        super().__init__(optimizer_name, params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, max_unorm, is_paged)


class Optimizer2State(_StateOptimizer):
    """Optimizers with two state tensors (Adam, AdamW, LAMB, AdEMAMix). alpha, t_alpha and t_beta3
    are AdEMAMix's (the slow EMA's weight and the two schedules' lengths, see ademamix.py); its
    param groups keep them, the other algorithms' do not."""

    def __init__(self, optimizer_name, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 optim_bits=32, args=None, min_8bit_size=4096, percentile_clipping=100, block_wise=True,
                 max_unorm=0.0, skip_zeros=False, is_paged=False, alpha=0.0, t_alpha=None, t_beta3=None, extra=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **(extra or {}))
        if optimizer_name == "ademamix":
            defaults.update(alpha=alpha, t_alpha=t_alpha, t_beta3=t_beta3)
        super().__init__(optimizer_name, params, defaults, optim_bits, args, min_8bit_size, percentile_clipping,
                         block_wise, max_unorm, is_paged)
