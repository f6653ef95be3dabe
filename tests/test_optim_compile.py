"""torch.compile with every optimizer class: `torch.compile(opt.step)` and a compiled function
that runs forward, backward and `opt.step()` give the parameters the eager step gives, on every
device (dynamo with its eager backend for every class, inductor for two). The step is one
graph break (it runs eagerly, docs/optimizers.md); the forward and backward around it are
compiled."""
import inspect

import pytest
import torch

import bitsandbytes as bnb

NOT_OPTIMIZERS = {"GlobalOptimManager", "Optimizer1State", "Optimizer2State", "Optimizer8bit"}
CLASSES = [getattr(bnb.optim, n) for n in bnb.optim.__all__ if n not in NOT_OPTIMIZERS]


def _pair(cls, device):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 8)).to(device)
    b = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 8)).to(device)
    b.load_state_dict(a.state_dict())
    kw = {"lr": 1e-2}
    if "min_8bit_size" in inspect.signature(cls.__init__).parameters:
        kw["min_8bit_size"] = 16  # the weights get 8-bit state in the 8-bit classes
    return a, b, cls(a.parameters(), **kw), cls(b.parameters(), **kw)


def _train_step(model, opt, x):
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_compiled_steps_match_eager(cls, device):
    torch._dynamo.reset()
    a, b, opt_a, opt_b = _pair(cls, device)
    # torch.compile(opt.step), the first step (state allocation) included
    step = torch.compile(opt_a.step, backend="eager")
    for _ in range(2):
        x = torch.randn(5, 64, device=device)
        for m in (a, b):
            m.zero_grad()
            m(x).square().mean().backward()
        step()
        opt_b.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    # a compiled function running forward, backward and the step
    compiled = torch.compile(_train_step, backend="eager")
    for _ in range(2):
        x = torch.randn(5, 64, device=device)
        torch.testing.assert_close(compiled(a, opt_a, x), _train_step(b, opt_b, x), rtol=1e-6, atol=1e-7)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", [bnb.optim.AdamW8bit, bnb.optim.AdEMAMix8bit], ids=lambda c: c.__name__)
def test_inductor_training_step(cls, device):
    # the default backend (inductor) compiles the forward and backward around the step
    torch._dynamo.reset()
    a, b, opt_a, opt_b = _pair(cls, device)

    compiled = torch.compile(_train_step)
    for _ in range(2):
        x = torch.randn(5, 64, device=device)
        compiled(a, opt_a, x)
        _train_step(b, opt_b, x)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_step_is_one_graph_break():
    torch._dynamo.reset()
    p = torch.nn.Parameter(torch.randn(300))
    opt = bnb.optim.AdamW8bit([p], min_8bit_size=16)

    def fn(x):
        y = x * 2
        opt.step()
        return y + p

    p.grad = torch.randn(300)
    explained = torch._dynamo.explain(fn)(torch.randn(300))
    assert explained.graph_break_count == 1
    assert "bitsandbytes optimizer step runs eagerly" in str(explained.break_reasons[0].reason)
