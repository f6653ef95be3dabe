"""Paged optimizers migrate their state back to the GPU only when it may have left it
(bitsandbytes/optim/paging.py), and still step exactly as the unpaged ones when it did."""
import pytest
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.optim import paging

GB = 1 << 30
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_pressure_possible_counts_peak_others_and_the_state():
    total = 80 * GB
    # 10 GB peak of torch, 1 GB context and resident state, 1 GB of paged state: room to spare
    assert not paging.pressure_possible(total, free=total - 4 * GB, reserved=3 * GB, peak_reserved=10 * GB,
                                        paged_bytes=GB)
    # a forward pass that once took 77 GB: the driver may have evicted the state then
    assert paging.pressure_possible(total, free=total - 4 * GB, reserved=3 * GB, peak_reserved=77 * GB,
                                    paged_bytes=GB)
    # another process holds most of the device now
    assert paging.pressure_possible(total, free=2 * GB, reserved=3 * GB, peak_reserved=3 * GB, paged_bytes=GB)
    # the boundary: exactly the capacity less a 32nd fits, a byte more does not
    limit = total - total // 32
    assert not paging.pressure_possible(total, free=total - GB, reserved=0, peak_reserved=limit - 2 * GB,
                                        paged_bytes=GB)
    assert paging.pressure_possible(total, free=total - GB, reserved=0, peak_reserved=limit - 2 * GB + 1,
                                    paged_bytes=GB)


def test_prefetch_to_host_off_the_gpu_is_a_no_op():
    t = F.get_paged(5, device="cpu")
    before = F.optimizer.host_moves()
    F.prefetch_tensor(t, to_cpu=True)
    F.prefetch_to_host([t])
    assert F.optimizer.host_moves() == before and not t.any()
    with pytest.raises(ValueError, match="paged"):
        F.prefetch_tensor(torch.zeros(3), to_cpu=True)


def _pair(n=300_000, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    p1 = torch.randn(n, device="cuda", generator=g).requires_grad_()
    p2 = p1.detach().clone().requires_grad_()
    return p1, p2


def _step_both(paged, plain, p1, p2, steps, before=None):
    """`steps` steps of both optimizers on the same random gradients; before(i) runs ahead of
    step i."""
    for i in range(steps):
        g = torch.randn_like(p1)
        p1.grad, p2.grad = g.clone(), g.clone()
        if before is not None:
            before(i)
        paged.step()
        plain.step()


def _paged_and_plain(monkeypatch, pressure, seed=0, classes=(bnb.optim.PagedAdamW8bit, bnb.optim.AdamW8bit)):
    """A paged optimizer and its unpaged twin on equal parameters, the memory check answering
    `pressure`; `calls` records the size of each migration the paged one queues."""
    calls = []
    real = paging.prefetch_to_device
    monkeypatch.setattr(paging, "prefetch_to_device", lambda ts: (calls.append(len(ts)), real(ts)))
    monkeypatch.setattr(paging, "pressure_possible", lambda *a: pressure)
    p1, p2 = _pair(seed=seed)
    return calls, p1, p2, classes[0]([p1]), classes[1]([p2])


@cuda_only
def test_state_that_fits_is_prefetched_once(monkeypatch):
    calls, p1, p2, paged, plain = _paged_and_plain(monkeypatch, False)
    _step_both(paged, plain, p1, p2, 4)
    assert calls == [2]  # state1 and state2, at the first step only
    assert torch.equal(p1, p2)


@cuda_only
def test_state_sent_to_the_host_comes_back_and_steps_exactly(monkeypatch):
    calls, p1, p2, paged, plain = _paged_and_plain(monkeypatch, False, seed=1)

    def to_host(i):
        if i == 2:  # as a user freeing GPU memory for something else would
            state = paged.state[p1]
            saved = state["state1"].clone(), state["state2"].clone()
            for key in ("state1", "state2"):
                F.prefetch_tensor(state[key], to_cpu=True)
            torch.cuda.synchronize()
            assert torch.equal(state["state1"], saved[0]) and torch.equal(state["state2"], saved[1])

    _step_both(paged, plain, p1, p2, 4, to_host)
    assert calls == [2, 2]  # the first step, and the step after the move to the host
    assert torch.equal(p1, p2)
    for key in ("state1", "state2", "absmax1", "absmax2"):
        assert torch.equal(paged.state[p1][key], plain.state[p2][key]), key


@cuda_only
def test_possible_pressure_prefetches_every_step(monkeypatch):
    calls, p1, p2, paged, plain = _paged_and_plain(monkeypatch, True, seed=2,
                                                   classes=(bnb.optim.PagedAdam32bit, bnb.optim.Adam32bit))
    _step_both(paged, plain, p1, p2, 3)
    assert calls == [2, 2, 2]
    assert torch.equal(p1, p2)


MB = 1 << 20


@cuda_only
def test_cuda_memory_numbers_agree_with_torch():
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.empty_cache()  # what earlier tests left cached: the large allocation below stays small
    t = torch.empty(3 * MB + 5, dtype=torch.uint8, device=device)  # not a multiple of the allocator's blocks
    torch.cuda.synchronize()
    total, free, reserved, peak = F.optimizer.cuda_memory_numbers(t)
    want_free, want_total = torch.cuda.mem_get_info(device)
    assert total == want_total
    assert abs(free - want_free) <= 8 * MB  # others may allocate between the two reads
    assert reserved == torch.cuda.memory_reserved(device) and peak == torch.cuda.max_memory_reserved(device)
    assert t.numel() <= reserved <= peak and 0 < free <= total
    # the peak outlives what made it: an allocation larger than the device holds now, then freed
    big = torch.empty(reserved + 64 * MB, dtype=torch.uint8, device=device)
    del big
    torch.cuda.empty_cache()
    _, _, reserved_after, peak_after = F.optimizer.cuda_memory_numbers(t)
    assert peak_after >= reserved + 64 * MB > reserved_after
    assert (reserved_after, peak_after) == (torch.cuda.memory_reserved(device), torch.cuda.max_memory_reserved(device))


def test_cuda_memory_numbers_wants_a_cuda_tensor():
    with pytest.raises(ValueError, match="on_device"):
        F.optimizer.cuda_memory_numbers(torch.zeros(1))


@cuda_only
def test_the_real_memory_figures_see_no_pressure_for_a_small_state():
    p = torch.randn(300_000, device="cuda", requires_grad=True)
    opt = bnb.optim.PagedAdamW8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    residency = opt._residency
    device = p.device
    assert residency.bytes[device] == 2 * p.numel()
    # true unless this process or another holds nearly the whole GPU
    free, total = torch.cuda.mem_get_info(device)
    if free > total // 4 and torch.cuda.max_memory_reserved(device) < total // 2:
        assert not residency._pressure(device)


@cuda_only
@pytest.mark.parametrize("cls", [bnb.optim.PagedAdamW8bit, bnb.optim.PagedAdamW4bit, bnb.optim.PagedAdam32bit])
def test_loaded_state_stays_paged_and_resumes_exactly(cls):
    p1, p2 = _pair(seed=3)
    first = cls([p1])
    for _ in range(2):
        p1.grad = torch.randn_like(p1)
        first.step()
    sd = first.state_dict()
    p2.data.copy_(p1.data)
    second = cls([p2])
    second.load_state_dict(sd)
    for key in ("state1", "state2"):
        assert getattr(second.state[p2][key], "is_paged", False), key  # unified memory, as before the save
        assert torch.equal(second.state[p2][key], first.state[p1][key])
    g = torch.randn_like(p1)
    p1.grad, p2.grad = g.clone(), g.clone()
    first.step()
    second.step()
    assert torch.equal(p1, p2)


@pytest.mark.parametrize("cls", [bnb.optim.PagedAdamW8bit, bnb.optim.PagedAdamW4bit, bnb.optim.PagedAdam32bit,
                                 bnb.optim.PagedAdEMAMix8bit])
def test_loaded_state_is_paged_once(cls, monkeypatch):
    # A paged optimizer copies each loaded state into unified memory once: a second copy would
    # hold the state twice on the device at the peak. Counted on any device by standing in for
    # the copy into unified memory (on the CPU the paged classes keep ordinary tensors).
    import bitsandbytes.optim.checkpoint as checkpoint
    import bitsandbytes.optim.state as state

    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=device).manual_seed(5)
    p1 = torch.randn(10_000, device=device, generator=g).requires_grad_()
    p2 = p1.detach().clone().requires_grad_()
    first = cls([p1])
    p1.grad = torch.randn_like(p1)
    first.step()
    sd = first.state_dict()
    copies = []

    def paged_copy(optimizer, t, device):
        if not optimizer.is_paged:
            return None
        out = t.to(device, copy=True)
        out.is_paged = True
        copies.append(out)
        return out

    monkeypatch.setattr(checkpoint, "paged_copy", paged_copy)
    monkeypatch.setattr(state, "paged_copy", paged_copy)
    second = cls([p2])
    second.load_state_dict(sd)
    loaded = [second.state[p2][k] for k in ("state1", "state2")]
    assert len(copies) == 2 and all(any(c is t for c in copies) for t in loaded)
    for key in ("state1", "state2"):
        assert torch.equal(second.state[p2][key].cpu(), first.state[p1][key].cpu())


def test_page_manager_holds_registered_state_weakly(monkeypatch):
    import gc

    import bitsandbytes.functional.paged as paged

    mng = F.GlobalPageManager.get_instance()
    seen = []
    monkeypatch.setattr(paged, "prefetch_tensor", lambda t, to_cpu=False: seen.append((t, to_cpu)))
    monkeypatch.setattr(mng, "paged_tensors", [])
    monkeypatch.setattr(mng, "_weak", [])
    kept, dropped = F.get_paged(4, device="cpu"), F.get_paged(6, device="cpu")
    first = F.get_paged(3, device="cpu")
    mng.paged_tensors.append(first)
    mng.register_weakly(kept)
    mng.register_weakly(dropped)
    del dropped
    gc.collect()
    mng.prefetch_all(to_cpu=True)
    # the registered list and the live weak ones, the latest first; the freed one is gone
    assert [t.numel() for t, _ in seen] == [4, 3] and all(to_cpu for _, to_cpu in seen)


@cuda_only
def test_prefetch_all_to_cpu_moves_optimizer_state_and_the_next_step_brings_it_back(monkeypatch):
    calls, p1, p2, paged, plain = _paged_and_plain(monkeypatch, False, seed=4)

    def all_to_host(i):
        if i == 1:
            before = F.optimizer.host_moves()
            F.GlobalPageManager.get_instance().prefetch_all(to_cpu=True)
            assert F.optimizer.host_moves() > before  # the optimizer's state was among what moved

    _step_both(paged, plain, p1, p2, 3, all_to_host)
    assert calls == [2, 2]
    assert torch.equal(p1, p2)


def test_page_manager_forgets_freed_state(monkeypatch):
    import gc

    mng = F.GlobalPageManager.get_instance()
    monkeypatch.setattr(mng, "_weak", [])
    monkeypatch.setattr(mng, "_live", 0)
    kept = [F.get_paged(2, device="cpu") for _ in range(10)]
    for t in kept:
        mng.register_weakly(t)
    for _ in range(500):  # state of optimizers made and dropped
        mng.register_weakly(F.get_paged(2, device="cpu"))
    gc.collect()
    mng.register_weakly(F.get_paged(2, device="cpu"))
    assert len(mng._weak) < 200  # the freed are pruned as it goes
    assert sum(r() is not None for r in mng._weak) >= len(kept)
