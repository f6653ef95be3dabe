"""GlobalOptimManager: overrides belong to the parameter object (never to a reused id or a
position), no module is kept alive by the manager, and unknown settings are dropped with a warning."""
import gc
import weakref

import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.optim import GlobalOptimManager


@pytest.fixture(autouse=True)
def _fresh_manager():
    GlobalOptimManager.get_instance().initialize()
    yield
    GlobalOptimManager.get_instance().initialize()


def _model(device):
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(device)


def _step(model, opt):
    model(torch.randn(4, 64, device=next(model.parameters()).device)).square().mean().backward()
    opt.step()


def test_a_reused_id_inherits_nothing(device):
    mng = GlobalOptimManager.get_instance()
    old = torch.nn.Parameter(torch.randn(4, device=device))
    mng.override_config(old, "lr", 0.0)
    old_id = id(old)
    del old
    gc.collect()
    # allocate until a new tensor lands on the dead one's id (usually the first one does)
    keep = []
    for _ in range(10000):
        p = torch.nn.Parameter(torch.randn(4, device=device))
        if id(p) == old_id:
            break
        keep.append(p)
    else:
        pytest.skip("no new tensor reused the id")
    assert mng.config_for(p) == {}
    assert len(mng.param_overrides) == 0  # the dead parameter's entry went with it


def test_override_follows_the_parameter_not_its_position(device):
    mng = GlobalOptimManager.get_instance()
    a = _model(device)
    mng.register_parameters(a.parameters())
    mng.override_config(a[0].weight, key_value_dict={"lr": 0.0, "optim_bits": 32})
    # another model whose first parameter sits at the same position
    b = _model(device)
    opt_b = bnb.optim.Adam8bit(b.parameters(), lr=1e-2, min_8bit_size=16)
    before = b[0].weight.detach().clone()
    _step(b, opt_b)
    assert not torch.equal(b[0].weight, before)
    assert opt_b.state[b[0].weight]["state1"].dtype == torch.uint8
    # and the registered one is overridden, in any optimizer and at any position
    opt_a = bnb.optim.Adam8bit(list(reversed(list(a.parameters()))), lr=1e-2, min_8bit_size=16)
    before = a[0].weight.detach().clone()
    _step(a, opt_a)
    assert torch.equal(a[0].weight, before)
    assert opt_a.state[a[0].weight]["state1"].dtype == torch.float32


def test_override_set_before_registering_applies(device):
    mng = GlobalOptimManager.get_instance()
    model = _model("cpu")
    mng.override_config(model[2].weight, "optim_bits", 32)
    mng.register_parameters([{"params": list(model.parameters())}])
    model = model.to(device)
    opt = bnb.optim.Adam(model.parameters(), optim_bits=8, min_8bit_size=16)
    _step(model, opt)
    assert opt.state[model[2].weight]["state1"].dtype == torch.float32
    assert opt.state[model[0].weight]["state1"].dtype == torch.uint8


def test_no_module_is_kept_alive(device):
    emb = bnb.nn.StableEmbedding(100, 16).to(device)
    lin = torch.nn.Linear(4, 4).to(device)
    mng = GlobalOptimManager.get_instance()
    mng.register_module_override(lin, "weight", {"optim_bits": 32})
    mng.register_parameters(lin.parameters())
    mng.override_config(lin.bias, "lr", 0.0)
    refs = [weakref.ref(emb), weakref.ref(lin), weakref.ref(emb.weight), weakref.ref(lin.weight)]
    del emb, lin
    gc.collect()
    assert all(r() is None for r in refs)


def test_trainer_style_module_override_still_works(device):
    emb = torch.nn.Embedding(300, 32).to(device)
    head = torch.nn.Linear(32, 300).to(device)
    GlobalOptimManager.get_instance().register_module_override(emb, "weight", {"optim_bits": 32})
    opt = bnb.optim.Adam8bit(list(emb.parameters()) + list(head.parameters()), min_8bit_size=16)
    head(emb(torch.randint(0, 300, (8, 5), device=device))).square().mean().backward()
    opt.step()
    assert opt.state[emb.weight]["state1"].dtype == torch.float32
    assert opt.state[head.weight]["state1"].dtype == torch.uint8


@pytest.mark.parametrize("call", ["key_value", "dict", "module"])
def test_unknown_key_is_ignored_with_a_warning(call, device):
    """A key no optimizer reads (a typo, or is_sparse from the reference's own documentation
    example, which that library stores and never reads) is named in a warning and dropped; the
    known keys of the same call apply."""
    mng = GlobalOptimManager.get_instance()
    lin = torch.nn.Linear(4, 4).to(device)
    with pytest.warns(UserWarning, match="'optim_bitz'"):
        if call == "key_value":
            mng.override_config(lin.weight, "optim_bitz", 32)
        elif call == "dict":
            mng.override_config(lin.weight, key_value_dict={"lr": 0.1, "optim_bitz": 32})
        else:
            mng.register_module_override(lin, "weight", {"optim_bitz": 32})
    assert mng.config_for(lin.weight) == ({"lr": 0.1} if call == "dict" else {})


def test_reference_documentation_example(device):
    """The override example of the reference's documentation runs: its unknown key warns, the
    rest applies to the step."""
    mng = GlobalOptimManager.get_instance()
    emb = torch.nn.Embedding(64, 80).to(device)
    with pytest.warns(UserWarning, match="'is_sparse'"):
        mng.override_config([emb.weight], key_value_dict={"is_sparse": True, "lr": 1e-5, "betas": (0.9, 0.98)})
    assert mng.config_for(emb.weight) == {"lr": 1e-5, "betas": (0.9, 0.98)}
    opt = bnb.optim.Adam8bit(emb.parameters(), lr=1e-3)
    before = emb.weight.detach().clone()
    emb(torch.arange(64, device=device)).sum().backward()
    opt.step()
    # Adam's first step moves each value by about lr: the override's 1e-5, not the group's 1e-3.
    step = (emb.weight.detach() - before).abs().max().item()
    assert 0 < step < 1e-4


@pytest.mark.parametrize("key,value", [
    ("optim_bits", 32), ("min_8bit_size", 16), ("percentile_clipping", 95), ("block_wise", False),
    ("max_unorm", 0.5), ("lr", 0.1), ("betas", (0.8, 0.9)), ("eps", 1e-6), ("weight_decay", 0.1),
    ("momentum", 0.9), ("dampening", 0.1), ("nesterov", True), ("alpha", 0.9), ("lr_decay", 0.1),
    ("initial_accumulator_value", 0.1), ("bias_correction", False), ("adam_w_mode", False),
])
def test_known_keys_are_accepted(key, value, device):
    mng = GlobalOptimManager.get_instance()
    p = torch.nn.Parameter(torch.randn(4, device=device))
    mng.override_config(p, key, value)
    assert mng.config_for(p) == {key: value}


def test_an_override_value_torch_refuses_is_refused(device):
    p = torch.nn.Parameter(torch.randn(4, device=device))
    with pytest.raises(ValueError, match="lr"):
        GlobalOptimManager.get_instance().override_config(p, "lr", -1.0)
    with pytest.raises(ValueError, match="beta"):
        GlobalOptimManager.get_instance().override_config(p, "betas", (0.9, 1.5))


def test_betas_override_as_a_string(device):
    p = torch.nn.Parameter(torch.randn(4, device=device))
    GlobalOptimManager.get_instance().override_config(p, "betas", "(0.8, 0.9)")
    assert GlobalOptimManager.get_instance().config_for(p) == {"betas": (0.8, 0.9)}
