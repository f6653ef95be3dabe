"""Plain-torch float64 reference of the 4-bit product, independent of the kernels: the weight
from the packed bytes, and the rounding bound a product of it must meet."""
import torch

# Unit roundoff of each dtype's significand (2^-p).
UNIT = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def weight64(packed, state):
    """The dequantized weight in float64, from the bytes: code of each nibble (first value in the
    high one) times its block's absmax; a nested absmax is code2[q] * absmax2[b // 256] + offset,
    or 0 where that is below zero (docs/robustness.md)."""
    N, K = state.shape
    n = N * K
    b = packed.reshape(-1).view(torch.uint8).cpu().long()
    codes = torch.stack([b >> 4, b & 15], dim=1).reshape(-1)[:n]
    if state.nested:
        s2 = state.state2
        q = state.absmax.cpu().long()
        blk = torch.arange(q.numel()) // s2.blocksize
        absmax = ((s2.code.cpu().float()[q] * s2.absmax.cpu().float()[blk]) + state.offset.cpu().float()).clamp_min(0)
    else:
        absmax = state.absmax.cpu().float()
    absmax = absmax.double()
    return (state.code.cpu().double()[codes] * absmax[torch.arange(n) // state.blocksize]).reshape(N, K)


def check_product_bound(got, A, W64, bias, dtype):
    """|got - ref| <= 3u * sum|a w| + u |ref| + K * 2^-24 * sum|a w|: each weight within three
    roundings to the dtype of its float64 value (the tensor-core path rounds code and scale
    before their product), float32 sums, one rounding of the result."""
    A64 = A.reshape(-1, A.shape[-1]).double().cpu()
    ref = A64 @ W64.t()
    mag = A64.abs() @ W64.abs().t()
    if bias is not None:
        ref = ref + bias.double().cpu()
        mag = mag + bias.double().cpu().abs()
    u = UNIT[dtype]
    K = A.shape[-1]
    tol = 3 * u * mag + u * ref.abs() + K * 2.0**-24 * mag + 1e-30
    err = (got.reshape(-1, got.shape[-1]).double().cpu() - ref).abs()
    assert (err <= tol).all(), f"max excess {(err - tol).max().item():.3g}, max err {err.max().item():.3g}"
