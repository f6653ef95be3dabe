"""The module paths and helper names user code imports from the reference library, each
checked against what it must do (plain torch as the reference)."""
import importlib

import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F


def test_nn_modules_reexports_the_layers():
    modules = importlib.import_module("bitsandbytes.nn.modules")
    for name in bnb.nn.__all__:
        assert getattr(modules, name) is getattr(bnb.nn, name)


@pytest.mark.parametrize("module, names", [
    ("bitsandbytes.optim.adamw", ["AdamW", "AdamW8bit", "AdamW32bit", "PagedAdamW", "PagedAdamW8bit",
                                  "PagedAdamW32bit"]),
    ("bitsandbytes.optim.adam", ["Adam", "Adam8bit", "Adam32bit", "PagedAdam", "PagedAdam8bit", "PagedAdam32bit"]),
    ("bitsandbytes.optim.lars", ["LARS", "LARS8bit", "LARS32bit", "PytorchLARS"]),
    ("bitsandbytes.optim.sgd", ["SGD", "SGD8bit", "SGD32bit"]),
    ("bitsandbytes.optim.lion", ["Lion", "Lion8bit", "Lion32bit", "PagedLion", "PagedLion8bit", "PagedLion32bit"]),
    ("bitsandbytes.optim.lamb", ["LAMB", "LAMB8bit", "LAMB32bit"]),
    ("bitsandbytes.optim.rmsprop", ["RMSprop", "RMSprop8bit", "RMSprop32bit"]),
    ("bitsandbytes.optim.adagrad", ["Adagrad", "Adagrad8bit", "Adagrad32bit"]),
    ("bitsandbytes.optim.ademamix", ["AdEMAMix", "AdEMAMix8bit", "AdEMAMix32bit", "PagedAdEMAMix", "PagedAdEMAMix8bit",
                                     "PagedAdEMAMix32bit"]),
    ("bitsandbytes.optim.optimizer", ["Optimizer8bit", "Optimizer1State", "Optimizer2State", "GlobalOptimManager"]),
])
def test_optim_submodules(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is getattr(bnb.optim, name)


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(40, 30, generator=g)), torch.nn.Parameter(torch.randn(30, generator=g))]


def _run(opt_cls, params, steps=5, seed=1, **kw):
    opt = opt_cls(params, **kw)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return params


@pytest.mark.parametrize("kw", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-2),
                                dict(momentum=0.9, dampening=0.1), dict()])
def test_pytorch_lars_without_trust_ratio_is_torch_sgd(kw):
    ours = _run(bnb.optim.PytorchLARS, _params(), lr=0.1, max_unorm=0.0, **kw)
    ref = _run(torch.optim.SGD, _params(), lr=0.1, **kw)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_pytorch_lars_trust_ratio_caps_the_update():
    p = torch.nn.Parameter(torch.ones(100))
    opt = bnb.optim.PytorchLARS([p], lr=1.0, momentum=0.9, max_unorm=0.02)
    p.grad = torch.full((100,), 5.0)
    before = p.detach().clone()
    opt.step()
    # ||update|| = 50 > 0.02 * ||p|| = 0.2: the step is scaled to length lr * 0.2
    torch.testing.assert_close(torch.linalg.vector_norm(p.detach() - before), torch.tensor(0.2))


@pytest.mark.parametrize("kw", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.5,
                                                                                           weight_decay=1e-3)])
def test_fused_lars_matches_pytorch_lars(kw):
    ours = _run(bnb.optim.LARS32bit, _params(), lr=0.05, max_unorm=0.02, **kw)
    ref = _run(bnb.optim.PytorchLARS, _params(), lr=0.05, max_unorm=0.02, **kw)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_pytorch_lars_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr"):
        bnb.optim.PytorchLARS(_params(), lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        bnb.optim.PytorchLARS(_params(), lr=0.1, nesterov=True)
