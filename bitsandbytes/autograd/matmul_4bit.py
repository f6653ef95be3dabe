"""bnb.matmul_4bit: A @ dequant(B) with a frozen packed 4-bit weight, differentiable in A (and
in the bias), which lets LoRA adapters train on a 4-bit base model.

B is the packed weight transposed, as Linear4bit and PEFT pass it (`weight.t()`); quant_state
describes the weight [N, K]. The forward is the linear_4bit op, which takes the fused kernel for
a few rows of A (the weight is never dequantized to memory) and dequantize + torch's linear
otherwise; the backward dequantizes the weight to the gradient's dtype.
"""
import torch

from ..functional import fourbit as F4
from ..functional._args import into


class MatMul4Bit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, B, out=None, bias=None, quant_state=None):
        result = F4.linear_4bit(A, B.t(), quant_state, bias)  # B is the weight transposed
        ctx.state = quant_state
        ctx.dtype_bias = None if bias is None else bias.dtype
        ctx.save_for_backward(B)
        return into(out, result, "out", "MatMul4Bit")

    @staticmethod
    def backward(ctx, grad_output):
        (B,) = ctx.saved_tensors
        grad_A = grad_bias = None
        if ctx.needs_input_grad[3]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0).to(ctx.dtype_bias)
        if ctx.needs_input_grad[0]:
            W = F4.dequantize_4bit(B, ctx.state).to(grad_output.dtype)
            grad_A = torch.matmul(grad_output, W.t())
        return grad_A, None, None, grad_bias, None


def linear_4bit(A, W, quant_state, bias=None):
    """A[..., K] @ dequant(W)^T (+ bias) for the packed weight W itself (Linear4bit's path: no
    transposed view to make and undo). Differentiable in A and bias."""
    if torch.is_grad_enabled() and (A.requires_grad or (bias is not None and bias.requires_grad)):
        return MatMul4Bit.apply(A, W.t(), None, bias, quant_state)
    return F4.linear_4bit(A, W, quant_state, bias)


def matmul_4bit(A, B, quant_state, out=None, bias=None):
    """A[..., K] @ dequant(B) (+ bias) for B = weight.t() of a 4-bit weight [N, K]."""
    if quant_state is None:
        raise ValueError("matmul_4bit: quant_state (the QuantState of B from quantize_4bit) is required")
    result = linear_4bit(A, B.t(), quant_state, bias)
    return result if out is None else into(out, result, "out", "matmul_4bit")
