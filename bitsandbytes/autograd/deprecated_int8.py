"""The deprecated autograd entries of the reference library's 0.45 release: the vector-wise int8
matmul (`bnb.mm_cublas`, `bmm_cublas`, `matmul_cublas`) and the helpers that undid its tiled
GPU layouts. They compute what the reference computed, on our int8 ops and plain torch."""
import torch

from ..functional import deprecated_int8 as D
from ..utils.weight_formats import untile


def _quantized_product(X, Y, dim_X, dim_Y, dtype):
    """X @ Y with X quantized vector-wise along dim_X and Y along dim_Y (each scale over the
    reduced dimension), dequantized with both scales."""
    qX, sX = D.vectorwise_quant.__wrapped__(X, dim=dim_X)
    qY, sY = D.vectorwise_quant.__wrapped__(Y, dim=dim_Y)
    return D.vectorwise_mm_dequant.__wrapped__(D.igemm.__wrapped__(qX, qY), sX, sY, dtype)


class MatMul8bit(torch.autograd.Function):
    """A @ B with both operands quantized to int8 along the reduced dimension (absmax per row
    of A, per column of B) and an int32 product; the gradients are computed the same way.
    precision[i] != 8 computes the forward (i=0), grad_B (1) or grad_A (2) in 16-bit instead."""

    @staticmethod
    def forward(ctx, A, B, out=None, quant_type="vector", precision=None):
        precision = [8, 8, 8] if precision is None else precision
        if precision[0] != 8:
            with torch.no_grad():
                output = torch.matmul(A, B)
        else:
            qA, sA = D.vectorwise_quant.__wrapped__(A, dim=-1, quant_type=quant_type)
            qB, sB = D.vectorwise_quant.__wrapped__(B, dim=0 if B.dim() == 2 else 1, quant_type=quant_type)
            output = D.vectorwise_mm_dequant.__wrapped__(D.igemm.__wrapped__(qA, qB), sA, sB, A.dtype, quant_type)
        ctx.save_for_backward(A, B)
        ctx.precision = precision
        return output

    @staticmethod
    def backward(ctx, grad_output):
        A, B = ctx.saved_tensors
        precision = ctx.precision
        grad_A = grad_B = None
        if ctx.needs_input_grad[1]:
            # grad_B = A^T @ grad_output, reduced over every dimension but the last of A.
            if precision[1] != 8:
                At = A.transpose(-1, -2)
                grad_B = torch.matmul(At, grad_output)
            elif A.dim() == 3 and B.dim() == 2:
                g2 = grad_output.reshape(-1, grad_output.shape[-1])
                A2 = A.reshape(-1, A.shape[-1])
                qg, s1 = D.vectorwise_quant.__wrapped__(g2, dim=0)
                qA, s2 = D.vectorwise_quant.__wrapped__(A2, dim=0)
                grad_B = D.vectorwise_mm_dequant.__wrapped__(D.igemm.__wrapped__(qA.t(), qg), s2.t(), s1,
                                                             grad_output.dtype)
            else:
                dims = [0, 1] if A.dim() == 3 else [0]
                qg, s1 = D.vectorwise_quant.__wrapped__(grad_output, dim=dims)
                qA, s2 = D.vectorwise_quant.__wrapped__(A, dim=dims)
                grad_B = D.vectorwise_mm_dequant.__wrapped__(D.igemm.__wrapped__(qA.transpose(-1, -2), qg),
                                                             s2.transpose(-1, -2), s1, grad_output.dtype)
        if ctx.needs_input_grad[0]:
            # grad_A = grad_output @ B^T, both quantized along B's output dimension.
            if precision[2] != 8:
                grad_A = torch.matmul(grad_output, B.transpose(-1, -2))
            else:
                qg, s1 = D.vectorwise_quant.__wrapped__(grad_output, dim=[grad_output.dim() - 1])
                qB, s3 = D.vectorwise_quant.__wrapped__(B, dim=[B.dim() - 1])
                grad_A = D.vectorwise_mm_dequant.__wrapped__(D.igemm.__wrapped__(qg, qB.transpose(-1, -2)), s1,
                                                             s3.transpose(-1, -2), grad_output.dtype)
        return grad_A, grad_B, None, None, None


def _matmul_cublas(A, B, out=None, quant_type="vector", precision=None):
    D.warnings.warn("bnb.mm_cublas / bmm_cublas / matmul_cublas are deprecated and will be removed in a future "
                    "release; use bnb.matmul instead.", D.Int8DeprecationWarning, stacklevel=2)
    return MatMul8bit.apply(A, B, out, quant_type, precision)


mm_cublas = bmm_cublas = matmul_cublas = _matmul_cublas


@D.deprecated()
def get_inverse_transform_indices(transform_tile, tile_size):
    """The int64 tile of shape tile_size whose element j is the row-major index, in the original
    tile, of the value that transform_tile (a permutation of an int8 [d1, d2] tile) moves to
    position j. The transform only sees int8 tiles, so the indices go through it a byte at a time."""
    d1, d2 = tile_size
    if not 0 < d1 * d2 < 2 ** 63:
        raise ValueError(f"get_inverse_transform_indices: tile_size must be positive, got {tile_size}")
    index = torch.arange(d1 * d2, dtype=torch.int64).view(d1, d2)
    result = torch.zeros_like(index)
    byte = 0
    while byte == 0 or 256 ** byte < d1 * d2:
        digit = (index >> (8 * byte)) & 255
        moved = transform_tile((digit - 128).to(torch.int8).contiguous())
        result += (moved.to(torch.int64) + 128) << (8 * byte)
        byte += 1
    return result


@D.deprecated()
def undo_layout(permuted_tensor, tile_indices):
    """The row-major [rows, cols] matrix whose tiled layout is permuted_tensor: tiles of
    tile_indices' shape, ordered column of tiles by column of tiles, each tile's values permuted
    as tile_indices (from get_inverse_transform_indices) records."""
    return untile(permuted_tensor, tile_indices)
