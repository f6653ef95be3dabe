"""bitsandbytes.optim against torch's optimizers and plain-torch references (tests/reference_optim.py),
on every device."""
import copy
import os

import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.optim import GlobalOptimManager
from reference_optim import ReferenceOptimizer

# name -> (bnb class, torch reference class or None for the plain reference, kwargs)
ALGOS = {
    "adam": (bnb.optim.Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.05)),
    "adamw": (bnb.optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "sgd": (bnb.optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, weight_decay=1e-3)),
    "sgd_nesterov": (bnb.optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.8, nesterov=True)),
    "sgd_dampening": (bnb.optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, dampening=0.3)),
    "rmsprop": (bnb.optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, alpha=0.95, weight_decay=1e-3)),
    "adagrad": (bnb.optim.Adagrad, torch.optim.Adagrad, dict(lr=1e-2, lr_decay=0.01, initial_accumulator_value=0.1)),
    "lion": (bnb.optim.Lion, None, dict(lr=1e-3, weight_decay=0.1)),
    "lars": (bnb.optim.LARS, None, dict(lr=1e-2, momentum=0.9, max_unorm=0.02)),
    "lamb": (bnb.optim.LAMB, None, dict(lr=1e-2, weight_decay=0.01)),
}
REF_NAME = {"sgd_nesterov": "sgd", "sgd_dampening": "sgd"}
EIGHT_BIT = ["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "lars", "lamb"]


@pytest.fixture(autouse=True)
def _fresh_manager():
    GlobalOptimManager.get_instance().initialize()
    yield
    GlobalOptimManager.get_instance().initialize()


def make_params(device, dtype=torch.float32, shapes=((67, 93), (1000,), (5,))):
    # sizes that are not multiples of the 256-value block
    return [torch.randn(s, device=device).to(dtype) for s in shapes]


def reference_for(name, params):
    cls, ref_cls, kw = ALGOS[name]
    if ref_cls is not None:
        return ref_cls(params, **kw)
    return ReferenceOptimizer(REF_NAME.get(name, name), params, **kw)


def run_pair(name, device, steps, dtype=torch.float32, optim_bits=32, min_8bit_size=4096, shapes=None, **extra):
    """Runs ours and the reference on the same parameters and gradients."""
    cls, _, kw = ALGOS[name]
    base = make_params(device, dtype, shapes) if shapes else make_params(device, dtype)
    ours = [p.clone().requires_grad_() for p in base]
    if dtype == torch.float32:
        ref_params = [p.clone().requires_grad_() for p in base]
        ref = reference_for(name, ref_params)
    else:
        ref_params = [p.clone().requires_grad_() for p in base]
        ref = ReferenceOptimizer(REF_NAME.get(name, name), ref_params, **kw)
    opt = cls(ours, optim_bits=optim_bits, min_8bit_size=min_8bit_size, **kw, **extra)
    for _ in range(steps):
        for a, b in zip(ours, ref_params):
            g = torch.randn_like(a)
            a.grad = g.clone()
            b.grad = g.clone()
        opt.step()
        ref.step()
    return base, ours, ref_params, opt, ref


@pytest.mark.parametrize("name", list(ALGOS))
def test_32bit_matches_reference(name, device):
    _, ours, ref, opt, _ = run_pair(name, device, steps=40)
    for a, b in zip(ours, ref):
        # Lion's sign can flip where its argument is a rounding error away from zero.
        mismatch = ((a - b).abs() > 2e-5 + 1e-5 * b.abs()).float().mean().item()
        assert mismatch <= (2e-3 if name == "lion" else 0.0), f"{name}: {mismatch:.4%} of values differ"
    assert all(s["state1"].dtype == torch.float32 for s in opt.state.values())


def test_plain_reference_matches_torch(device):
    # The plain references that stand in for Lion/LARS/LAMB agree with torch where torch has the algorithm.
    for name, torch_cls, kw in [("adamw", torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
                                ("sgd", torch.optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True)),
                                ("rmsprop", torch.optim.RMSprop, dict(lr=1e-3))]:
        p1 = torch.randn(300, device=device, requires_grad=True)
        p2 = p1.detach().clone().requires_grad_()
        a, b = ReferenceOptimizer(name, [p1], **kw), torch_cls([p2], **kw)
        for _ in range(10):
            g = torch.randn(300, device=device)
            p1.grad, p2.grad = g.clone(), g.clone()
            a.step()
            b.step()
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6)


def _dequant(state, i):
    q, code = state[f"state{i}"], state[f"qmap{i}"]
    values = code[q.reshape(-1).long()]
    if f"max{i}" in state:  # tensor-wise state
        return (values * state[f"max{i}"]).reshape(q.shape)
    absmax = state[f"absmax{i}"]
    return (values * absmax.repeat_interleave(256)[: q.numel()]).reshape(q.shape)


def _ref_state(ref, i, k):
    """The reference's first (k=1) or second (k=2) state of parameter i."""
    if isinstance(ref, ReferenceOptimizer):
        return ref.state[i]["m" if k == 1 else "v"]
    p = ref.param_groups[0]["params"][i]
    st = ref.state[p]
    keys = {1: ("exp_avg", "momentum_buffer", "square_avg", "sum"), 2: ("exp_avg_sq",)}[k]
    return next(st[key] for key in keys if key in st)


@pytest.mark.parametrize("name", EIGHT_BIT)
@pytest.mark.parametrize("block_wise", [True, False])
def test_8bit_tracks_reference(name, block_wise, device):
    steps = 25
    base, ours, ref_params, opt, ref = run_pair(name, device, steps, optim_bits=8, min_8bit_size=1000,
                                                block_wise=block_wise)
    for i, (p0, a, b) in enumerate(zip(base, ours, ref_params)):
        moved = (b - p0).abs().mean()
        err = (a - b).abs().mean()
        assert err < 0.1 * moved, f"{name} param {i}: 8-bit error {err:.3g} vs movement {moved:.3g}"
        st = opt.state[a]
        if a.numel() < 1000:
            assert st["state1"].dtype == torch.float32  # below min_8bit_size
            continue
        assert st["state1"].dtype == torch.uint8 and st["state1"].shape == a.shape
        if block_wise:
            assert st["absmax1"].numel() == -(-a.numel() // 256) and "max1" not in st
        else:
            assert st["max1"].shape == st["new_max1"].shape == (1,) and "absmax1" not in st
        for k in (1, 2) if "state2" in st else (1,):
            r = _ref_state(ref, i, k)
            rel = (_dequant(st, k) - r).norm() / r.norm()
            assert rel < 0.08, f"{name} state{k}: relative error {rel:.3g} of the dequantized state"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["adamw", "sgd", "lion", "lamb"])
def test_half_precision_params(name, dtype, device):
    _, ours, ref, opt, _ = run_pair(name, device, steps=10, dtype=dtype)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        # fp32 arithmetic, one rounding to the parameter dtype per step: at most an ulp or so apart
        torch.testing.assert_close(a.float(), b.float(), rtol=1.6e-2, atol=1e-3)
    assert all(s["state1"].dtype == torch.float32 for s in opt.state.values())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_8bit_half_precision_params(dtype, device):
    base, ours, ref, opt, _ = run_pair("adamw", device, steps=10, dtype=dtype, optim_bits=8, min_8bit_size=1000)
    for p0, a, b in zip(base, ours, ref):
        assert (a.float() - b.float()).abs().mean() < 0.2 * (b.float() - p0.float()).abs().mean() + 1e-3


def test_min_8bit_size(device):
    small = torch.randn(4095, device=device, requires_grad=True)
    big = torch.randn(4096, device=device, requires_grad=True)
    opt = bnb.optim.Adam8bit([small, big])
    small.grad, big.grad = torch.randn_like(small), torch.randn_like(big)
    opt.step()
    assert opt.state[small]["state1"].dtype == torch.float32 and "absmax1" not in opt.state[small]
    st = opt.state[big]
    assert st["state1"].dtype == torch.uint8 and st["state2"].dtype == torch.uint8
    assert st["absmax1"].shape == (16,) and st["qmap1"].numel() == 256
    assert st["qmap1"].min() < 0 <= st["qmap2"].min()  # signed first moment, unsigned second


def _three_layer_model(device):
    return torch.nn.Sequential(torch.nn.Linear(64, 80), torch.nn.ReLU(), torch.nn.Linear(80, 64)).to(device)


def _one_step(model, opt):
    model(torch.randn(4, 64, device=next(model.parameters()).device)).square().mean().backward()
    opt.step()


def test_override_config_key_value(device):
    model = _three_layer_model(device)
    mng = GlobalOptimManager.get_instance()
    mng.register_parameters(model.parameters())
    opt = bnb.optim.Adam(model.parameters(), optim_bits=8, min_8bit_size=16)
    mng.override_config(model[0].weight, "optim_bits", 32)
    _one_step(model, opt)
    assert opt.state[model[0].weight]["state1"].dtype == torch.float32
    assert opt.state[model[2].weight]["state1"].dtype == torch.uint8


def test_override_config_list_and_dict(device):
    model = _three_layer_model(device)
    mng = GlobalOptimManager.get_instance()
    frozen = [model[0].weight, model[0].bias]
    before = [p.detach().clone() for p in frozen]
    mng.override_config(frozen, key_value_dict={"lr": 0.0, "optim_bits": 32})
    opt = bnb.optim.Adam8bit(model.parameters(), lr=1e-2, min_8bit_size=16)
    w2 = model[2].weight.detach().clone()
    _one_step(model, opt)
    for p, b in zip(frozen, before):
        assert torch.equal(p, b)  # lr 0 honoured per parameter
        assert opt.state[p]["state1"].dtype == torch.float32
    assert not torch.equal(model[2].weight, w2)
    assert opt.state[model[2].weight]["state1"].dtype == torch.uint8


def test_register_parameters_before_moving(device):
    mng = GlobalOptimManager.get_instance()
    model = _three_layer_model("cpu")
    mng.register_parameters(model.parameters())
    model = model.to(device)
    mng.override_config(model[2].weight, "optim_bits", 32)
    opt = bnb.optim.Adam(model.parameters(), optim_bits=8, min_8bit_size=16)
    _one_step(model, opt)
    assert opt.state[model[2].weight]["state1"].dtype == torch.float32
    assert opt.state[model[0].weight]["state1"].dtype == torch.uint8


def test_register_module_override(device):
    model = _three_layer_model(device)
    GlobalOptimManager.get_instance().register_module_override(model[0], "weight", {"optim_bits": 32})
    opt = bnb.optim.AdamW8bit(model.parameters(), min_8bit_size=16)
    _one_step(model, opt)
    assert opt.state[model[0].weight]["state1"].dtype == torch.float32
    assert opt.state[model[2].weight]["state1"].dtype == torch.uint8


@pytest.mark.parametrize("cls", [bnb.nn.StableEmbedding, bnb.nn.Embedding])
def test_embeddings_get_32bit_state(cls, device):
    emb = cls(300, 32).to(device)
    head = torch.nn.Linear(32, 300).to(device)
    opt = bnb.optim.Adam8bit(list(emb.parameters()) + list(head.parameters()), min_8bit_size=16)
    out = head(emb(torch.randint(0, 300, (8, 5), device=device)))
    out.square().mean().backward()
    opt.step()
    assert opt.state[emb.weight]["state1"].dtype == torch.float32
    assert opt.state[head.weight]["state1"].dtype == torch.uint8


def test_stable_embedding_forward(device):
    emb = bnb.nn.StableEmbedding(50, 16, padding_idx=0).to(device)
    idx = torch.tensor([[0, 3, 7]], device=device)
    out = emb(idx)
    ref = torch.nn.functional.layer_norm(emb.weight[idx], (16,), emb.norm.weight, emb.norm.bias)
    torch.testing.assert_close(out, ref)
    assert torch.all(emb.weight[0] == 0)
    bound = (6 / (50 + 16)) ** 0.5
    assert emb.weight.abs().max() <= bound + 1e-6  # Xavier-uniform


def _percentile_clipping_reference(g, history, step, percentile):
    """The reference library's percentile clipping in float64: squared norms, entry step % 100,
    all 100 entries at step 1; the clip value from the entry of rank `percentile`."""
    sq = float(g.double().square().sum())
    if step == 1:
        history[:] = [sq] * 100
    else:
        history[step % 100] = sq
    clip = sorted(history)[percentile] ** 0.5
    current = history[step % 100] ** 0.5
    return current, clip, (clip / current if current > clip else 1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_percentile_clipping_function(device, dtype):
    history = torch.zeros(100, device=device)
    want_history = [0.0] * 100
    for step in range(1, 131):
        g = (torch.randn(501, device=device) * (1 + step % 7)).to(dtype)
        current, clip, scale = bnb.functional.percentile_clipping(g, history, step, percentile=5)
        want = _percentile_clipping_reference(g, want_history, step, 5)
        if step == 1:  # every entry holds the first squared norm
            assert torch.all(history == history[0]) and history[0] > 0
        torch.testing.assert_close(history.double().cpu(), torch.tensor(want_history, dtype=torch.float64),
                                   rtol=1e-5, atol=0)
        for got, w in zip((current, clip, scale), want):
            assert got.dtype == torch.float32 and got.dim() == 0 and got.device.type == device
            assert abs(got.item() - w) <= 1e-5 * w


def test_percentile_clipping_refuses_bad_input():
    g, h = torch.randn(10), torch.zeros(100)
    for bad in (100, -1, 5.5):
        with pytest.raises(ValueError, match="percentile"):
            bnb.functional.percentile_clipping(g, h, 1, bad)
    with pytest.raises(TypeError, match="percentile"):
        bnb.functional.percentile_clipping(g, h, 1, "5")
    with pytest.raises(ValueError, match="gnorm_vec"):
        bnb.functional.percentile_clipping(g, torch.zeros(99), 1, 5)
    with pytest.raises(ValueError, match="step"):
        bnb.functional.percentile_clipping(g, h, 0, 5)
    for grad in (g.double(), torch.arange(10)):
        with pytest.raises(TypeError, match="percentile_clipping: grad must be a float32, float16 or bfloat16 "
                                            f"tensor, got {grad.dtype}"):
            bnb.functional.percentile_clipping(grad, h, 1, 5)


@pytest.mark.parametrize("optim_bits", [32, 8])
def test_percentile_clipping_checkpoint_resumes_bit_identically(optim_bits, device):
    params = [torch.randn(s, device=device, requires_grad=True) for s in ((70, 90), (300,))]
    opt = bnb.optim.Adam(params, lr=1e-2, optim_bits=optim_bits, percentile_clipping=5)
    grads = [[torch.randn_like(p) * (4.0 if i % 3 == 0 else 1.0) for p in params] for i in range(8)]
    for gs in grads[:4]:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
    h = opt.state[params[0]]["gnorm_vec"]
    assert h.shape == (100,) and int((h == h[0]).sum()) == 97  # step 1 filled all; steps 2-4 their entries
    sd = copy.deepcopy(opt.state_dict())
    clones = [p.detach().clone().requires_grad_() for p in params]
    opt2 = bnb.optim.Adam(clones, lr=1e-2, optim_bits=optim_bits, percentile_clipping=5)
    opt2.load_state_dict(sd)
    for gs in grads[4:]:
        for p, q, g in zip(params, clones, gs):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        opt2.step()
    for p, q in zip(params, clones):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["gnorm_vec"], opt2.state[q]["gnorm_vec"])


@pytest.mark.parametrize("optim_bits", [32, 8])
def test_percentile_clipping_in_optimizer(optim_bits, device):
    p = torch.randn(5000, device=device, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    p0 = p.detach().clone()
    opt = bnb.optim.Adam([p], lr=1e-2, optim_bits=optim_bits, percentile_clipping=10)
    ref = ReferenceOptimizer("adam", [q], lr=1e-2)
    history = torch.zeros(100, device=device)
    for step in range(1, 16):
        g = torch.randn(5000, device=device) * (5.0 if step % 4 == 0 else 1.0)
        p.grad, q.grad = g.clone(), g.clone()
        _, _, scale = bnb.functional.percentile_clipping(g, history, step, 10)
        opt.step()
        ref.step(grad_scales=[scale])
    assert "gnorm_vec" in opt.state[p]
    if optim_bits == 32:
        assert (p - q).abs().max() < 1e-5
    else:
        assert (p - q).abs().mean() < 0.05 * (q - p0).abs().mean()
    assert torch.allclose(opt.state[p]["gnorm_vec"], history)


@pytest.mark.parametrize("optim_bits", [32, 8])
@pytest.mark.parametrize("name", ["adamw", "lion", "lamb"])
def test_state_dict_round_trip_and_resume(name, optim_bits, device):
    cls, _, kw = ALGOS[name]
    params = [p.requires_grad_() for p in make_params(device)]
    opt = cls(params, optim_bits=optim_bits, min_8bit_size=1000, **kw)
    grads = [[torch.randn_like(p) for p in params] for _ in range(6)]

    def step(o, ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        o.step()

    for gs in grads[:3]:
        step(opt, params, gs)
    saved = copy.deepcopy(opt.state_dict())
    saved_params = [p.detach().clone() for p in params]
    for gs in grads[3:]:
        step(opt, params, gs)

    resumed_params = [p.clone().requires_grad_() for p in saved_params]
    opt2 = cls(resumed_params, optim_bits=optim_bits, min_8bit_size=1000, **kw)
    opt2.load_state_dict(saved)
    for a, b in zip(params, saved_params):
        st = opt2.state[resumed_params[0]]
        assert st["step"] == 3
    for gs in grads[3:]:
        step(opt2, resumed_params, gs)
    for a, b in zip(params, resumed_params):
        assert torch.equal(a, b)  # bit-identical resume
    for a, b in zip(params, resumed_params):
        for key, val in opt.state[a].items():
            other = opt2.state[b][key]
            assert torch.equal(val, other) if isinstance(val, torch.Tensor) else val == other


def test_load_state_dict_keeps_state_dtypes(device):
    params = [torch.randn(5000, device=device, dtype=torch.float16, requires_grad=True)]
    opt = bnb.optim.Adam8bit(params)
    params[0].grad = torch.randn_like(params[0])
    opt.step()
    sd = opt.state_dict()
    inner = sd["state"][0]["__bnb_optimizer_quant_state__"]
    assert inner["state1"].dtype == torch.uint8 and inner["absmax1"].dtype == torch.float32
    opt2 = bnb.optim.Adam8bit([params[0].detach().clone().requires_grad_()])
    opt2.load_state_dict(sd)
    st = next(iter(opt2.state.values()))
    assert st["state1"].dtype == torch.uint8 and st["state2"].dtype == torch.uint8
    assert st["absmax1"].dtype == torch.float32 and st["qmap1"].dtype == torch.float32
    assert st["state1"].data_ptr() != opt.state[params[0]]["state1"].data_ptr()  # loaded state is a copy


def test_32bit_state_of_half_params_is_fp32_after_load(device):
    p = torch.randn(100, device=device, dtype=torch.bfloat16, requires_grad=True)
    opt = bnb.optim.AdamW([p])
    p.grad = torch.randn_like(p)
    opt.step()
    opt2 = bnb.optim.AdamW([p])
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[p]["state1"].dtype == torch.float32


def _reference_checkpoint(reference_dir):
    path = os.path.join(reference_dir, "adamw8bit_checkpoint_ref.pt")
    return torch.load(path, weights_only=False)


def _reference_model(ck, device):
    model = torch.nn.Sequential(torch.nn.Linear(96, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    model.load_state_dict(ck["model"])
    return model.to(device)


def _step_with_reference_grads(model, opt, ck):
    for p, g in zip(model.parameters(), ck["grads_step4"]):
        p.grad = g.to(p.device).clone()
    opt.step()


def test_reference_checkpoint_loads_and_steps(reference_dir, device):
    ck = _reference_checkpoint(reference_dir)
    model = _reference_model(ck, device)
    opt = bnb.optim.AdamW8bit(model.parameters(), lr=1e-3, weight_decay=0.01)
    opt.load_state_dict(ck["optimizer"])
    st = opt.state[model[0].weight]
    assert st["step"] == 3 and st["state1"].dtype == torch.uint8 and st["state1"].device.type == device
    assert st["absmax1"].numel() == 48
    assert opt.state[model[0].bias]["state1"].dtype == torch.float32
    _step_with_reference_grads(model, opt, ck)
    for k, v in model.state_dict().items():
        want = ck["model_after_step4"][k].to(device)
        moved = (ck["model"][k].to(device) - want).abs().max()
        assert (v - want).abs().max() < 0.01 * moved, k
    assert opt.state[model[0].weight]["step"] == 4


def test_reference_checkpoint_flat_blocksize_2048(reference_dir, device):
    """Older releases kept the state keys flat in each entry, absmax made with blocksize 2048."""
    ck = _reference_checkpoint(reference_dir)
    old = copy.deepcopy(ck["optimizer"])
    for entry in old["state"].values():
        inner = entry.pop("__bnb_optimizer_quant_state__")
        if inner["state1"].dtype == torch.uint8:
            for i in ("1", "2"):
                values = bnb.functional.dequantize_blockwise(inner[f"state{i}"], absmax=inner[f"absmax{i}"],
                                                             code=inner[f"qmap{i}"], blocksize=256)
                q, qs = bnb.functional.quantize_blockwise(values, code=inner[f"qmap{i}"], blocksize=2048)
                inner[f"state{i}"], inner[f"absmax{i}"] = q, qs.absmax
        entry.update(inner)
    assert old["state"][0]["absmax1"].numel() == 6
    model = _reference_model(ck, device)
    opt = bnb.optim.AdamW8bit(model.parameters(), lr=1e-3, weight_decay=0.01)
    opt.load_state_dict(old)
    st = opt.state[model[0].weight]
    assert st["absmax1"].numel() == 48  # brought to blocksize 256
    _step_with_reference_grads(model, opt, ck)
    for k, v in model.state_dict().items():
        want = ck["model_after_step4"][k].to(device)
        moved = (ck["model"][k].to(device) - want).abs().max()
        # the state went through blocksize 2048 and back: coarser than the reference's own
        assert (v - want).abs().max() < 0.15 * moved, k
        assert (v - want).abs().mean() < 0.01 * moved, k


def test_params_without_grad_are_skipped(device):
    a = torch.randn(300, device=device, requires_grad=True)
    b = torch.randn(300, device=device, requires_grad=True)
    b0 = b.detach().clone()
    opt = bnb.optim.AdamW8bit([a, b], min_8bit_size=16)
    a.grad = torch.randn_like(a)
    opt.step()
    assert torch.equal(b, b0) and len(opt.state[b]) == 0
    b.grad = torch.randn_like(b)  # joins later: its own step count
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1
    assert not torch.equal(b, b0)


def test_sparse_gradients_are_refused(device):
    emb = torch.nn.Embedding(20, 8, sparse=True).to(device)
    opt = bnb.optim.Adam8bit(emb.parameters())
    emb(torch.tensor([1, 2], device=device)).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_nonfinite_gradients_stay_in_their_block(name, bad, device):
    cls, _, kw = ALGOS[name]
    p1 = torch.randn(256 * 6 + 100, device=device, requires_grad=True)
    p2 = p1.detach().clone().requires_grad_()
    o1, o2 = cls([p1], optim_bits=8, min_8bit_size=16, **kw), cls([p2], optim_bits=8, min_8bit_size=16, **kw)
    for step in range(3):
        g = torch.randn_like(p1)
        p1.grad = g.clone()
        if step == 1:
            g[256 * 2 + 17] = bad  # block 2
        p2.grad = g
        o1.step()
        o2.step()
    keep = torch.ones(p1.numel(), dtype=torch.bool, device=device)
    keep[512:768] = False
    assert torch.equal(p1[keep], p2[keep])
    s1, s2 = o1.state[p1], o2.state[p2]
    for key in ("state1", "state2"):
        if key in s1:
            assert torch.equal(s1[key][keep], s2[key][keep])
    block_keep = torch.ones(s1["absmax1"].numel(), dtype=torch.bool, device=device)
    block_keep[2] = False
    assert torch.equal(s1["absmax1"][block_keep], s2["absmax1"][block_keep])


def test_empty_parameter(device):
    e = torch.zeros(0, device=device, requires_grad=True)
    w = torch.randn(10, device=device, requires_grad=True)
    opt = bnb.optim.Adam8bit([e, w], min_8bit_size=0)
    e.grad, w.grad = torch.zeros_like(e), torch.randn_like(w)
    w0 = w.detach().clone()
    opt.step()
    assert not torch.equal(w, w0)


@pytest.mark.parametrize("cls", [bnb.optim.PagedAdamW8bit, bnb.optim.PagedAdam32bit, bnb.optim.PagedLion8bit])
def test_paged_matches_plain(cls, device):
    plain = {bnb.optim.PagedAdamW8bit: bnb.optim.AdamW8bit, bnb.optim.PagedAdam32bit: bnb.optim.Adam32bit,
             bnb.optim.PagedLion8bit: bnb.optim.Lion8bit}[cls]
    p1 = torch.randn(3000, device=device, requires_grad=True)
    p2 = p1.detach().clone().requires_grad_()
    o1, o2 = cls([p1], min_8bit_size=16), plain([p2], min_8bit_size=16)
    assert o1.is_paged and not o2.is_paged
    for _ in range(3):
        g = torch.randn_like(p1)
        p1.grad, p2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert torch.equal(p1, p2)


def test_variants_fix_bits():
    p = torch.randn(5000, requires_grad=True)
    for cls, bits in [(bnb.optim.Adam8bit, 8), (bnb.optim.Adam32bit, 32), (bnb.optim.Lion8bit, 8),
                      (bnb.optim.SGD8bit, 8), (bnb.optim.RMSprop32bit, 32), (bnb.optim.LAMB8bit, 8),
                      (bnb.optim.LARS8bit, 8), (bnb.optim.Adagrad8bit, 8), (bnb.optim.PagedAdamW, 32)]:
        kw = {"lr": 0.1} if cls in (bnb.optim.SGD8bit, bnb.optim.LARS8bit) else {}
        opt = cls([p], **kw)
        assert opt.args.optim_bits == bits
        assert isinstance(opt, bnb.optim.Optimizer8bit)


def test_args_object_sets_options():
    class Args:
        optim_bits = 8
        min_8bit_size = 10
        percentile_clipping = 50
        block_wise = False
        max_unorm = 0.0

    p = torch.randn(100, requires_grad=True)
    opt = bnb.optim.Adam([p], args=Args())
    p.grad = torch.randn_like(p)
    opt.step()
    st = opt.state[p]
    assert st["state1"].dtype == torch.uint8 and st["max1"].numel() == 1 and "gnorm_vec" in st


def test_unsupported_options_raise():
    p = [torch.randn(3, requires_grad=True)]
    with pytest.raises(NotImplementedError):
        bnb.optim.Adam(p, amsgrad=True)
    with pytest.raises(NotImplementedError):
        bnb.optim.RMSprop(p, centered=True)
    with pytest.raises(ValueError, match="optim_bits"):
        opt = bnb.optim.Adam(p, optim_bits=16)
        p[0].grad = torch.randn(3)
        opt.step()
    with pytest.raises(ValueError, match="optim_bits=4"):
        bnb.optim.Lion(p, optim_bits=4)


def _host_to_device_copies(fn):
    """The host-to-device copies the GPU ran during fn()."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e for e in prof.events() if "HtoD" in e.name]


def test_one_launch_per_group_and_table_reuse(device):
    params = [torch.randn(s, device=device, requires_grad=True) for s in [(300,), (64, 70), (10,), (5000,)]]
    half = torch.randn(9000, device=device, dtype=torch.bfloat16, requires_grad=True)
    opt = bnb.optim.AdamW8bit(params + [half], min_8bit_size=1000)
    for p in params + [half]:
        p.grad = torch.randn_like(p)
    opt.step()
    plan = opt._plan
    # fp32 with 32-bit state, fp32 with 8-bit state, bf16 with 8-bit state
    assert sorted((len(launch.params), launch.quantized) for launch in plan) == [(1, True), (2, False), (2, True)]
    if device == "cuda":  # the op keeps each launch's device table: nothing is uploaded again
        assert _host_to_device_copies(opt.step) == []
    else:
        opt.step()
    assert opt._plan is plan  # not rebuilt while the same parameters have gradients
    params[0].grad = None
    opt.step()
    assert opt._plan is not plan

    # a parameter that gains a gradient joins at once, as do the parameters of a new group
    params[0].grad = torch.randn_like(params[0])
    before = params[0].detach().clone()
    opt.step()
    assert not torch.equal(params[0].detach(), before)
    extra = torch.randn(700, device=device, requires_grad=True)
    opt.add_param_group({"params": [extra]})
    extra.grad = torch.randn_like(extra)
    before = extra.detach().clone()
    opt.step()
    assert not torch.equal(extra.detach(), before) and opt.state[extra]["step"] == 1


@pytest.mark.parametrize("eight_bit", [False, True])
def test_step_bumps_versions_and_counts_steps_per_parameter(eight_bit, device):
    """The tensors a step writes get new versions (as in-place torch ops give them), and each
    parameter's state counts its steps, also for parameters that join later."""
    a = torch.randn(5000, device=device, requires_grad=True)
    b = torch.randn(5000, device=device, requires_grad=True)
    opt = bnb.optim.Adam([a, b], optim_bits=8 if eight_bit else 32)
    a.grad = torch.randn_like(a)
    opt.step()
    versions = [a._version, opt.state[a]["state1"]._version, opt.state[a]["state2"]._version]
    opt.step()
    assert all(new > old for new, old in zip(
        [a._version, opt.state[a]["state1"]._version, opt.state[a]["state2"]._version], versions))
    b.grad = torch.randn_like(b)
    opt.step()
    assert opt.state[a]["step"] == 3 and opt.state[b]["step"] == 1

def test_optimizer_state_bytes():
    from bitsandbytes.utils import optimizer_state_bytes

    big = torch.nn.Parameter(torch.randn(300, 100))  # 30000 values: 8-bit state
    small = torch.nn.Parameter(torch.randn(10))  # 32-bit state
    opt = bnb.optim.AdamW8bit([big, small])
    big.grad, small.grad = torch.randn_like(big), torch.randn_like(small)
    opt.step()
    blocks = -(-30000 // 256)
    # codes + absmax for both moments, the two shared 256-value maps once, fp32 moments of `small`
    assert optimizer_state_bytes(opt) == 2 * (30000 + 4 * blocks) + 2 * 256 * 4 + 2 * 10 * 4


@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, 1.5), (-0.1, 0.999)])
def test_invalid_betas_are_refused(betas):
    p = torch.nn.Parameter(torch.randn(10))
    with pytest.raises(ValueError, match="beta parameter"):
        bnb.optim.AdamW8bit([p], betas=betas)


def test_op_refuses_second_moment_decay_above_one(device):
    # Adam's 8-bit second moment is looked up as a non-negative value: beta2 > 1 is refused.
    import bitsandbytes.functional as F
    n = 512
    p, g = torch.randn(n, device=device), torch.randn(n, device=device)
    s1, s2 = torch.zeros(n, dtype=torch.uint8, device=device), torch.zeros(n, dtype=torch.uint8, device=device)
    a1, a2 = torch.zeros(2, device=device), torch.zeros(2, device=device)
    q1, q2 = F.create_dynamic_map(signed=True).to(device), F.create_dynamic_map(signed=False).to(device)
    with pytest.raises(ValueError, match="beta2"):
        F.optimizer_update_8bit_blockwise("adam", g, p, s1, s2, 0.9, 1.5, 0.0, 0.0, 1e-8, 1, 1e-3, q1, q2, a1, a2)


def test_step_runs_torch_step_hooks_and_profiler_range():
    """step() runs the hooks torch.optim.Optimizer offers (global and per optimizer, pre and
    post, a pre-hook may replace the arguments), works with LR schedulers, and names its
    profiler range as torch does."""
    import warnings

    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    p = torch.nn.Parameter(torch.randn(5000))
    opt = bnb.optim.AdamW8bit([p])
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", o is opt, a[0] is opt)))
    opt.register_step_post_hook(lambda o, a, k: calls.append(("post", o is opt)))
    handles = [register_optimizer_step_pre_hook(lambda o, a, k: calls.append(("global pre",))),
               register_optimizer_step_post_hook(lambda o, a, k: calls.append(("global post",)))]
    try:
        sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
        p.grad = torch.randn_like(p)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
            opt.step()
            sched.step()
    finally:
        for h in handles:
            h.remove()
    assert calls == [("global pre",), ("pre", True, True), ("post", True), ("global post",)]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-3) and opt.state[p]["step"] == 1
    # a pre-hook may hand step() other arguments: here a closure
    opt.register_step_pre_hook(lambda o, a, k: (a, {"closure": lambda: torch.tensor(7.0)}))
    assert opt.step().item() == 7.0
    with torch.profiler.profile() as prof:
        opt.step()
    assert any(e.name == "Optimizer.step#AdamW8bit.step" for e in prof.events())


@pytest.mark.parametrize("cls,kwargs", [(bnb.optim.Adam8bit, {}), (bnb.optim.AdamW, {}), (bnb.optim.Lion8bit, {}),
                                        (bnb.optim.AdamW4bit, {}), (bnb.optim.AdEMAMix8bit, {}),
                                        (bnb.optim.SGD8bit, {"momentum": 0.9}), (bnb.optim.LAMB8bit, {})])
def test_non_contiguous_parameter_steps_as_its_contiguous_copy(device, cls, kwargs):
    # a transposed view as a parameter (as torch.optim takes it): the same update as the same
    # values laid out in order, bit for bit, and the parameter stays the view it was
    torch.manual_seed(0)
    base = torch.randn(100, 120, device=device)
    plain = torch.nn.Parameter(base.t().contiguous())
    strided = torch.nn.Parameter(base.clone().t())
    assert not strided.is_contiguous()
    storage = strided.untyped_storage().data_ptr()
    o_plain, o_strided = cls([plain], lr=1e-2, **kwargs), cls([strided], lr=1e-2, **kwargs)
    for _ in range(3):
        g = torch.randn(120, 100, device=device)
        plain.grad, strided.grad = g.clone(), g.t().contiguous().t()
        o_plain.step()
        o_strided.step()
    assert torch.equal(plain, strided)
    assert not strided.is_contiguous() and strided.untyped_storage().data_ptr() == storage
    for key, value in o_plain.state[plain].items():
        other = o_strided.state[strided][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
