"""AdEMAMix (32-bit and 8-bit state, paged variants) against a plain float64 AdEMAMix written
here from the paper, with and without the alpha and beta3 schedules, on every device; the
reference library's 8-bit checkpoint; state dicts; the manager's overrides."""
import math

import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.optim import GlobalOptimManager
from bitsandbytes.optim.ademamix import _ReferenceAdEMAMix
from optim_devices import compare_devices

SHAPES = ((67, 93), (1000,), (5,))  # off the 256-value block; the last one below min_8bit_size


@pytest.fixture(autouse=True)
def _fresh_manager():
    GlobalOptimManager.get_instance().initialize()
    yield
    GlobalOptimManager.get_instance().initialize()


class Float64AdEMAMix:
    """The paper's Algorithm 1 with decoupled weight decay, in float64, parameters kept as a
    float64 master copy and rounded to their dtype after each step (as a fused kernel does)."""

    def __init__(self, params, lr, betas, alpha, eps, weight_decay, t_alpha=None, t_beta3=None):
        self.params = list(params)
        self.lr, self.betas, self.alpha, self.eps, self.wd = lr, betas, alpha, eps, weight_decay
        self.t_alpha, self.t_beta3 = t_alpha, t_beta3
        self.master = [p.detach().double().clone() for p in self.params]
        self.m1 = [torch.zeros_like(m) for m in self.master]
        self.m2 = [torch.zeros_like(m) for m in self.master]
        self.nu = [torch.zeros_like(m) for m in self.master]
        self.t = 0

    def schedules(self, t):
        b1, _, b3 = self.betas
        alpha = self.alpha if self.t_alpha is None else min(t / self.t_alpha, 1.0) * self.alpha
        if self.t_beta3 is not None:
            # the half-life of the slow EMA, ln(0.5) / ln(beta), grows linearly from beta1's to beta3's
            frac = min(t / self.t_beta3, 1.0)
            h1, h3 = math.log(0.5) / math.log(b1), math.log(0.5) / math.log(b3)
            b3 = min(0.5 ** (1.0 / ((1 - frac) * h1 + frac * h3)), b3)
        return alpha, b3

    @torch.no_grad()
    def step(self):
        self.t += 1
        t = self.t
        b1, b2, _ = self.betas
        alpha, b3 = self.schedules(t)
        for i, p in enumerate(self.params):
            g = p.grad.double()
            self.m1[i] = b1 * self.m1[i] + (1 - b1) * g
            self.m2[i] = b3 * self.m2[i] + (1 - b3) * g
            self.nu[i] = b2 * self.nu[i] + (1 - b2) * g * g
            u = (self.m1[i] / (1 - b1 ** t) + alpha * self.m2[i]) / ((self.nu[i] / (1 - b2 ** t)).sqrt() + self.eps)
            self.master[i] = self.master[i] * (1 - self.lr * self.wd) - self.lr * u
            p.copy_(self.master[i].to(p.dtype))


KW = dict(lr=1e-2, betas=(0.9, 0.99, 0.999), alpha=5.0, eps=1e-8, weight_decay=0.1)
SCHEDULES = {"constant": {}, "scheduled": dict(t_alpha=12, t_beta3=15)}


def run_pair(device, steps, dtype=torch.float32, cls=bnb.optim.AdEMAMix, schedule="constant", **extra):
    base = [torch.randn(s, device=device).to(dtype) for s in SHAPES]
    ours = [p.clone().requires_grad_() for p in base]
    ref_params = [p.clone() for p in base]
    kw = dict(KW, **SCHEDULES[schedule])
    opt = cls(ours, **kw, **extra)
    ref = Float64AdEMAMix(ref_params, **kw)
    for _ in range(steps):
        for p, r in zip(ours, ref_params):
            g = torch.randn_like(p, dtype=torch.float32).to(dtype)
            p.grad = g
            r.grad = g.clone()
        opt.step()
        ref.step()
    return ours, ref_params, opt, ref


def test_schedules_follow_the_paper():
    from bitsandbytes.functional.algorithms import scheduled_alpha, scheduled_beta3
    ref = Float64AdEMAMix([], 0, (0.9, 0.999, 0.9999), 5.0, 0, 0, t_alpha=100, t_beta3=100)
    for t in (1, 2, 50, 99, 100, 101, 1000):
        alpha, b3 = ref.schedules(t)
        assert scheduled_alpha(5.0, 100, t) == pytest.approx(alpha, rel=1e-12)
        assert scheduled_beta3(0.9, 0.9999, 100, t) == pytest.approx(b3, rel=1e-12)
    assert scheduled_beta3(0.9, 0.9999, 100, 0) == pytest.approx(0.9, rel=1e-12)  # starts at beta1
    seq = [scheduled_beta3(0.9, 0.9999, 100, t) for t in range(0, 120)]
    assert all(a < b for a, b in zip(seq[:100], seq[1:101])) and set(seq[100:]) == {0.9999}
    assert scheduled_alpha(5.0, None, 1) == 5.0 and scheduled_beta3(0.9, 0.9999, None, 1) == 0.9999


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_32bit_matches_float64_over_many_steps(device, schedule):
    ours, theirs, opt, ref = run_pair(device, 25, schedule=schedule)
    for p, r, m1, m2, nu in zip(ours, theirs, ref.m1, ref.m2, ref.nu):
        torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-5)
        st = opt.state[p]
        assert st["state1"].shape == (2, *p.shape) and st["state1"].dtype == torch.float32
        torch.testing.assert_close(st["state1"][0].double(), m1, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(st["state1"][1].double(), m2, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(st["state2"].double(), nu, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_32bit_state_16bit_params(device, dtype, schedule):
    ours, theirs, _, _ = run_pair(device, 10, dtype=dtype, schedule=schedule)
    for p, r in zip(ours, theirs):
        # each step rounds the parameter to its dtype; ten roundings apart at most
        ulp = 2.0 ** -10 if dtype == torch.float16 else 2.0 ** -7
        torch.testing.assert_close(p.detach().float(), r.float(), rtol=10 * ulp, atol=1e-2 * 10 * ulp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_8bit_within_quantization_tolerance(device, dtype, schedule):
    steps = 20
    ours, theirs, opt, _ = run_pair(device, steps, dtype=dtype, cls=bnb.optim.AdEMAMix8bit, schedule=schedule)
    big = opt.state[ours[0]]
    n, blocks = ours[0].numel(), -(-ours[0].numel() // 256)
    assert big["state1"].dtype == torch.uint8 and big["state1"].shape == (2, *ours[0].shape)
    assert big["absmax1"].shape == (2, blocks) and big["absmax2"].shape == (blocks,)
    assert torch.equal(big["qmap1"], bnb.functional.create_dynamic_map(signed=True).to(device))
    assert torch.equal(big["qmap2"], bnb.functional.create_dynamic_map(signed=False).to(device))
    assert opt.state[ours[2]]["state1"].dtype == torch.float32  # below min_8bit_size
    # the 8-bit error relative to how far the parameters moved (each step about lr per value)
    for p, r in zip(ours[:2], theirs[:2]):
        err = (p.detach().double() - r.double()).norm()
        travelled = steps * KW["lr"] * math.sqrt(p.numel())
        assert err < 0.1 * travelled, (err, travelled)
    torch.testing.assert_close(ours[2].detach().double(), theirs[2].double(), rtol=0.02, atol=0.02)  # 32-bit
    assert n == 67 * 93


def test_8bit_state_tracks_float64_states(device):
    ours, _, opt, ref = run_pair(device, 15, cls=bnb.optim.AdEMAMix8bit)
    st = opt.state[ours[0]]
    blocks = st["absmax2"].numel()
    n = ours[0].numel()

    def dequant(codes, qmap, absmax):
        pad = blocks * 256 - n
        v = qmap[torch.nn.functional.pad(codes.reshape(-1).long(), (0, pad))].view(blocks, 256) * absmax[:, None]
        return v.reshape(-1)[:n].double()

    # each step's requantization error (up to half a code step, about 0.4% of the block's max
    # near it) persists in an EMA: after 15 steps a few percent of the largest value
    for k, want in ((0, ref.m1[0]), (1, ref.m2[0])):
        got = dequant(st["state1"][k], st["qmap1"], st["absmax1"][k])
        assert (got - want.reshape(-1)).abs().max() < 0.1 * want.abs().max()
    got = dequant(st["state2"], st["qmap2"], st["absmax2"])
    assert (got - ref.nu[0].reshape(-1)).abs().max() < 0.1 * ref.nu[0].abs().max()


def test_reference_class_matches_float64(device):
    base = [torch.randn(s, device=device) for s in SHAPES]
    a = [p.clone().requires_grad_() for p in base]
    b = [p.clone() for p in base]
    kw = dict(KW, t_alpha=5, t_beta3=7)
    opt = _ReferenceAdEMAMix(a, **kw)
    ref = Float64AdEMAMix(b, **kw)
    for _ in range(12):
        for p, r in zip(a, b):
            p.grad = torch.randn_like(p)
            r.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, r in zip(a, b):
        torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-5)
    assert opt.state[a[0]]["m1_m2"].shape == (2, *a[0].shape)


@pytest.mark.parametrize("cls", [bnb.optim.PagedAdEMAMix, bnb.optim.PagedAdEMAMix8bit, bnb.optim.PagedAdEMAMix32bit,
                                 bnb.optim.AdEMAMix32bit], ids=lambda c: c.__name__)
def test_variants_match_their_base(device, cls):
    eight = "8bit" in cls.__name__
    ours, theirs, opt, _ = run_pair(device, 6, cls=cls)
    base_cls = bnb.optim.AdEMAMix8bit if eight else bnb.optim.AdEMAMix
    torch.manual_seed(1)
    again, _, _, _ = run_pair(device, 6, cls=base_cls)
    torch.manual_seed(1)
    paged, _, _, _ = run_pair(device, 6, cls=cls)
    for a, b in zip(again, paged):
        assert torch.equal(a, b)
    assert opt.is_paged == cls.__name__.startswith("Paged")
    assert (opt.state[ours[0]]["state1"].dtype == torch.uint8) == eight


def test_variant_signatures_follow_the_reference():
    import inspect
    names = lambda c: list(inspect.signature(c.__init__).parameters)[1:]
    common = ["params", "lr", "betas", "alpha", "t_alpha", "t_beta3", "eps", "weight_decay"]
    assert names(bnb.optim.AdEMAMix) == common + ["optim_bits", "min_8bit_size", "is_paged"]
    assert names(bnb.optim.AdEMAMix8bit) == common + ["min_8bit_size", "is_paged"]
    assert names(bnb.optim.AdEMAMix32bit) == common + ["min_8bit_size", "is_paged"]
    assert names(bnb.optim.PagedAdEMAMix) == common + ["optim_bits", "min_8bit_size"]
    assert names(bnb.optim.PagedAdEMAMix8bit) == common + ["min_8bit_size"]
    assert names(bnb.optim.PagedAdEMAMix32bit) == common + ["min_8bit_size"]
    import bitsandbytes.optim.ademamix as mod
    assert mod.AdEMAMix is bnb.optim.AdEMAMix and mod._ReferenceAdEMAMix is _ReferenceAdEMAMix


def test_optimizer2state_takes_ademamix_settings(device):
    p = torch.nn.Parameter(torch.randn(300, device=device))
    opt = bnb.optim.Optimizer2State("ademamix", [p], lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=3.0, t_alpha=5,
                                    t_beta3=6)
    group = opt.param_groups[0]
    assert (group["alpha"], group["t_alpha"], group["t_beta3"]) == (3.0, 5, 6)
    p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[p]["state1"].shape == (2, 300)


@pytest.mark.parametrize("bad", [dict(betas=(0.9, 0.999)), dict(t_alpha=0), dict(t_beta3=-3), dict(alpha=-1.0),
                                 dict(betas=(0.9, 0.999, 1.0)), dict(betas=(0.0, 0.999, 0.9999), t_beta3=10),
                                 dict(betas=(0.9, 0.999, 0.0), t_beta3=10)])
def test_bad_settings_refused(bad):
    with pytest.raises(ValueError):
        bnb.optim.AdEMAMix([torch.nn.Parameter(torch.randn(4))], **bad)


def test_op_refuses_what_it_cannot_run(device):
    p = torch.randn(300, device=device)
    s1 = torch.zeros(2, 300, dtype=torch.uint8, device=device)
    s2 = torch.zeros(300, dtype=torch.uint8, device=device)
    q1, q2 = bnb.functional.create_dynamic_map(True).to(device), bnb.functional.create_dynamic_map(False).to(device)
    with pytest.raises(ValueError, match="block_wise"):
        bnb.functional.optimizer_update_8bit_blockwise("ademamix", p.clone(), p, s1, s2, 0.9, 0.99, 0.999, 5.0, 1e-8,
                                                       1, 1e-3, q1, q2, torch.zeros(2, device=device),
                                                       torch.zeros(1, device=device), block_wise=False)
    with pytest.raises(ValueError, match="state1"):  # not stacked
        bnb.functional.optimizer_update_32bit("ademamix", p.clone(), p, torch.zeros(300, device=device), 0.9, 1e-8, 1,
                                              1e-3, torch.zeros(300, device=device), 0.99, 0.999, 5.0)
    with pytest.raises(ValueError, match="absmax1"):
        bnb.functional.optimizer_update_8bit_blockwise("ademamix", p.clone(), p, s1, s2, 0.9, 0.99, 0.999, 5.0, 1e-8,
                                                       1, 1e-3, q1, q2, torch.zeros(2, device=device),
                                                       torch.zeros(2, device=device))
    with pytest.raises(ValueError, match="max_unorm"):
        bnb.functional.optimizer_update_32bit("ademamix", p.clone(), p, torch.zeros(2, 300, device=device), 0.9, 1e-8,
                                              1, 1e-3, torch.zeros(300, device=device), 0.99, 0.999, 5.0,
                                              max_unorm=1.0)


def test_functional_one_tensor_forms_match_the_optimizer(device):
    # F.optimizer_update_32bit / _8bit_blockwise in the reference's argument order
    torch.manual_seed(3)
    p = torch.randn(700, device=device)
    g = torch.randn(700, device=device)
    for bits in (32, 8):
        q = torch.nn.Parameter(p.clone())
        opt = bnb.optim.AdEMAMix([q], optim_bits=bits, min_8bit_size=1, t_alpha=4, t_beta3=4, **{
            k: v for k, v in KW.items()})
        q.grad = g.clone()
        opt.step()
        st = opt.state[q]
        r = p.clone()
        b1, b2, b3 = KW["betas"]
        from bitsandbytes.functional.algorithms import scheduled_alpha, scheduled_beta3
        a_t, b3_t = scheduled_alpha(KW["alpha"], 4, 1), scheduled_beta3(b1, b3, 4, 1)
        if bits == 32:
            s1, s2 = torch.zeros(2, 700, device=device), torch.zeros(700, device=device)
            bnb.functional.optimizer_update_32bit("ademamix", g, r, s1, b1, KW["eps"], 1, KW["lr"], s2, b2, b3_t, a_t,
                                                  KW["weight_decay"])
        else:
            s1 = torch.zeros(2, 700, dtype=torch.uint8, device=device)
            s2 = torch.zeros(700, dtype=torch.uint8, device=device)
            a1, a2 = torch.zeros(2, 3, device=device), torch.zeros(3, device=device)
            bnb.functional.optimizer_update_8bit_blockwise("ademamix", g, r, s1, s2, b1, b2, b3_t, a_t, KW["eps"], 1,
                                                           KW["lr"], st["qmap1"], st["qmap2"], a1, a2,
                                                           KW["weight_decay"])
            assert torch.equal(a1, st["absmax1"])
        assert torch.equal(r, q.detach()) and torch.equal(s1, st["state1"]) and torch.equal(s2, st["state2"])


@pytest.mark.parametrize("bits", [8, 32])
def test_state_dict_round_trip_resumes_identically(device, bits):
    torch.manual_seed(5)
    base = [torch.randn(s, device=device) for s in SHAPES]
    a = [torch.nn.Parameter(p.clone()) for p in base]
    opt = bnb.optim.AdEMAMix(a, optim_bits=bits, t_alpha=10, t_beta3=10)
    grads = [[torch.randn_like(p) for p in base] for _ in range(5)]
    for gs in grads[:3]:
        for p, g in zip(a, gs):
            p.grad = g.clone()
        opt.step()
    sd = opt.state_dict()
    inner = sd["state"][0].get("__bnb_optimizer_quant_state__", sd["state"][0])
    assert inner["state1"].shape == (2, *SHAPES[0])
    if bits == 8:
        assert inner["absmax1"].shape == (2, -(-a[0].numel() // 256))
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999, 0.9999)
    assert (sd["param_groups"][0]["t_alpha"], sd["param_groups"][0]["t_beta3"]) == (10, 10)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt2 = bnb.optim.AdEMAMix(b, optim_bits=bits)  # the loaded groups bring their schedules
    opt2.load_state_dict(torch.load(_saved(sd), weights_only=False))
    for gs in grads[3:]:
        for p, q, g in zip(a, b, gs):
            p.grad = g.clone()
            q.grad = g.clone()
        opt.step()
        opt2.step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)
        for key, val in opt.state[p].items():
            assert torch.equal(val, opt2.state[q][key]) if torch.is_tensor(val) else val == opt2.state[q][key]


def _saved(sd):
    import io
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return buf


def test_manager_overrides(device):
    lin = torch.nn.Linear(80, 70).to(device)
    mng = GlobalOptimManager.get_instance()
    mng.register_parameters(lin.parameters())
    mng.override_config(lin.weight, "optim_bits", 32)
    lin2 = torch.nn.Linear(80, 70).to(device)
    lin2.load_state_dict(lin.state_dict())
    opt = bnb.optim.AdEMAMix8bit(lin.parameters(), min_8bit_size=16)
    mng.override_config(lin.bias, key_value_dict={"alpha": 0.0, "t_beta3": 3})
    # lin2: weight 32-bit, bias with alpha 0 and its own beta3 schedule, from plain constructors
    ref_w = bnb.optim.AdEMAMix32bit([lin2.weight])
    ref_b = bnb.optim.AdEMAMix8bit([lin2.bias], min_8bit_size=16, alpha=0.0, t_beta3=3)
    for _ in range(3):
        x = torch.randn(4, 80, device=device)
        for m in (lin, lin2):
            m.zero_grad()
            m(x).square().sum().backward()
        opt.step()
        ref_w.step()
        ref_b.step()
    st = opt.state[lin.weight]
    assert st["state1"].dtype == torch.float32 and st["state1"].shape == (2, 70, 80)
    assert opt.state[lin.bias]["state1"].dtype == torch.uint8
    assert torch.equal(lin.weight, lin2.weight) and torch.equal(lin.bias, lin2.bias)


def test_reference_checkpoint_loads_and_steps(reference_dir, device):
    import os
    ck = torch.load(os.path.join(reference_dir, "ademamix8bit_checkpoint_ref.pt"), weights_only=False)
    model = torch.nn.Sequential(torch.nn.Linear(96, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    model.load_state_dict(ck["model"])
    model.to(device)
    opt = bnb.optim.AdEMAMix8bit(model.parameters(), **ck["kwargs"])
    opt.load_state_dict(ck["optimizer"])
    st = opt.state[model[0].weight]
    assert st["step"] == 3 and st["state1"].shape == (2, 128, 96) and st["absmax1"].shape == (2, 48)
    assert opt.state[model[0].bias]["state1"].dtype == torch.float32
    for p, g in zip(model.parameters(), ck["grads_step4"]):
        p.grad = g.to(device).clone()
    opt.step()
    for k, v in model.state_dict().items():
        want = ck["model_after_step4"][k].to(device)
        moved = (ck["model"][k].to(device) - want).abs().max()
        assert (v - want).abs().max() < 0.01 * moved, k
    # and it saves in the same layout it was loaded from
    sd = opt.state_dict()["state"][0]["__bnb_optimizer_quant_state__"]
    assert sd["state1"].shape == (2, 128, 96) and sd["absmax1"].shape == (2, 48)


def test_older_blocksize_checkpoint_reblocks_both_halves(device):
    # a state saved with blocksize 2048 (one absmax row per half) loads into our 256-value blocks
    torch.manual_seed(9)
    p = torch.nn.Parameter(torch.randn(5000, device=device))
    opt = bnb.optim.AdEMAMix8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    st = opt.state[p]
    values = [bnb.functional.dequantize_blockwise(st["state1"][k], absmax=st["absmax1"][k], code=st["qmap1"],
                                                  blocksize=256) for k in range(2)]
    old = [bnb.functional.quantize_blockwise(v, code=st["qmap1"], blocksize=2048) for v in values]
    sd = opt.state_dict()
    inner = sd["state"][0]["__bnb_optimizer_quant_state__"]
    inner["state1"] = torch.stack([q for q, _ in old])
    inner["absmax1"] = torch.stack([s.absmax for _, s in old])
    opt2 = bnb.optim.AdEMAMix8bit([torch.nn.Parameter(p.detach().clone())])
    opt2.load_state_dict(sd)
    st2 = next(iter(opt2.state.values()))
    assert st2["absmax1"].shape == (2, 20) and st2["state1"].shape == (2, 5000)
    for k in range(2):
        got = bnb.functional.dequantize_blockwise(st2["state1"][k], absmax=st2["absmax1"][k], code=st2["qmap1"],
                                                  blocksize=256)
        assert (got - values[k]).abs().max() < 0.02 * values[k].abs().max()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("cls", [bnb.optim.AdEMAMix8bit, bnb.optim.AdEMAMix32bit, bnb.optim.PagedAdEMAMix8bit],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_cuda_agrees_with_cpu(cls, dtype):
    # sizes with the slow EMA 16-byte aligned (vector path) and not (element path)
    compare_devices(lambda ps: cls(ps, min_8bit_size=100, t_alpha=3, t_beta3=3), dtype,
                    shapes=[(70001,), (4096,), (300, 17), (9,)], steps=4, float_state_rtol=1e-4)


@needs_cuda
def test_cuda_step_with_schedules_does_not_synchronise():
    params = [torch.randn(s, device="cuda", requires_grad=True) for s in [(5000,), (70, 90), (10,)]]
    opt = bnb.optim.AdEMAMix8bit(params, t_alpha=100, t_beta3=100)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_opcheck(device):
    n, blocks = 700, 3
    q1, q2 = bnb.functional.create_dynamic_map(True).to(device), bnb.functional.create_dynamic_map(False).to(device)
    for eight in (False, True):
        dt = torch.uint8 if eight else torch.float32
        args = ("ademamix", [torch.randn(n, device=device)], [torch.randn(n, device=device)],
                [torch.zeros(2, n, dtype=dt, device=device)], [torch.zeros(n, dtype=dt, device=device)],
                [torch.zeros(2, blocks, device=device)] if eight else [],
                [torch.zeros(blocks, device=device)] if eight else [], q1 if eight else None, q2 if eight else None,
                None, 1e-3, 0.9, 0.999, 0.99, 2.5, 1e-8, 0.01, True, 0.1, 0.001, 0.0, False, 1, 0.0, True)
        torch.library.opcheck(torch.ops.bitsandbytes.optimizer_update.default, args)
