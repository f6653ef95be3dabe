"""The state the kernel updates is always `optimizer.state`: replacing, deleting, clearing,
resetting or reloading it takes effect at the next step, and state_dict() saves what was
updated. A state dict that does not fit is refused at load_state_dict, naming parameter and key."""
import copy
import pickle
from collections import defaultdict

import pytest
import torch

import bitsandbytes as bnb

N = 5000  # 8-bit state


def stepped(device, cls=bnb.optim.Adam8bit, steps=2, shape=(N,), **kwargs):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape, device=device))
    opt = cls([p], lr=1e-2, **kwargs)
    for _ in range(steps):
        p.grad = torch.randn(shape, device=device)
        opt.step()
    return p, opt


def saved_state1(opt):
    return opt.state_dict()["state"][0]["__bnb_optimizer_quant_state__"]["state1"]


@pytest.mark.parametrize("key", ["state1", "absmax1", "state2"])
def test_a_replaced_state_tensor_is_the_one_updated(device, key):
    p, opt = stepped(device)
    old = opt.state[p][key]
    new = old.clone()
    opt.state[p][key] = new
    before_old, before_new = old.clone(), new.clone()
    p.grad = torch.randn(N, device=device)
    opt.step()
    assert torch.equal(old, before_old), "the replaced tensor must no longer be written"
    assert not torch.equal(new, before_new)
    # The same step as an optimizer that never had the tensor replaced.
    p2, opt2 = stepped(device)
    p2.grad = p.grad.clone()
    opt2.step()
    assert torch.equal(p.detach(), p2.detach())
    assert torch.equal(opt.state[p]["state1"], opt2.state[p2]["state1"])
    if key == "state1":
        assert torch.equal(saved_state1(opt), new)


@pytest.mark.parametrize("how", ["del", "clear", "reset", "reassign"])
def test_removed_state_starts_afresh(device, how):
    p, opt = stepped(device)
    if how == "del":
        del opt.state[p]
    elif how == "clear":
        opt.state[p].clear()
    elif how == "reset":
        opt.state = defaultdict(dict)
    else:
        opt.state[p] = {}
    g = torch.randn(N, device=device)
    p.grad = g
    before = p.detach().clone()
    opt.step()
    assert opt.state[p]["step"] == 1
    # Equal to a first step of a fresh optimizer from the same parameter.
    q = torch.nn.Parameter(before.clone())
    fresh = bnb.optim.Adam8bit([q], lr=1e-2)
    q.grad = g.clone()
    fresh.step()
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(saved_state1(opt), fresh.state[q]["state1"])


def test_loaded_state_is_the_one_updated(device):
    p, opt = stepped(device)
    sd = opt.state_dict()
    p.grad = torch.randn(N, device=device)
    opt.step()
    opt.load_state_dict(sd)
    loaded = opt.state[p]["state1"]
    before = loaded.clone()
    opt.step()
    assert not torch.equal(loaded, before)
    assert torch.equal(saved_state1(opt), loaded)


def test_state_copies_and_pickles_as_torch_does(device):
    p, opt = stepped(device, steps=1)
    deep = copy.deepcopy(opt.state)
    assert type(deep) is defaultdict and all(type(v) is dict for v in deep.values())
    shallow = copy.copy(opt.state)  # the same inner dicts, as a shallow copy keeps them
    assert type(shallow) is defaultdict and shallow[p] is opt.state[p]
    blob = pickle.loads(pickle.dumps(dict(opt.state[p])))
    assert torch.equal(blob["state1"], opt.state[p]["state1"])
    assert type(copy.deepcopy(opt.state[p])) is dict


def test_the_step_count_alone_does_not_rebuild_the_plan(device):
    p, opt = stepped(device)
    plan = opt._plan
    p.grad = torch.randn(N, device=device)
    opt.step()
    assert opt._plan is plan


def _sd(cls, device, shape=(N,), **kwargs):
    return stepped(device, cls, steps=1, shape=shape, **kwargs)[1].state_dict()


@pytest.mark.parametrize("src,dst,match", [
    ((bnb.optim.Adam8bit, {}), bnb.optim.Lion8bit, "parameter 0 of group 0: state2 is not a state of Lion8bit"),
    ((bnb.optim.SGD8bit, {"momentum": 0.9}), bnb.optim.Adam8bit, "parameter 0 of group 0: state2 is missing"),
    ((torch.optim.Adam, {}), bnb.optim.Adam8bit, "parameter 0 of group 0: unknown state key 'exp_avg'"),
])
def test_a_state_dict_of_another_class_is_refused(device, src, dst, match):
    cls, kwargs = src
    sd = _sd(cls, device, **kwargs)
    _, opt = stepped(device, dst, steps=1)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)


def test_a_state_dict_of_another_shape_is_refused(device):
    sd = _sd(bnb.optim.Adam8bit, device, shape=(2500, 3))
    _, opt = stepped(device, bnb.optim.Adam8bit, steps=1)
    with pytest.raises(ValueError, match=r"parameter 0 of group 0: state1 has shape \(2500, 3\), the parameter "
                                         r"has shape \(5000,\)"):
        opt.load_state_dict(sd)


def test_an_8bit_state_without_its_map_is_refused(device):
    sd = _sd(bnb.optim.Adam8bit, device)
    del sd["state"][0]["__bnb_optimizer_quant_state__"]["qmap2"]
    _, opt = stepped(device, bnb.optim.Adam8bit, steps=1)
    with pytest.raises(ValueError, match="the quantized state2 needs qmap2"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("cls,kwargs", [(bnb.optim.Adam8bit, {}), (bnb.optim.Lion8bit, {}),
                                        (bnb.optim.SGD8bit, {"momentum": 0.9})])
def test_a_cut_absmax_is_refused(device, cls, kwargs):
    # 5000 values are 20 blocks of 256: one absmax value is no blocksize's count (it used to be
    # taken as a tensor-wise scale and the step went on from wrong moments)
    sd = _sd(cls, device, **kwargs)
    qs = sd["state"][0]["__bnb_optimizer_quant_state__"]
    qs["absmax1"] = qs["absmax1"][:1]
    _, opt = stepped(device, cls, steps=1, **kwargs)
    with pytest.raises(ValueError, match="state1 has 1 absmax values for 5000 elements; no supported blocksize"):
        opt.load_state_dict(sd)
    opt.load_state_dict(_sd(cls, device, **kwargs))


def test_states_of_mixed_precision_are_refused(device):
    sd = _sd(bnb.optim.Adam8bit, device)
    qs = sd["state"][0]["__bnb_optimizer_quant_state__"]
    qs["state1"] = qs["state1"].float()
    _, opt = stepped(device, bnb.optim.Adam8bit, steps=1)
    with pytest.raises(ValueError, match="parameter 0 of group 0: state1 is torch.float32 and state2 torch.uint8"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("cls,key,edit,match", [
    (bnb.optim.Adam8bit, "qmap2", lambda q: q - 0.5, r"qmap2 maps a second moment and must be non-negative .*; "
                                                     r"got minimum -0.5"),
    (bnb.optim.AdamW4bit, "qmap2", lambda q: -q.flip(0), "qmap2 maps a second moment and must be non-negative"),
    (bnb.optim.Adam8bit, "qmap1", lambda q: q.flip(0), "qmap1 must be sorted in ascending order"),
    (bnb.optim.Lion8bit, "qmap1", lambda q: torch.where(q > 0.9, float("nan"), q), "qmap1 must hold finite values only"),
    (bnb.optim.Adam8bit, "qmap1", lambda q: q.double(), "qmap1 must be float32, got torch.float64"),
], ids=["negative-second-moment", "negative-second-moment-4bit", "descending", "nan", "float64"])
def test_a_map_the_kernels_cannot_requantize_into_is_refused(device, cls, key, edit, match):
    # A map with a negative entry for the second moment would make its square root NaN on the
    # next step; an unsorted or non-finite map would requantize to wrong codes, silently.
    sd = _sd(cls, device)
    qs = sd["state"][0]["__bnb_optimizer_quant_state__"]
    qs[key] = edit(qs[key])
    _, opt = stepped(device, cls, steps=1)
    with pytest.raises(ValueError, match="parameter 0 of group 0: " + match):
        opt.load_state_dict(sd)
    opt.load_state_dict(_sd(cls, device))  # the unedited state dict still loads


def test_states_in_different_maps_are_each_updated_in_their_own(device):
    # A state dict whose second parameter keeps its first moment in another map (a linear one):
    # each parameter steps as it would alone, where one update handing every parameter the first
    # one's map would read the second's codes in the wrong map.
    torch.manual_seed(1)
    ps = [torch.nn.Parameter(torch.randn(N, device=device)) for _ in range(2)]
    opt = bnb.optim.Adam8bit(ps, lr=1e-2)
    for _ in range(2):
        for p in ps:
            p.grad = torch.randn(N, device=device)
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    inner = sd["state"][1]["__bnb_optimizer_quant_state__"]
    linear = bnb.functional.create_linear_map(signed=True).to(device)
    values = bnb.functional.dequantize_blockwise(inner["state1"], absmax=inner["absmax1"], code=inner["qmap1"],
                                                 blocksize=256)
    q, qs = bnb.functional.quantize_blockwise(values, code=linear, blocksize=256)
    inner["state1"], inner["absmax1"], inner["qmap1"] = q, qs.absmax, linear
    grads = [torch.randn(N, device=device) for _ in ps]

    start = [p.detach().clone() for p in ps]
    both = bnb.optim.Adam8bit(ps, lr=1e-2)
    both.load_state_dict(copy.deepcopy(sd))
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    both.step()
    for i, p in enumerate(ps):
        alone_p = torch.nn.Parameter(start[i].clone())
        alone = bnb.optim.Adam8bit([alone_p], lr=1e-2)
        part = copy.deepcopy(sd)
        part["state"] = {0: part["state"][i]}
        part["param_groups"][0]["params"] = [0]
        alone.load_state_dict(part)
        alone_p.grad = grads[i].clone()
        alone.step()
        assert torch.equal(p.detach(), alone_p.detach()), f"parameter {i}"
        assert torch.equal(both.state[p]["state1"], alone.state[alone_p]["state1"]), f"parameter {i}"
    # the default maps loaded from a state dict are shared again: the other parameter's launch
    # is one with no other map
    assert both.state[ps[0]]["qmap2"] is both.state[ps[1]]["qmap2"]
    assert len(both._plan) == 2


@pytest.mark.parametrize("step,expect", [("x", None), (1.5, None), (-1, None), (2.0, 2), (torch.tensor(3.0), 3)])
def test_a_loaded_step_is_a_whole_number(device, step, expect):
    sd = _sd(bnb.optim.Adam8bit, device)
    sd["state"][0]["step"] = step
    p, opt = stepped(device, bnb.optim.Adam8bit, steps=1)
    if expect is None:
        with pytest.raises(ValueError, match="parameter 0 of group 0: step must be a whole number of steps taken"):
            opt.load_state_dict(sd)
    else:
        opt.load_state_dict(sd)
        assert opt.state[p]["step"] == expect and type(opt.state[p]["step"]) is int


@pytest.mark.parametrize("cls,kwargs", [(bnb.optim.AdamW, {}), (bnb.optim.AdamW8bit, {}), (bnb.optim.AdamW4bit, {}),
                                        (bnb.optim.PagedAdamW8bit, {}), (bnb.optim.AdEMAMix8bit, {}),
                                        (bnb.optim.SGD8bit, {"momentum": 0.9}), (bnb.optim.LAMB8bit, {})])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_optimizer_steps_as_the_original(device, cls, kwargs, how):
    # a copy of the model and optimizer together (deepcopy, or pickle as torch.save does) keeps
    # the optimizer's own settings: it steps, exactly as the original does with the same grads
    torch.manual_seed(0)
    model = torch.nn.Linear(100, 64).to(device)
    opt = cls(model.parameters(), lr=1e-2, **kwargs)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    pair = {"model": model, "opt": opt}
    copied = copy.deepcopy(pair) if how == "deepcopy" else pickle.loads(pickle.dumps(pair))
    assert copied["opt"].is_paged == opt.is_paged and copied["opt"].optimizer_name == opt.optimizer_name
    grads = [torch.randn_like(p) for p in model.parameters()]
    for m, o in ((model, opt), (copied["model"], copied["opt"])):
        for p, g in zip(m.parameters(), grads):
            p.grad = g.clone()
        o.step()
    for a, b in zip(model.parameters(), copied["model"].parameters()):
        assert torch.equal(a, b)
    for a, b in zip(model.parameters(), copied["model"].parameters()):
        for key, value in opt.state[a].items():
            other = copied["opt"].state[b][key]
            assert torch.equal(value.cpu(), other.cpu()) if isinstance(value, torch.Tensor) else value == other, key


def test_load_state_dict_runs_torchs_hooks(device):
    _, opt = stepped(device, bnb.optim.Adam8bit, steps=2)
    sd = opt.state_dict()
    _, fresh = stepped(device, bnb.optim.Adam8bit, steps=1)
    calls = []

    def pre(optimizer, state_dict):
        calls.append("pre")
        state_dict = copy.deepcopy(state_dict)
        state_dict["param_groups"][0]["lr"] = 0.5  # a pre-hook may rewrite what is loaded
        return state_dict

    fresh.register_load_state_dict_pre_hook(pre)
    fresh.register_load_state_dict_post_hook(lambda optimizer: calls.append(("post", optimizer.param_groups[0]["lr"])))
    fresh.load_state_dict(sd)
    assert calls == ["pre", ("post", 0.5)]
    assert sd["param_groups"][0]["lr"] == 1e-2  # the caller's state dict is left as it was
