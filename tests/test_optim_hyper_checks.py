"""Hyper-parameters torch.optim refuses are refused by every optimizer class of ours, in its
constructor, with a ValueError naming the argument."""
import inspect

import pytest
import torch

import bitsandbytes as bnb

NOT_OPTIMIZERS = {"GlobalOptimManager", "Optimizer1State", "Optimizer2State", "Optimizer8bit", "PytorchLARS"}
CLASSES = [getattr(bnb.optim, n) for n in bnb.optim.__all__ if n not in NOT_OPTIMIZERS]

# the torch.optim class with the same algorithm, where torch has one
TORCH_TWIN = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD": torch.optim.SGD,
              "RMSprop": torch.optim.RMSprop, "Adagrad": torch.optim.Adagrad}

BAD_VALUES = [
    ("lr", -1e-3), ("lr", float("nan")), ("eps", -1e-8), ("weight_decay", -0.1), ("momentum", -0.5),
    ("alpha", -0.9), ("lr_decay", -0.01), ("initial_accumulator_value", -0.1),
    ("betas", (-0.1, 0.999)), ("betas", (0.9, 1.0)), ("betas", (1.0, 0.5)), ("betas", (0.9, float("nan"))),
]


def torch_twin(cls):
    """torch's class for the algorithm of `cls` or of the class it is a variant of (Adam8bit:
    Adam); None where torch has none (Lion, LARS, LAMB)."""
    for base in cls.__mro__:
        if base.__module__.startswith("bitsandbytes.") and base.__name__ in TORCH_TWIN:
            return TORCH_TWIN[base.__name__]
    return None


def cases():
    for cls in CLASSES:
        accepted = inspect.signature(cls.__init__).parameters
        for name, value in BAD_VALUES:
            if name in accepted:
                yield pytest.param(cls, name, value, id=f"{cls.__name__}-{name}={value}")


@pytest.mark.parametrize("cls,name,value", list(cases()))
def test_refused_as_torch_refuses(cls, name, value, device):
    params = [torch.nn.Parameter(torch.randn(8, 8, device=device))]
    twin = torch_twin(cls)
    # NaN: refused by ours always; torch's checks differ per class (SGD's `lr < 0` lets it through)
    has_nan = any(v != v for v in (value if isinstance(value, tuple) else (value,)))
    if twin is not None and name in inspect.signature(twin.__init__).parameters and not has_nan:
        with pytest.raises(ValueError):
            twin(params, **{"lr": 1e-3, name: value})
    with pytest.raises(ValueError, match="beta" if name == "betas" else name):
        cls(params, **{"lr": 1e-3, name: value})


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_edge_values_accepted(cls, device):
    # zero is allowed for every non-negative setting, as torch allows it
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {"lr": 0.0}
    for name in ("eps", "weight_decay", "lr_decay", "initial_accumulator_value"):
        if name in accepted:
            kwargs[name] = 0.0
    if "betas" in accepted:
        kwargs["betas"] = (0.0,) * len(accepted["betas"].default)  # AdEMAMix: three
    cls([torch.nn.Parameter(torch.randn(4, device=device))], **kwargs)


def test_checked_in_the_constructor_not_the_step(device):
    # a valid optimizer steps without re-checking; the refusal happens at construction
    p = torch.nn.Parameter(torch.randn(16, device=device))
    with pytest.raises(ValueError, match="weight_decay"):
        bnb.optim.Adam8bit([p], weight_decay=-1.0)
    opt = bnb.optim.Adam8bit([p], lr=1e-2)
    p.grad = torch.ones_like(p)
    opt.step()


def test_rmsprop_negative_momentum_is_a_value_error(device):
    # torch refuses it as a value before our "momentum not supported"
    p = [torch.nn.Parameter(torch.randn(4, device=device))]
    with pytest.raises(ValueError, match="momentum"):
        bnb.optim.RMSprop(p, momentum=-0.1)
    with pytest.raises(NotImplementedError):
        bnb.optim.RMSprop(p, momentum=0.1)


@pytest.mark.parametrize("cls, text, betas", [
    (bnb.optim.Adam, "(0.9, 0.995)", (0.9, 0.995)),
    (bnb.optim.AdamW8bit, "(0.8,0.99)", (0.8, 0.99)),
    (bnb.optim.LAMB, " (0.85, 0.98) ", (0.85, 0.98)),
    (bnb.optim.Lion, "0.95, 0.98", (0.95, 0.98)),
    (bnb.optim.AdEMAMix8bit, "(0.9, 0.999, 0.9999)", (0.9, 0.999, 0.9999)),
])
def test_betas_as_a_string(cls, text, betas, device):
    """betas="(0.9, 0.995)", as fairseq passes its command line's betas: the same group and the
    same step as the tuple."""
    torch.manual_seed(0)
    w = torch.randn(70, 70, device=device)
    g = torch.randn(70, 70, device=device)
    results = []
    for given in (text, betas):
        p = torch.nn.Parameter(w.clone())
        opt = cls([p], lr=1e-2, betas=given)
        assert opt.param_groups[0]["betas"] == betas
        p.grad = g.clone()
        opt.step()
        results.append(p.detach())
    assert torch.equal(results[0], results[1])


def test_betas_string_that_is_not_numbers():
    p = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(ValueError, match="betas"):
        bnb.optim.Adam([p], betas="(0.9, fast)")


def group_cases():
    for cls in CLASSES:
        accepted = inspect.signature(cls.__init__).parameters
        for name, value in BAD_VALUES:
            if name in accepted and not (name == "betas" and len(accepted["betas"].default) != 2):
                yield pytest.param(cls, name, value, id=f"{cls.__name__}-{name}={value}")


@pytest.mark.parametrize("cls,name,value", list(group_cases()))
def test_refused_in_a_param_group(cls, name, value):
    # a group's own setting is checked as the constructor's argument is, in the constructor and
    # in add_param_group, and a refused group is not added
    p, q = torch.nn.Parameter(torch.randn(8)), torch.nn.Parameter(torch.randn(8))
    with pytest.raises(ValueError, match=rf"param group 0: .*{'beta' if name == 'betas' else name}"):
        cls([{"params": [p], name: value}], lr=1e-3)
    opt = cls([p], lr=1e-3)
    with pytest.raises(ValueError, match=rf"param group 1: .*{'beta' if name == 'betas' else name}"):
        opt.add_param_group({"params": [q], name: value})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("kwargs,error,match", [
    ({"lr": "a"}, TypeError, "Adam8bit: lr must be a number, got str 'a'"),
    ({"lr": None}, TypeError, "Adam8bit: lr must be a number, got NoneType None"),
    ({"eps": [1e-8]}, TypeError, "Adam8bit: eps must be a number"),
    ({"betas": (0.9,)}, ValueError, r"Adam8bit: betas must hold 2 values, got \(0.9,\)"),
    ({"betas": 0.9}, TypeError, "Adam8bit: betas must be a tuple of numbers, got float 0.9"),
    ({"betas": (0.9, "x")}, TypeError, r"Adam8bit: betas\[1\] must be a number, got str 'x'"),
])
def test_not_a_number_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        bnb.optim.Adam8bit([torch.nn.Parameter(torch.randn(8))], **kwargs)


def test_a_group_of_ademamix_needs_three_betas():
    with pytest.raises(ValueError, match=r"AdEMAMix8bit: param group 0: betas must hold 3 values, got \(0.9, 0.99\)"):
        bnb.optim.AdEMAMix8bit([{"params": [torch.nn.Parameter(torch.randn(8))], "betas": (0.9, 0.99)}])


def test_tensor_lr_and_string_betas_in_a_group_are_taken():
    p = torch.nn.Parameter(torch.randn(8))
    opt = bnb.optim.Adam8bit([{"params": [p], "betas": "(0.9, 0.95)", "lr": torch.tensor(1e-3)}])
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)
    p.grad = torch.randn(8)
    opt.step()


def test_module_override_of_a_missing_parameter_is_refused():
    mng = bnb.optim.GlobalOptimManager.get_instance()
    with pytest.raises(ValueError, match="register_module_override: Linear has no parameter 'wieght'"):
        mng.register_module_override(torch.nn.Linear(2, 2), "wieght", {"optim_bits": 32})


@pytest.mark.parametrize("cls", [bnb.optim.LAMB8bit, bnb.optim.LARS])
def test_negative_max_unorm_is_refused(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: invalid max_unorm value: -1"):
        cls([torch.nn.Parameter(torch.randn(8))], lr=1e-3, max_unorm=-1)


def test_rmsprop_momentum_set_on_a_group_later_is_refused():
    # OneCycleLR writes group["momentum"] (the defaults hold it): refused at the step, not ignored
    w = torch.nn.Parameter(torch.randn(100))
    opt = bnb.optim.RMSprop([w], lr=0.01)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    w.grad = torch.randn(100)
    before = w.detach().clone()
    with pytest.raises(NotImplementedError, match="RMSprop with momentum or centering is not supported; a param "
                                                  "group has momentum = 0.95"):
        opt.step()
    assert torch.equal(w, before)
    opt = bnb.optim.RMSprop8bit([w], lr=0.01)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    opt.step()  # without momentum it steps
    assert not torch.equal(w, before)
    with pytest.raises(NotImplementedError, match="param group 1: RMSprop with momentum or centering"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(3))], "momentum": 0.9})
