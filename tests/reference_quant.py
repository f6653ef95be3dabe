"""Plain-torch float64 reference of 8-bit quantization, independent of the kernels."""
import torch


def nearest_code(x, code):
    """Index of the nearest entry of `code` for each value of x (exhaustive, float64)."""
    x = x.double().cpu().reshape(-1, 1)
    return (x - code.double().cpu().reshape(1, -1)).abs().argmin(dim=1)


def quantize_blockwise_ref(A, code, blocksize):
    flat = A.double().cpu().reshape(-1)
    n = flat.numel()
    pad = (-n) % blocksize
    blocks = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = blocks / absmax.clamp_min(1e-300).unsqueeze(1)
    q = nearest_code(scaled, code.cpu()).reshape(-1)[:n]
    return q.to(torch.uint8).reshape(A.shape), absmax


def dequantize_blockwise_ref(q, absmax, code, blocksize):
    flat = code.double().cpu()[q.cpu().long().reshape(-1)]
    scale = absmax.double().cpu().repeat_interleave(blocksize)[: flat.numel()]
    return (flat * scale).reshape(q.shape)


def tie_tolerant_equal(q, q_ref, x_scaled, code, atol=1e-6):
    """Codes equal, except where x sits (within atol) halfway between the two codes."""
    q = q.cpu().long().reshape(-1)
    q_ref = q_ref.cpu().long().reshape(-1)
    x = x_scaled.double().cpu().reshape(-1)
    c = code.double().cpu()
    differ = q != q_ref
    d1 = (c[q[differ]] - x[differ]).abs()
    d2 = (c[q_ref[differ]] - x[differ]).abs()
    return bool(((d1 - d2).abs() <= atol).all()), int(differ.sum())
