"""A NaN or Inf gradient damages no more than torch.optim's same step: the element, not its
256-value block of 8-bit state; LAMB / LARS show a non-finite norm as a NaN update."""
import pytest
import torch

import bitsandbytes as bnb

N = 4096 + 300  # 8-bit state (at least 4096 values), a partial last block
BAD = (10, 700, 4200)  # Inf, NaN, -Inf: three different blocks

CASES = [
    (bnb.optim.Adam8bit, torch.optim.Adam, dict(lr=1e-2)),
    (bnb.optim.AdamW8bit, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    (bnb.optim.SGD8bit, torch.optim.SGD, dict(lr=1e-2, momentum=0.9)),
    (bnb.optim.RMSprop8bit, torch.optim.RMSprop, dict(lr=1e-3)),
    (bnb.optim.Adagrad8bit, torch.optim.Adagrad, dict(lr=1e-2)),
    (bnb.optim.Lion8bit, None, dict(lr=1e-3)),
    (bnb.optim.AdamW4bit, torch.optim.AdamW, dict(lr=1e-2)),
    (bnb.optim.AdEMAMix8bit, None, dict(lr=1e-3)),
]


def run(cls, kwargs, grads, device):
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(N, device=device))
    opt = cls([p], **kwargs)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach(), opt


def grads_with_nonfinite(device, steps=5):
    grads = [torch.randn(N, device=device) for _ in range(steps)]
    bad = [g.clone() for g in grads]
    bad[1][BAD[0]] = float("inf")
    bad[1][BAD[1]] = float("nan")
    bad[1][BAD[2]] = float("-inf")
    return grads, bad


@pytest.mark.parametrize("cls,torch_cls,kwargs", CASES, ids=[c[0].__name__ for c in CASES])
def test_nonfinite_gradient_damages_the_element_only(device, cls, torch_cls, kwargs):
    grads, bad = grads_with_nonfinite(device)
    p_clean, _ = run(cls, kwargs, grads, device)
    p_bad, opt = run(cls, kwargs, bad, device)
    st = opt.state[opt.param_groups[0]["params"][0]]
    assert st["state1"].dtype == torch.uint8
    assert torch.isfinite(st["absmax1"]).all()
    if "absmax2" in st:
        assert torch.isfinite(st["absmax2"]).all()
    others = torch.ones(N, dtype=torch.bool, device=device)
    others[list(BAD)] = False
    # Every other element took finite steps close to the clean run's: within the 8-bit state's
    # error, not moved by a damaged block scale (Lion would move each by lr a step).
    assert torch.isfinite(p_bad[others]).all()
    blocks = torch.zeros(N, dtype=torch.bool, device=device)
    for i in BAD:
        blocks[i // 256 * 256: (i // 256 + 1) * 256] = True
    assert torch.equal(p_bad[others & ~blocks], p_clean[others & ~blocks])
    steps = len(grads) * kwargs["lr"]
    assert (p_bad[others & blocks] - p_clean[others & blocks]).abs().max() <= 0.25 * steps
    if torch_cls is not None:  # the damaged elements are non-finite exactly where torch's are
        q, _ = run(torch_cls, kwargs, bad, device)
        assert torch.equal(torch.isfinite(p_bad), torch.isfinite(q))


@pytest.mark.parametrize("cls,kwargs", [(bnb.optim.LAMB8bit, dict(lr=1e-3)),
                                        (bnb.optim.LARS8bit, dict(lr=1e-2, momentum=0.9)),
                                        (bnb.optim.LAMB32bit, dict(lr=1e-3))])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_trust_ratio_of_a_nonfinite_update_is_nan(device, cls, kwargs, value):
    grads, _ = grads_with_nonfinite(device, steps=2)
    grads[1][123] = value
    p, _ = run(cls, kwargs, grads[:1], device)
    assert torch.isfinite(p).all()
    p, _ = run(cls, kwargs, grads, device)
    assert p.isnan().all()


def _torch_lion(p, grads, lr, beta1=0.9, beta2=0.99):
    """Lion written with torch ops, the reference of the test below."""
    p, m = p.clone(), torch.zeros_like(p)
    for g in grads:
        p = p - lr * (beta1 * m + (1 - beta1) * g).sign()
        m = beta2 * m + (1 - beta2) * g
    return p


@pytest.mark.parametrize("cls", [bnb.optim.Lion8bit, bnb.optim.Lion32bit])
def test_lion_nonfinite_gradient_is_nonfinite_where_torch_is(device, cls):
    """torch.sign(NaN) is 0 and sign(+-Inf) is +-1: Lion written in torch keeps every element
    finite through a NaN or Inf gradient, and so does ours (the kernel's sign must agree)."""
    _, bad = grads_with_nonfinite(device)
    p_bad, _ = run(cls, dict(lr=1e-3), bad, device)
    torch.manual_seed(1)
    want = _torch_lion(torch.randn(N, device=device), bad, 1e-3)
    assert torch.equal(torch.isfinite(p_bad), torch.isfinite(want))
    assert torch.equal(torch.isfinite(want), torch.ones_like(want, dtype=torch.bool))
