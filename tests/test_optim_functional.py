"""The low-level optimizer updates (functional API and the optimizer_update op) against
plain-torch references, and their argument checks."""
import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes import functional as F
from bitsandbytes.functional.optimizer import optimizer_update_multi, prepare_update, state_maps

SIZES = [1, 255, 257, 4099, 70001]


def adam_reference(p, g, m, v, step, lr, b1, b2, eps, wd):
    p, g = p.double(), g.double()
    m = b1 * m.double() + (1 - b1) * g
    v = b2 * v.double() + (1 - b2) * g * g
    u = (m / (1 - b1 ** step)) / (v.sqrt() / (1 - b2 ** step) ** 0.5 + eps)
    return p * (1 - lr * wd) - lr * u, m, v


@pytest.mark.parametrize("n", SIZES)
def test_update_32bit_adamw(n, device):
    p = torch.randn(n, device=device)
    m, v = torch.zeros(n, device=device), torch.zeros(n, device=device)
    ref_p, ref_m, ref_v = p.double(), m.double(), v.double()
    for step in range(1, 6):
        g = torch.randn(n, device=device)
        ref_p, ref_m, ref_v = adam_reference(ref_p, g, ref_m, ref_v, step, 1e-2, 0.9, 0.99, 1e-8, 0.1)
        F.optimizer_update_32bit("adamw", g, p, m, 0.9, 1e-8, step, 1e-2, v, 0.99, weight_decay=0.1)
    torch.testing.assert_close(p.double(), ref_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.double(), ref_m, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_update_8bit_blockwise_adam(n, dtype, device):
    p = torch.randn(n, device=device).to(dtype)
    q1 = torch.zeros(n, dtype=torch.uint8, device=device)
    q2 = torch.zeros_like(q1)
    blocks = -(-n // 256)
    a1, a2 = torch.zeros(blocks, device=device), torch.zeros(blocks, device=device)
    code1, code2 = state_maps(device)
    ref_p, ref_m, ref_v = p.double(), torch.zeros(n, dtype=torch.float64, device=device), torch.zeros(
        n, dtype=torch.float64, device=device)
    for step in range(1, 4):
        g = torch.randn(n, device=device).to(dtype)
        # the reference starts each step from our dequantized state: one step's error is checked
        m = (code1[q1.long()] * a1.repeat_interleave(256)[:n]).double()
        v = (code2[q2.long()] * a2.repeat_interleave(256)[:n]).double()
        ref_p, ref_m, ref_v = adam_reference(p, g, m, v, step, 1e-2, 0.9, 0.999, 1e-8, 0.0)
        F.optimizer_update_8bit_blockwise("adam", g, p, q1, q2, 0.9, 0.999, 0.0, 0.0, 1e-8, step, 1e-2, code1,
                                          code2, a1, a2)
        # new absmax is the block max of the new state
        want_a1 = torch.nn.functional.pad(ref_m.abs(), (0, blocks * 256 - n)).view(blocks, 256).amax(1)
        torch.testing.assert_close(a1.double(), want_a1, rtol=1e-5, atol=1e-9)
        got_m = (code1[q1.long()] * a1.repeat_interleave(256)[:n]).double()
        assert ((got_m - ref_m).abs() <= 0.02 * a1.repeat_interleave(256)[:n].double() + 1e-9).all()
        tol = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
        torch.testing.assert_close(p.double(), ref_p, rtol=tol, atol=tol)


def _requant_maps():
    """Sorted maps with their names: the dynamic ones (one compare per lookup), and maps whose
    buckets hold several midpoints, midpoints below 2^-25 or above 1 (the walk)."""
    crowded = torch.cat([torch.linspace(-1, 0.5, 56), torch.linspace(0.5, 0.51, 200)]).sort().values
    return {
        "dynamic signed": F.create_dynamic_map(signed=True),
        "dynamic unsigned": F.create_dynamic_map(signed=False),
        "linear signed": F.create_linear_map(signed=True),
        "fp8 e5m2": F.create_fp8_map(signed=True, exponent_bits=5, precision_bits=2),
        "crowded": crowded,
        "beyond one": F.create_linear_map(signed=True) * 2,
    }


def _expected_codes(x, code):
    """The number of float32 midpoints strictly below each float32 x: the nearest code, ties down."""
    mid = (code[:-1] + code[1:]) * 0.5
    return torch.searchsorted(mid.cpu(), x.cpu().contiguous(), side="left").to(torch.uint8)


def _blockwise_scaled(values):
    """values times the reciprocal of their 256-block absolute maximum, in float32 as the kernels do."""
    n = values.numel()
    padded = torch.nn.functional.pad(values, (0, -n % 256))
    amax = padded.abs().view(-1, 256).amax(1)
    recip = torch.where(amax > 0, 1.0 / amax, torch.zeros_like(amax))
    return values * recip.repeat_interleave(256)[:n], amax


def _requant_gradient(n, device):
    """A gradient with zeros, tiny values and blocks of very different scales."""
    g = torch.randn(n, device=device)
    g[::7] = 0.0
    g[1::11] *= 1e-30
    g[: n // 2] *= torch.logspace(-12, 3, n // 2, device=device)
    return g


@pytest.mark.parametrize("name", list(_requant_maps()))
def test_requantization_is_the_nearest_code_for_any_map(name, device):
    """After one step every 8-bit state code is exactly the nearest code of the new state value
    scaled by its block maximum, for the dynamic maps and for maps the one-compare lookup cannot
    take (signed lookups through momentum's state, unsigned ones through Adam's second moment)."""
    torch.manual_seed(3)
    code = _requant_maps()[name].to(device)
    n = 70001
    g = _requant_gradient(n, device)
    # momentum: on the first step the state is the gradient
    p = torch.zeros(n, device=device)
    q1 = torch.zeros(n, dtype=torch.uint8, device=device)
    a1 = torch.zeros(-(-n // 256), device=device)
    F.optimizer_update_8bit_blockwise("momentum", g, p, q1, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3, code, None,
                                      a1, None)
    x, amax = _blockwise_scaled(g)
    torch.testing.assert_close(a1, amax, rtol=0, atol=0)
    assert torch.equal(q1.cpu(), _expected_codes(x, code))
    # Adam: the first step's second moment is (1 - beta2) g^2, looked up with a table for v >= 0
    beta1, beta2 = 0.9, 0.999
    signed = F.create_dynamic_map(signed=True).to(device)
    q1.zero_(), a1.zero_()
    q2, a2 = torch.zeros_like(q1), torch.zeros_like(a1)
    F.optimizer_update_8bit_blockwise("adam", g, p, q1, q2, beta1, beta2, 0.0, 0.0, 1e-8, 1, 1e-3, signed, code, a1, a2)
    one = torch.tensor(1.0, device=device)
    v = (one - torch.tensor(beta2, device=device)) * g * g
    x2, amax2 = _blockwise_scaled(v)
    torch.testing.assert_close(a2, amax2, rtol=0, atol=0)
    assert torch.equal(q2.cpu(), _expected_codes(x2, code))
    x1, _ = _blockwise_scaled((one - torch.tensor(beta1, device=device)) * g)
    assert torch.equal(q1.cpu(), _expected_codes(x1, signed))


def test_update_8bit_tensorwise(device):
    n = 3000
    p = torch.randn(n, device=device)
    q1 = torch.zeros(n, dtype=torch.uint8, device=device)
    a1 = torch.zeros(1, device=device)
    code1, _ = state_maps(device)
    for step in range(1, 4):
        g = torch.randn(n, device=device)
        m_old = code1[q1.long()] * a1
        want_m = 0.9 * m_old + g
        F.optimizer_update_8bit_blockwise("momentum", g, p, q1, None, 0.9, 0.0, 0.0, 0.0, 0.0, step, 1e-2, code1,
                                          None, a1, None, block_wise=False)
        want_m = g if step == 1 else want_m
        torch.testing.assert_close(a1[0], want_m.abs().max())
        assert ((code1[q1.long()] * a1 - want_m).abs() <= 0.02 * a1).all()


def test_multi_tensor_equals_one_at_a_time(device):
    shapes = [(300,), (17, 31), (0,), (4096,), (5,)]
    ps = [torch.randn(s, device=device) for s in shapes]
    gs = [torch.randn(s, device=device) for s in shapes]
    single = [p.clone() for p in ps]
    ms = [torch.zeros(s, device=device) for s in shapes]
    ms_single = [m.clone() for m in ms]
    for step in (1, 2):
        optimizer_update_multi("lion", ps, gs, ms, None, 0.9, 0.99, 0.0, step, 1e-3, weight_decay=0.1)
        for p, g, m in zip(single, gs, ms_single):
            F.optimizer_update_32bit("lion", g, p, m, 0.9, 0.0, step, 1e-3, beta2=0.99, weight_decay=0.1)
    for a, b in zip(ps, single):
        assert torch.equal(a, b)


def test_gnorm_scale_multiplies_gradient(device):
    p1, p2 = torch.randn(1000, device=device), None
    p2 = p1.clone()
    m1, m2 = torch.zeros(1000, device=device), torch.zeros(1000, device=device)
    g = torch.randn(1000, device=device)
    F.optimizer_update_32bit("momentum", g, p1, m1, 0.9, 0.0, 1, 0.1, gnorm_scale=torch.tensor(0.25, device=device))
    F.optimizer_update_32bit("momentum", g * 0.25, p2, m2, 0.9, 0.0, 1, 0.1)
    torch.testing.assert_close(p1, p2)


def test_bad_arguments_name_the_argument(device):
    p = torch.randn(300, device=device)
    m = torch.zeros(300, device=device)
    with pytest.raises(ValueError, match="optimizer_name"):
        F.optimizer_update_32bit("adamax", p.clone(), p, m, 0.9, 1e-8, 1, 1e-3)
    with pytest.raises(TypeError, match="grads"):
        F.optimizer_update_32bit("momentum", p.half(), p, m, 0.9, 1e-8, 1, 1e-3)
    with pytest.raises(ValueError, match="state1"):
        F.optimizer_update_32bit("momentum", p.clone(), p, torch.zeros(299, device=device), 0.9, 1e-8, 1, 1e-3)
    with pytest.raises(ValueError, match="state2"):
        F.optimizer_update_32bit("adam", p.clone(), p, m, 0.9, 1e-8, 1, 1e-3, state2=None)
    with pytest.raises(ValueError, match="contiguous"):
        q = torch.randn(20, 30, device=device).t()
        F.optimizer_update_32bit("momentum", q.clone(), q, torch.zeros(30, 20, device=device), 0.9, 0.0, 1, 1e-3)
    q1 = torch.zeros(300, dtype=torch.uint8, device=device)
    code1, code2 = state_maps(device)
    with pytest.raises(ValueError, match="absmax1"):
        F.optimizer_update_8bit_blockwise("momentum", p.clone(), p, q1, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3,
                                          code1, None, torch.zeros(1, device=device), None)
    with pytest.raises(ValueError, match="qmap1"):
        F.optimizer_update_8bit_blockwise("momentum", p.clone(), p, q1, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3,
                                          torch.zeros(10, device=device), None, torch.zeros(2, device=device), None)
    with pytest.raises(ValueError, match="step"):
        F.optimizer_update_32bit("momentum", p.clone(), p, m, 0.9, 0.0, 0, 1e-3)


def test_opcheck_optimizer_update(device):
    n = 700
    args = ("adam", [torch.randn(n, device=device)], [torch.randn(n, device=device)],
            [torch.zeros(n, device=device)], [torch.zeros(n, device=device)], [], [], None, None, None, 1e-3, 0.9, 0.999, 0.0, 0.0, 1e-8, 0.0, False, 0.1, 0.001, 0.0, False, 1, 0.0,
            True)
    torch.library.opcheck(torch.ops.bitsandbytes.optimizer_update.default, args)
    code1, code2 = state_maps(device)
    blocks = -(-n // 256)
    args8 = ("adam", [torch.randn(n, device=device)], [torch.randn(n, device=device)],
             [torch.zeros(n, dtype=torch.uint8, device=device)], [torch.zeros(n, dtype=torch.uint8, device=device)],
             [torch.zeros(blocks, device=device)], [torch.zeros(blocks, device=device)], code1, code2,
             torch.ones(1, device=device), 1e-3, 0.9, 0.999, 0.0, 0.0, 1e-8, 0.01, True, 0.1, 0.001, 0.0, False, 1, 0.0,
             True)
    torch.library.opcheck(torch.ops.bitsandbytes.optimizer_update.default, args8)


def test_paged_zeros(device):
    t = F.paged_zeros((3, 5), dtype=torch.float32, device=device)
    assert t.shape == (3, 5) and t.device.type == device and torch.count_nonzero(t) == 0
    t += 1
    F.prefetch_to_device(t)
    F.prefetch_to_device([t, torch.ones(2, device=device)])  # ordinary memory: nothing to do
    assert t.sum().item() == 15


def _multi_inputs(device, eight_bit, shapes=((1000,), (300, 17), (5,))):
    params = [torch.randn(s, device=device) for s in shapes]
    dtype = torch.uint8 if eight_bit else torch.float32
    s1 = [torch.zeros(s, dtype=dtype, device=device) for s in shapes]
    s2 = [torch.zeros(s, dtype=dtype, device=device) for s in shapes]
    blocks = [-(-p.numel() // 256) for p in params]
    a1 = [torch.zeros(b, device=device) for b in blocks] if eight_bit else None
    a2 = [torch.zeros(b, device=device) for b in blocks] if eight_bit else None
    return params, s1, s2, a1, a2


@pytest.mark.parametrize("eight_bit", [False, True])
def test_prepared_update_equals_the_op(eight_bit, device):
    # The prepared entry (lists handed over once) and torch.ops with the full lists: same bits.
    q1, q2 = state_maps(device) if eight_bit else (None, None)
    runs = []
    for use_prepared in (False, True):
        torch.manual_seed(0)
        params, s1, s2, a1, a2 = _multi_inputs(device, eight_bit)
        prepared = prepare_update(params, s1, s2, a1, a2) if use_prepared else None
        for step in range(1, 4):
            grads = [torch.randn_like(p) for p in params]
            for p, g in zip(params, grads):
                p.grad = g
            with torch.no_grad():  # as in optimizer.step()
                optimizer_update_multi("adamw", params, None if use_prepared else grads, s1, s2, 0.9, 0.99, 1e-8,
                                       step, 1e-2, qmap1=q1, qmap2=q2, absmax1=a1, absmax2=a2, weight_decay=0.1,
                                       prepared=prepared)
        runs.append((params, s1, s2))
    for a, b in zip(runs[0], runs[1]):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


@pytest.mark.parametrize("use_prepared", [False, True])
def test_update_bumps_versions_and_refuses_leaves_under_grad_mode(use_prepared, device):
    # The op's Autograd kernel: every tensor the step writes gets a new version (so autograd
    # notices a parameter changed under a saved graph); with grad mode on, a leaf that requires
    # grad is refused, as torch refuses any in-place op on one.
    params, s1, s2, _, _ = _multi_inputs(device, False)
    params = [p.requires_grad_() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    prepared = prepare_update(params, s1, s2) if use_prepared else None
    grads = None if use_prepared else [p.grad for p in params]
    before = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match="no_grad"):
        optimizer_update_multi("adam", params, grads, s1, s2, 0.9, 0.99, 1e-8, 1, 1e-2, prepared=prepared)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    versions = [t._version for t in params + s1 + s2]
    with torch.no_grad():
        optimizer_update_multi("adam", params, grads, s1, s2, 0.9, 0.99, 1e-8, 1, 1e-2, prepared=prepared)
    assert all(t._version > v for t, v in zip(params + s1 + s2, versions))
    assert all(not torch.equal(p.detach(), b) for p, b in zip(params, before))


def test_prepared_update_is_seen_by_dispatch_modes(device):
    # The prepared entry calls the op through the dispatcher: a TorchDispatchMode sees it.
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    params, s1, s2, _, _ = _multi_inputs(device, False)
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.clone() for p in params]
    with torch.no_grad(), Record():
        optimizer_update_multi("adam", params, None, s1, s2, 0.9, 0.99, 1e-8, 1, 1e-2,
                               prepared=prepare_update(params, s1, s2))
    assert any("optimizer_update" in name for name in seen)
    assert all(not torch.equal(p, b) for p, b in zip(params, before))


def test_prepared_update_defers_to_torch_function_modes(device):
    # Under a torch-function mode the update goes through torch.ops, where the mode sees it.
    seen = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    params, s1, s2, _, _ = _multi_inputs(device, False)
    before = [p.clone() for p in params]
    prepared = prepare_update(params, s1, s2)
    for p in params:
        p.grad = torch.ones_like(p)
    with torch.no_grad(), Record():
        optimizer_update_multi("adam", params, None, s1, s2, 0.9, 0.99, 1e-8, 1, 1e-2, prepared=prepared)
    assert any("optimizer_update" in name for name in seen)
    assert all(not torch.equal(p, b) for p, b in zip(params, before))


def test_prepare_refuses_bad_input():
    from bitsandbytes import _C
    with pytest.raises(TypeError, match="params"):
        _C.optimizer_tensors(torch.zeros(3), [], [], [], [])
    with pytest.raises(TypeError, match=r"state1\[1\]"):
        _C.optimizer_tensors([torch.zeros(3)], [torch.zeros(3), 5], [], [], [])
    with pytest.raises(TypeError, match="handle"):
        _C.optimizer_step(object(), "adam", None, None, None, 1e-3, 0.9, 0.99, 0.0, 0.0, 1e-8, 0.0, False, 1.0, 1.0,
                          0.0, False, 1, 0.0, True)
    with pytest.raises(TypeError, match="handle"):
        _C.optimizer_grads_match(object())


class _Traced(torch.Tensor):
    """A tensor subclass with its own __torch_function__ (as wrapper tensors have)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


def test_prepared_update_takes_tensor_subclasses_through_torch_ops(device):
    # Parameters the extension cannot take directly still update, through torch.ops, and
    # exactly as plain tensors do.
    results = []
    for wrap in (False, True):
        torch.manual_seed(0)
        params, s1, s2, _, _ = _multi_inputs(device, False)
        if wrap:
            params = [p.as_subclass(_Traced) for p in params]
        prepared = prepare_update(params, s1, s2)
        assert (prepared.handle is None) == wrap
        grads = [torch.randn(p.shape, device=device) for p in params]
        with torch.no_grad():
            optimizer_update_multi("adam", params, grads, s1, s2, 0.9, 0.99, 1e-8, 1, 1e-2, prepared=prepared)
        results.append([p.as_subclass(torch.Tensor).clone() for p in params])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_reference_argument_order_with_beta3_and_alpha(device):
    """Positional calls in the reference's order (beta3 and alpha after beta2) mean what they
    mean there: the same update as the keyword call; a non-zero beta3/alpha is refused for an
    algorithm other than ademamix (tests/test_ademamix.py runs ademamix through these forms)."""
    n = 1000
    g = torch.randn(n, device=device)
    p1, p2 = torch.randn(n, device=device), None
    p2 = p1.clone()
    m1, v1, m2, v2 = (torch.zeros(n, device=device) for _ in range(4))
    F.optimizer_update_32bit("adam", g, p1, m1, 0.9, 1e-8, 1, 1e-2, v1, 0.99, 0.0, 0.0, 0.0, 1.0, None, 0.0, False)
    F.optimizer_update_32bit("adam", g, p2, m2, beta1=0.9, eps=1e-8, step=1, lr=1e-2, state2=v2, beta2=0.99)
    assert torch.equal(p1, p2) and torch.equal(v1, v2)
    code1, code2 = state_maps(device)
    q = [torch.zeros(n, dtype=torch.uint8, device=device) for _ in range(4)]
    a = [torch.zeros(4, device=device) for _ in range(4)]
    p3, p4 = p1.clone(), p1.clone()
    F.optimizer_update_8bit_blockwise("adam", g, p3, q[0], q[1], 0.9, 0.99, 0.0, 0.0, 1e-8, 1, 1e-2, code1, code2,
                                      a[0], a[1], 0.0, 1.0, False)
    F.optimizer_update_8bit_blockwise("adam", g, p4, q[2], q[3], beta1=0.9, beta2=0.99, beta3=0.0, alpha=0.0, eps=1e-8,
                                      step=1, lr=1e-2, qmap1=code1, qmap2=code2, absmax1=a[2], absmax2=a[3])
    assert torch.equal(p3, p4) and torch.equal(a[0], a[2])
    with pytest.raises(ValueError, match="beta3"):
        F.optimizer_update_32bit("adam", g, p1, m1, 0.9, 1e-8, 1, 1e-2, v1, 0.99, 0.999, 5.0)
    with pytest.raises(ValueError, match="alpha"):
        F.optimizer_update_8bit_blockwise("adam", g, p3, q[0], q[1], 0.9, 0.99, 0.0, 5.0, 1e-8, 1, 1e-2, code1, code2,
                                          a[0], a[1])


def test_update_8bit_tensorwise_reference_contract(device):
    """optimizer_update_8bit reads max1, writes the new maximum to new_max1 and leaves max1;
    the caller swaps them, as the reference's optimizers do. Checked in float64."""
    n = 2500
    p = torch.randn(n, device=device)
    q1, q2 = torch.zeros(n, dtype=torch.uint8, device=device), torch.zeros(n, dtype=torch.uint8, device=device)
    code1, code2 = state_maps(device)
    max1, max2, new1, new2 = (torch.zeros(1, device=device) for _ in range(4))
    ref_p = p.double()
    for step in range(1, 4):
        g = torch.randn(n, device=device)
        m = 0.9 * (code1[q1.long()] * max1).double() + 0.1 * g.double()
        v = 0.99 * (code2[q2.long()] * max2).double() + 0.01 * g.double() ** 2
        ref_p = p.double() - 1e-2 * (m / (1 - 0.9 ** step)) / (v.sqrt() / (1 - 0.99 ** step) ** 0.5 + 1e-8)
        old1 = max1.clone()
        F.optimizer_update_8bit("adam", g, p, q1, q2, 0.9, 0.99, 1e-8, step, 1e-2, code1, code2, max1, max2, new1,
                                new2)
        assert torch.equal(max1, old1)
        torch.testing.assert_close(new1.double(), m.abs().max().reshape(1), rtol=1e-5, atol=0)
        torch.testing.assert_close(new2.double(), v.abs().max().reshape(1), rtol=1e-5, atol=0)
        assert ((code1[q1.long()] * new1).double() - m).abs().max() <= 0.02 * new1.item()
        torch.testing.assert_close(p.double(), ref_p, rtol=1e-5, atol=1e-6)
        max1, new1 = new1, max1
        max2, new2 = new2, max2
