"""The CUDA-against-CPU comparison of optimizer steps shared by the optimizer tests: the same
parameters and gradients stepped on both devices, parameters and quantized state compared with
the tolerance the two devices' rounding allows."""
import torch


def compare_devices(make_optimizer, dtype, shapes=((70001,), (300, 17), (9,)), steps=3, float_state_rtol=None,
                    devices=("cpu", "cuda")):
    """make_optimizer(params) builds the optimizer; float_state_rtol, when given, also compares
    float32 state1 with that relative tolerance."""
    base = [torch.randn(s).to(dtype) for s in shapes]
    grads = [[torch.randn(s).to(dtype) for s in shapes] for _ in range(steps)]
    results = []
    for device in devices:
        params = [b.detach().clone().to(device).requires_grad_() for b in base]
        opt = make_optimizer(params)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.to(device)
            opt.step()
        results.append((params, opt))
    (pc, oc), (pg, og) = results
    wide = dtype != torch.float32
    for a, b in zip(pc, pg):
        sa, sb = oc.state[a], og.state[b]
        close = torch.isclose(a.detach().float(), b.detach().cpu().float(), rtol=1e-2 if wide else 1e-4,
                              atol=1e-4 if wide else 1e-6)
        # the two devices round differently (fused multiply-add): rare flips of a code or a sign
        assert close.float().mean() > 0.999
        if sa["state1"].dtype == torch.uint8:
            assert (sa["state1"] == sb["state1"].cpu()).float().mean() > 0.99
            # a code flipped by rounding can, rarely, change a later block maximum
            key = "absmax1" if "absmax1" in sa else "max1"
            same_max = torch.isclose(sa[key], sb[key].cpu(), rtol=1e-4, atol=1e-7)
            assert same_max.float().mean() > 0.98
        elif float_state_rtol is not None:
            torch.testing.assert_close(sa["state1"], sb["state1"].cpu(), rtol=float_state_rtol, atol=1e-7)
