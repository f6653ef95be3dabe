"""Tensor-wise 8-bit optimizer state (block_wise=False, the default of LAMB and LARS) in the
reference library's layout and scheme: `max1`/`new_max1` (`max2`/`new_max2`) beside the
codes; a step dequantizes with `max1`, requantizes with the maximum of the updated state, and
`max1` carries that maximum to the next step. Checkpoints are written here in the formats of
the reference's 0.45.5 release (flat keys) and of its current release (nested), and the steps
are checked against a plain-torch simulation of that scheme."""
import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F

QUANT_STATE_KEY = "__bnb_optimizer_quant_state__"
NON_CASTABLE = {"qmap1", "qmap2", "max1", "max2", "new_max1", "new_max2", "state1", "state2", "gnorm_vec",
                "absmax1", "absmax2", "unorm_vec"}


def nearest(values, code):
    """Index of the nearest entry of the sorted `code` for each value (float64)."""
    code = code.double()
    idx = torch.searchsorted(code, values.double().clamp(code[0], code[-1])).clamp(1, 255)
    lo, hi = code[idx - 1], code[idx]
    return torch.where((values.double() - lo).abs() <= (hi - values.double()).abs(), idx - 1, idx).to(torch.uint8)


def simulate_adam_tensorwise(p, grads, st, lr, betas, eps, step, max_unorm=0.0):
    """The tensor-wise 8-bit Adam (LAMB with max_unorm > 0) of the reference, in float64 from the
    state dict `st` (state1/2, qmap1/2, max1/2) at step `step`: returns the parameter and the
    codes and maxima after the steps with `grads`."""
    p = p.double().clone()
    q1, q2 = st["state1"].cpu().clone(), st["state2"].cpu().clone()
    m1, m2 = float(st["max1"]), float(st["max2"])
    c1, c2 = st["qmap1"].cpu().double(), st["qmap2"].cpu().double()
    b1, b2 = betas
    for g in grads:
        step += 1
        g = g.double()
        s1 = b1 * c1[q1.long()] * m1 + (1 - b1) * g
        s2 = b2 * c2[q2.long()] * m2 + (1 - b2) * g * g
        m1, m2 = s1.abs().max().item(), s2.abs().max().item()  # the pre-pass over the new states
        q1, q2 = nearest(s1 / m1, c1), nearest(s2 / m2, c2)
        u = (s1 / (1 - b1 ** step)) / (s2.sqrt() / (1 - b2 ** step) ** 0.5 + eps)
        trust = 1.0
        if max_unorm > 0:
            unorm, pnorm = u.norm().item(), p.norm().item()
            trust = max_unorm * pnorm / unorm if unorm > max_unorm * pnorm else 1.0
        p = p - lr * trust * u
    return p, q1, q2, m1, m2


def reference_045_checkpoint(p, steps, lr, betas, eps, weight_decay=0.0, max_unorm=0.0):
    """A one-parameter Adam8bit/LAMB8bit(block_wise=False) state dict as the reference's 0.45.5
    writes it (flat keys, max1/new_max1 of shape [1], new_max holding the maximum before the
    last step, as its swap leaves it), made by simulating `steps` random steps from zero state."""
    torch.manual_seed(7)
    signed, unsigned = F.create_dynamic_map(signed=True), F.create_dynamic_map(signed=False)
    st = {"state1": torch.full(p.shape, 127, dtype=torch.uint8),  # code 127 of the signed map is 0
          "state2": torch.zeros(p.shape, dtype=torch.uint8), "qmap1": signed, "qmap2": unsigned,
          "max1": torch.zeros(1), "max2": torch.zeros(1)}
    assert signed[127] == 0 and unsigned[0] == 0
    prev = (0.0, 0.0)
    q = p.detach().clone()
    for k in range(steps):
        prev = (float(st["max1"]), float(st["max2"]))
        q, st["state1"], st["state2"], m1, m2 = simulate_adam_tensorwise(
            q, [torch.randn(p.shape)], st, lr, betas, eps, k, max_unorm)
        st["max1"], st["max2"] = torch.tensor([m1], dtype=torch.float32), torch.tensor([m2], dtype=torch.float32)
        q = q.float()
    entry = dict(st, step=steps, new_max1=torch.tensor([prev[0]]), new_max2=torch.tensor([prev[1]]))
    if max_unorm > 0:
        entry["unorm_vec"] = torch.zeros(1)
    group = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "params": [0]}
    return {"state": {0: entry}, "param_groups": [group]}, q


def test_block_wise_false_state_has_the_reference_keys(device):
    p = torch.nn.Parameter(torch.randn(5000, device=device))
    opt = bnb.optim.Adam8bit([p], block_wise=False)
    p.grad = torch.randn_like(p)
    opt.step()
    st = opt.state[p]
    assert {"max1", "new_max1", "max2", "new_max2"} <= set(st) and "absmax1" not in st and "absmax2" not in st
    for key in ("max1", "new_max1", "max2", "new_max2"):
        assert st[key].shape == (1,) and st[key].dtype == torch.float32 and st[key].device == p.device
    # max1 is the maximum magnitude of the state just written: its largest value got an end
    # of the map (1 or, for a negative one, the signed map's -0.993)
    for i, q in (("1", st["state1"]), ("2", st["state2"])):
        values = st[f"qmap{i}"][q.long()] * st[f"max{i}"]
        assert 0.99 * st[f"max{i}"].item() <= values.abs().max().item() <= st[f"max{i}"].item()


@pytest.mark.parametrize("name", ["LAMB", "LAMB8bit", "LAMB32bit", "LARS", "LARS8bit", "LARS32bit"])
def test_lamb_and_lars_default_to_tensorwise_state(name):
    cls = getattr(bnb.optim, name)
    p = torch.nn.Parameter(torch.randn(5000))
    opt = cls([p], lr=1e-3)
    assert opt.args.block_wise is False
    if name.endswith("8bit"):
        p.grad = torch.randn_like(p)
        opt.step()
        assert "max1" in opt.state[p] and "absmax1" not in opt.state[p]
        assert opt.state[p]["unorm_vec"].shape == (1,)


@pytest.mark.parametrize("max_unorm", [0.0, 1.0])
def test_steps_follow_the_tensorwise_scheme(max_unorm, device):
    """Five steps from zero state equal a float64 simulation of the reference's scheme."""
    torch.manual_seed(0)
    n = 3001
    p0 = torch.randn(n)
    grads = [torch.randn(n) * (1 + k) for k in range(5)]
    cls = bnb.optim.LAMB8bit if max_unorm else bnb.optim.Adam8bit
    p = torch.nn.Parameter(p0.clone().to(device))
    kw = dict(max_unorm=max_unorm) if max_unorm else dict(block_wise=False)
    opt = cls([p], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, min_8bit_size=1, **kw)
    for g in grads:
        p.grad = g.to(device)
        opt.step()
    zero = {"state1": torch.full((n,), 127, dtype=torch.uint8), "state2": torch.zeros(n, dtype=torch.uint8),
            "qmap1": F.create_dynamic_map(True), "qmap2": F.create_dynamic_map(False), "max1": 0.0, "max2": 0.0}
    want, q1, q2, m1, m2 = simulate_adam_tensorwise(p0, grads, zero, 1e-2, (0.9, 0.99), 1e-8, 0, max_unorm)
    st = opt.state[p]
    assert st["max1"].item() == pytest.approx(m1, rel=1e-4) and st["max2"].item() == pytest.approx(m2, rel=1e-4)
    assert (st["state1"].cpu() == q1).float().mean() > 0.99 and (st["state2"].cpu() == q2).float().mean() > 0.99
    moved = (want - p0.double()).abs().mean()
    assert (p.detach().cpu().double() - want).abs().mean() < 0.02 * moved


@pytest.mark.parametrize("cls,max_unorm", [(bnb.optim.Adam8bit, 0.0), (bnb.optim.LAMB8bit, 1.0)])
def test_reference_045_tensorwise_checkpoint_resumes(cls, max_unorm, device):
    """A 0.45.5 checkpoint (flat, max1/new_max1) loads (no KeyError) and the next steps are the
    ones its scheme takes from that state."""
    n = 4099
    p0 = torch.randn(n)
    sd, p_ckpt = reference_045_checkpoint(p0, 3, 1e-2, (0.9, 0.99), 1e-8, max_unorm=max_unorm)
    p = torch.nn.Parameter(p_ckpt.clone().to(device))
    kw = {"block_wise": False} if cls is bnb.optim.Adam8bit else {}
    opt = cls([p], lr=0.5, min_8bit_size=1, **kw)
    opt.load_state_dict(sd)
    st = opt.state[p]
    assert st["step"] == 3 and torch.equal(st["max1"].cpu(), sd["state"][0]["max1"])
    assert torch.equal(st["state1"].cpu(), sd["state"][0]["state1"]) and st["max1"].device == p.device
    assert opt.param_groups[0]["lr"] == 1e-2  # the checkpoint's settings
    grads = [torch.randn(n) for _ in range(2)]
    for g in grads:
        p.grad = g.to(device)
        opt.step()
    want, q1, _, m1, _ = simulate_adam_tensorwise(p_ckpt, grads, sd["state"][0], 1e-2, (0.9, 0.99), 1e-8, 3,
                                                 max_unorm)
    assert st["step"] == 5 and st["max1"].item() == pytest.approx(m1, rel=1e-4)
    assert (st["state1"].cpu() == q1).float().mean() > 0.99
    moved = (want - p_ckpt.double()).abs().mean()
    assert (p.detach().cpu().double() - want).abs().mean() < 0.02 * moved


def test_reference_045_tensorwise_checkpoint_into_block_wise_state(device):
    """Loaded into block-wise state, the tensor-wise state is requantized per 256 values: the
    dequantized moments stay those of the checkpoint."""
    n = 2000
    sd, p_ckpt = reference_045_checkpoint(torch.randn(n), 2, 1e-2, (0.9, 0.99), 1e-8)
    p = torch.nn.Parameter(p_ckpt.clone().to(device))
    opt = bnb.optim.Adam8bit([p], block_wise=True, min_8bit_size=1)
    opt.load_state_dict(sd)
    st = opt.state[p]
    assert "max1" not in st and "new_max1" not in st and st["absmax1"].shape == (8,)
    for i in ("1", "2"):
        saved = sd["state"][0]
        want = saved[f"qmap{i}"][saved[f"state{i}"].long()] * saved[f"max{i}"]
        got = F.dequantize_blockwise(st[f"state{i}"], absmax=st[f"absmax{i}"], code=st[f"qmap{i}"], blocksize=256)
        assert (got.cpu() - want).abs().max() <= 0.02 * want.abs().max()


def test_block_wise_checkpoint_into_tensorwise_state(device):
    """An older LAMB checkpoint with per-block absmax loads into the tensor-wise default."""
    n = 3000
    p = torch.nn.Parameter(torch.randn(n, device=device))
    old = bnb.optim.LAMB8bit([p], block_wise=True, min_8bit_size=1)
    p.grad = torch.randn_like(p)
    old.step()
    sd = old.state_dict()
    assert "absmax1" in sd["state"][0][QUANT_STATE_KEY]
    opt = bnb.optim.LAMB8bit([p], min_8bit_size=1)
    opt.load_state_dict(sd)
    st = opt.state[p]
    assert "absmax1" not in st and st["max1"].shape == st["new_max1"].shape == (1,)
    for i in ("1", "2"):
        inner = sd["state"][0][QUANT_STATE_KEY]
        want = F.dequantize_blockwise(inner[f"state{i}"], absmax=inner[f"absmax{i}"], code=inner[f"qmap{i}"],
                                      blocksize=256)
        got = st[f"qmap{i}"][st[f"state{i}"].long()] * st[f"max{i}"]
        assert (got - want).abs().max() <= 0.02 * want.abs().max()
        assert st[f"max{i}"].item() == pytest.approx(want.abs().max().item(), rel=1e-6)
    p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[p]["step"] == 2


def reference_current_loader(sd, param):
    """What the reference's current release reads from a state dict on load and at its step:
    the entry unwrapped from its quant-state key, the tensors it cannot cast on the parameter's
    device, and the group keys its get_config reads (a KeyError where one is missing)."""
    entry = dict(sd["state"][0])
    entry.update(entry.pop(QUANT_STATE_KEY, {}))
    group = sd["param_groups"][0]
    config = {k: group[k] for k in ("betas", "eps", "weight_decay", "lr")}
    for key, value in entry.items():
        if key in NON_CASTABLE:
            entry[key] = value.to(param.device, copy=True)  # the reference loads a deep copy
    return entry, config


@pytest.mark.parametrize("percentile_clipping", [100, 50])
def test_our_lamb_checkpoint_steps_in_the_reference_format(percentile_clipping, device):
    """Our LAMB8bit state dict nests every state tensor (unorm_vec and gnorm_vec included) as
    the reference's current release does, holds what its tensor-wise step reads, and stepping
    that state by the reference's scheme gives our next step."""
    torch.manual_seed(3)
    n = 4500
    p = torch.nn.Parameter(torch.randn(n, device=device))
    opt = bnb.optim.LAMB8bit([p], lr=1e-2, betas=(0.9, 0.99), weight_decay=0.0, min_8bit_size=1,
                             percentile_clipping=percentile_clipping)
    for _ in range(3):
        p.grad = torch.randn_like(p)
        opt.step()
    sd = opt.state_dict()
    entry = sd["state"][0]
    assert set(entry) == {"step", QUANT_STATE_KEY}
    inner = entry[QUANT_STATE_KEY]
    want_keys = {"state1", "state2", "qmap1", "qmap2", "max1", "max2", "new_max1", "new_max2", "unorm_vec"}
    if percentile_clipping < 100:
        want_keys.add("gnorm_vec")
    assert set(inner) == want_keys and inner["unorm_vec"].shape == (1,)
    st, config = reference_current_loader(sd, p)
    p_before = p.detach().cpu().clone()
    g = torch.randn(n)
    p.grad = g.to(device)
    if percentile_clipping < 100:
        return  # clipping scales the gradient first; the layout above is what the reference reads
    opt.step()
    want, q1, _, m1, _ = simulate_adam_tensorwise(p_before, [g], st, config["lr"], config["betas"], config["eps"],
                                                 entry["step"], max_unorm=1.0)
    assert opt.state[p]["max1"].item() == pytest.approx(m1, rel=1e-4)
    assert (opt.state[p]["state1"].cpu() == q1).float().mean() > 0.99
    moved = (want - p_before.double()).abs().mean()
    assert (p.detach().cpu().double() - want).abs().mean() < 0.02 * moved


def test_reference_current_tensorwise_checkpoint_round_trips(device):
    """A state dict nested as the current release writes it loads, and saves back the same."""
    sd, p_ckpt = reference_045_checkpoint(torch.randn(3000), 2, 1e-3, (0.9, 0.999), 1e-8, max_unorm=1.0)
    flat = sd["state"][0]
    sd["state"][0] = {"step": flat.pop("step"), QUANT_STATE_KEY: flat}
    p = torch.nn.Parameter(p_ckpt.clone().to(device))
    opt = bnb.optim.LAMB8bit([p], min_8bit_size=1)
    opt.load_state_dict(sd)
    again = opt.state_dict()["state"][0][QUANT_STATE_KEY]
    for key, value in flat.items():
        assert torch.equal(again[key].cpu(), value), key


def test_old_checkpoint_without_unorm_vec_gets_one(device):
    p = torch.nn.Parameter(torch.randn(3000, device=device))
    opt = bnb.optim.LARS8bit([p], lr=0.1, momentum=0.9, min_8bit_size=1)
    p.grad = torch.randn_like(p)
    opt.step()
    sd = opt.state_dict()
    del sd["state"][0][QUANT_STATE_KEY]["unorm_vec"]
    other = bnb.optim.LARS8bit([p], lr=0.1, momentum=0.9, min_8bit_size=1)
    other.load_state_dict(sd)
    assert other.state[p]["unorm_vec"].shape == (1,)
    other.step()
    assert other.state[p]["step"] == 2
