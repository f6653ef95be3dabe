"""Param groups and load_state_dict as the reference library has them: every group carries
`betas` and `eps`; a reference checkpoint's SGD/LARS (momentum, dampening) and RMSprop
(alpha, momentum), kept only in `betas`, are honoured; move_to_device. The checkpoints are
written here in the reference's format; the steps are checked against plain float64 torch."""
import pytest
import torch

import bitsandbytes as bnb

QUANT_STATE_KEY = "__bnb_optimizer_quant_state__"
def _optimizer_classes():
    out = []
    for name in dir(bnb.optim):
        cls = getattr(bnb.optim, name)
        if isinstance(cls, type) and issubclass(cls, bnb.optim.optimizer.Optimizer8bit) and name[0].isupper() \
                and cls.__module__.startswith("bitsandbytes.optim.") and name not in (
                    "Optimizer8bit", "Optimizer1State", "Optimizer2State"):
            out.append(name)
    return sorted(out)


@pytest.mark.parametrize("name", _optimizer_classes())
def test_every_group_carries_betas_and_eps(name):
    cls = getattr(bnb.optim, name)
    opt = cls([torch.nn.Parameter(torch.randn(8))], lr=0.1)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(3))]})
    for group in opt.param_groups + opt.state_dict()["param_groups"]:
        # AdEMAMix's betas hold beta3 too, as the reference's do
        assert len(group["betas"]) == (3 if "AdEMAMix" in name else 2) and isinstance(group["eps"], float)


def test_betas_mirror_the_named_settings():
    p = [torch.nn.Parameter(torch.randn(8))]
    assert bnb.optim.SGD(p, 0.1, momentum=0.8, dampening=0.1).param_groups[0]["betas"] == (0.8, 0.1)
    assert bnb.optim.LARS(p, 0.1, momentum=0.7).param_groups[0]["betas"] == (0.7, 0)
    assert bnb.optim.SGD(p, 0.1, momentum=0.8).param_groups[0]["eps"] == 0.0
    assert bnb.optim.RMSprop(p, alpha=0.95).param_groups[0]["betas"] == (0.95, 0)
    assert bnb.optim.Adagrad(p).param_groups[0]["betas"] == (0.0, 0.0)
    opt = bnb.optim.SGD(p, 0.1, momentum=0.8)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(3))], "momentum": 0.5})
    assert opt.param_groups[1]["betas"] == (0.5, 0)
    opt.param_groups[0]["momentum"] = 0.6  # a schedule changed it: the saved betas follow
    assert opt.state_dict()["param_groups"][0]["betas"] == (0.6, 0)


def _reference_checkpoint(group, buf, step, device):
    """A state dict as the reference writes one for a one-parameter Optimizer1State: no named
    settings in the group, the state tensors nested under its quant-state key."""
    return {"state": {0: {"step": step, QUANT_STATE_KEY: {"state1": buf.clone().to(device)}}},
            "param_groups": [dict(group, params=[0])]}


def _sgd64(p, buf, grads, lr, momentum, dampening, wd):
    p, buf = p.double(), buf.double()
    for g in grads:
        g = g.double() + wd * p
        buf = momentum * buf + (1 - dampening) * g
        p = p - lr * buf
    return p


def _rmsprop64(p, v, grads, lr, alpha, eps, wd):
    p, v = p.double(), v.double()
    for g in grads:
        g = g.double() + wd * p
        v = alpha * v + (1 - alpha) * g * g
        p = p - lr * g / (v.sqrt() + eps)
    return p


def _resume(opt, p, grads):
    for g in grads:
        p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("cls", [bnb.optim.SGD, bnb.optim.SGD32bit])
def test_reference_sgd_checkpoint_momentum_and_dampening(cls, device):
    p0 = torch.randn(300, device=device)
    buf = torch.randn(300, device=device)
    grads = [torch.randn(300, device=device) for _ in range(3)]
    ck = _reference_checkpoint({"lr": 0.05, "betas": (0.8, 0.2), "eps": 0.0, "weight_decay": 0.01}, buf, 4, device)
    p = torch.nn.Parameter(p0.clone())
    opt = cls([p], 0.05, 0.9)  # other momentum and dampening than the checkpoint's
    opt.load_state_dict(ck)
    group = opt.param_groups[0]
    assert (group["momentum"], group["dampening"], group["betas"]) == (0.8, 0.2, (0.8, 0.2))
    _resume(opt, p, grads)
    want = _sgd64(p0, buf, grads, 0.05, 0.8, 0.2, 0.01)
    torch.testing.assert_close(p.double(), want, rtol=1e-5, atol=1e-5)


def test_reference_lars_checkpoint_momentum(device):
    ck = _reference_checkpoint({"lr": 0.01, "betas": (0.7, 0.0), "eps": 0.0, "weight_decay": 0.0},
                               torch.zeros(10), 1, device)
    opt = bnb.optim.LARS([torch.nn.Parameter(torch.randn(10, device=device))], 0.01, momentum=0.9)
    opt.load_state_dict(ck)
    assert opt.param_groups[0]["momentum"] == 0.7 and opt.param_groups[0]["betas"] == (0.7, 0.0)


def test_reference_rmsprop_checkpoint_alpha(device):
    p0 = torch.randn(300, device=device)
    v = torch.rand(300, device=device)
    grads = [torch.randn(300, device=device) for _ in range(3)]
    ck = _reference_checkpoint({"lr": 1e-3, "betas": (0.9, 0), "eps": 1e-6, "weight_decay": 0.0}, v, 2, device)
    p = torch.nn.Parameter(p0.clone())
    opt = bnb.optim.RMSprop([p], lr=1e-3, alpha=0.99)
    opt.load_state_dict(ck)
    assert opt.param_groups[0]["alpha"] == 0.9
    _resume(opt, p, grads)
    want = _rmsprop64(p0, v, grads, 1e-3, 0.9, 1e-6, 0.0)
    torch.testing.assert_close(p.double(), want, rtol=1e-5, atol=1e-5)


def test_reference_rmsprop_checkpoint_with_momentum_is_refused():
    ck = _reference_checkpoint({"lr": 1e-3, "betas": (0.9, 0.5), "eps": 1e-8, "weight_decay": 0.0},
                               torch.zeros(4), 1, "cpu")
    opt = bnb.optim.RMSprop([torch.nn.Parameter(torch.randn(4))])
    with pytest.raises(NotImplementedError, match="momentum"):
        opt.load_state_dict(ck)
    assert opt.param_groups[0]["alpha"] == 0.99 and len(opt.state) == 0  # left as it was


def test_our_checkpoint_reads_as_the_reference_reads_it(device):
    """The reference's SGD step takes momentum = betas[0], dampening = betas[1] and eps from the
    group: a float64 step written that way, from our saved state, matches our resumed step."""
    p = torch.nn.Parameter(torch.randn(300, device=device))
    opt = bnb.optim.SGD([p], 0.05, momentum=0.85, dampening=0.1)
    p.grad = torch.randn_like(p)
    opt.step()
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    buf = sd["state"][0][QUANT_STATE_KEY]["state1"]
    g = torch.randn_like(p)
    want = _sgd64(p.detach(), buf, [g], group["lr"], group["betas"][0], group["betas"][1], group["weight_decay"])
    assert group["eps"] == 0.0
    _resume(opt, p, [g])
    torch.testing.assert_close(p.double(), want, rtol=1e-5, atol=1e-5)


def test_old_checkpoint_without_betas_gets_them():
    p = torch.nn.Parameter(torch.randn(8))
    sd = bnb.optim.SGD([p], 0.1, momentum=0.3).state_dict()
    for key in ("betas", "eps"):
        del sd["param_groups"][0][key]
    opt = bnb.optim.SGD([p], 0.1, momentum=0.9)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["momentum"] == 0.3 and opt.param_groups[0]["betas"] == (0.3, 0)


def _eight_bit_checkpoint(device):
    p = torch.nn.Parameter(torch.randn(5000, device=device))
    opt = bnb.optim.Adam8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    return p, opt.state_dict()


def test_move_to_device_true_moves_state_to_the_parameter(device):
    p, sd = _eight_bit_checkpoint("cpu")
    q = torch.nn.Parameter(p.detach().to(device))
    opt = bnb.optim.Adam8bit([q])
    opt.load_state_dict(sd, move_to_device=True)
    assert all(t.device == q.device for t in opt.state[q].values() if isinstance(t, torch.Tensor))


def test_move_to_device_false_keeps_the_loaded_device(device):
    p, sd = _eight_bit_checkpoint(device)
    # the state's own device, other than the parameter's: meta beside a CPU parameter
    other = "cpu" if device != "cpu" else "meta"
    inner = sd["state"][0][QUANT_STATE_KEY]
    saved = {k: v.clone() for k, v in inner.items()}
    for k in inner:
        inner[k] = inner[k].to(other)
    opt = bnb.optim.Adam8bit([p])
    opt.load_state_dict(sd, move_to_device=False)
    st = opt.state[p]
    for k in saved:
        assert st[k].device.type == other and st[k].dtype == saved[k].dtype
        if other != "meta":
            assert torch.equal(st[k], saved[k].to(other))
            assert st[k].data_ptr() != inner[k].data_ptr()  # a copy, not the state dict's tensor


def test_move_to_device_must_be_a_bool():
    p, sd = _eight_bit_checkpoint("cpu")
    with pytest.raises(TypeError, match="move_to_device"):
        bnb.optim.Adam8bit([p]).load_state_dict(sd, move_to_device="cuda")
