"""bnb.matmul: the LLM.int8() product with mixed-precision decomposition, and its gradient.

Forward, for A[..., K] and a weight B[N, K] (16-bit, or int8 CB with its row statistics SCB):
  - A is quantized row-wise to int8; the columns holding any |value| >= threshold (outliers)
    are zeroed there and multiplied in 16-bit instead, with the matching weight columns;
  - the int8 product (int32) is dequantized with the bias and the outlier product fused;
  - with an int8 weight and only a few rows of A (decoding), A is not quantized at all: the
    16-bit rows meet the int8 weight in one kernel that reads the weight once.
The result has A's dtype (bf16 stays bf16). Backward gives the gradient of A always (through
the dequantized weight when it is int8), and of B when B is a 16-bit weight.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..functional import int8 as F8
from ..functional._args import into

# Rows of A up to which an int8 weight is applied directly to the 16-bit activations.
WEIGHT_STREAM_MAX_ROWS = 32


@dataclass
class MatmulLtState:
    """Per-layer state of bnb.matmul: the quantized weight and how it is used.

    CB: the int8 weight [N, K]; SCB: its float32 row absmax [N]; threshold: outlier cut-off
    (0 disables the decomposition); has_fp16_weights: B is a trainable 16-bit weight that is
    quantized again at each forward; is_training: module mode. The remaining fields keep
    the names that code written for the reference library reads or resets."""
    _tile_indices: Optional[torch.Tensor] = None
    force_no_igemmlt: bool = False
    CB: Optional[torch.Tensor] = None
    CxB: Optional[torch.Tensor] = None
    SB: Optional[torch.Tensor] = None
    SCB: Optional[torch.Tensor] = None
    CxBt: Optional[torch.Tensor] = None
    SBt: Optional[torch.Tensor] = None
    CBt: Optional[torch.Tensor] = None
    subB: Optional[torch.Tensor] = None
    outlier_pool: Optional[object] = None
    has_accumulated_gradients: bool = False
    threshold: float = 0.0
    _idx: Optional[torch.Tensor] = None  # `idx` (a property), at the reference's position
    is_training: bool = True
    has_fp16_weights: bool = True
    use_pool: bool = False
    formatB: str = "row"
    outlier_list: Optional[torch.Tensor] = field(default=None, init=False)

    @property
    def idx(self):
        """The outlier columns of the last forward (int64 indices, ascending). The forward keeps
        them on the device as `outlier_list` ([count, indices...]); reading them here waits for it."""
        if self._idx is None and self.outlier_list is not None:
            lst = self.outlier_list
            self._idx = lst[1:1 + int(lst[0])].long()
        return self._idx

    @idx.setter
    def idx(self, value):
        self._idx = value
        self.outlier_list = None

    def set_outlier_list(self, outlier_list):
        self.outlier_list = outlier_list
        self._idx = None

    def reset_grads(self):
        """Drops every cached form of the weight (it is rebuilt at the next forward)."""
        self.CB = None
        self.CxB = None
        self.SB = None
        self.SCB = None
        self.CxBt = None
        self.SBt = None
        self.CBt = None


_dataclass_init = MatmulLtState.__init__


def _init_with_idx(self, *args, idx=None, **kwargs):
    # The reference's field is named `idx`; ours is a property over the cached `_idx`.
    _dataclass_init(self, *args, **kwargs)
    if idx is not None:
        self.idx = idx


MatmulLtState.__init__ = _init_with_idx


def _weight_int8(B, state):
    """(CB, SCB) for this forward: the cached int8 weight, or B quantized now."""
    if B.dtype == torch.int8:
        if state.SCB is None:
            raise ValueError("bnb.matmul: B is an int8 weight but state.SCB (its row statistics) is missing; "
                             "pass a MatmulLtState with SCB set, or a 16-bit B")
        if state.SCB.numel() != B.shape[0]:
            raise ValueError(f"bnb.matmul: state.SCB must hold one value per row of B ({B.shape[0]}), "
                             f"got {state.SCB.numel()}")
        return B, state.SCB
    if not state.has_fp16_weights and state.CB is not None and state.CB.shape == B.shape:
        return state.CB, state.SCB
    CB, SCB = F8.int8_weight_quant(B.detach())
    if not state.has_fp16_weights:
        state.CB, state.SCB = CB, SCB  # a frozen weight is quantized once
    return CB, SCB


def _dequantized(CB, SCB, dtype):
    return (CB.to(dtype) * (SCB.to(dtype).unsqueeze(1) / 127)).to(dtype)


def _check(A, B, bias):
    if not isinstance(A, torch.Tensor) or not isinstance(B, torch.Tensor):
        raise TypeError("bnb.matmul: A and B must be tensors")
    if not A.is_floating_point():
        raise TypeError(f"bnb.matmul: A must be float16, bfloat16 or float32, got {A.dtype}")
    if B.dim() != 2:
        raise ValueError(f"bnb.matmul: B must be a 2-D [N, K] weight, got shape {tuple(B.shape)}")
    if A.shape[-1] != B.shape[1]:
        raise ValueError(f"bnb.matmul: A's last dimension (K = {A.shape[-1]}) must equal B's second dimension "
                         f"({B.shape[1]}); B is [N, K] as in torch.nn.functional.linear")
    if A.device != B.device:
        raise ValueError(f"bnb.matmul: A is on {A.device} but B is on {B.device}; both must be on one device")
    if bias is not None and bias.shape[-1] != B.shape[0]:
        raise ValueError(f"bnb.matmul: bias must hold {B.shape[0]} values, got shape {tuple(bias.shape)}")


_ops = torch.ops.bitsandbytes


def _forward(A, B, bias, state):
    """(result, CB, SCB). Written for low host overhead: at decode sizes the kernel takes
    microseconds, so every Python step here shows in the layer's latency."""
    dtype = A.dtype
    if bias is not None and bias.dtype != dtype:
        bias = bias.to(dtype)
    CB, SCB = _weight_int8(B, state)
    if SCB.dtype != torch.float32:
        SCB = SCB.float()
    N, K = B.shape
    A2 = A if A.dim() == 2 else A.reshape(-1, K)
    M = A2.shape[0]
    if M == 0 or N == 0 or K == 0:  # nothing to multiply: the sum over an empty K is zero
        out = A.new_zeros((*A.shape[:-1], N))
        return (out + bias if bias is not None else out), CB, SCB
    if M <= WEIGHT_STREAM_MAX_ROWS and (B.dtype == torch.int8 or not state.has_fp16_weights):
        out = _ops.int8_weight_linear.default(A2, CB, SCB, bias)
        return (out if A.dim() == 2 else out.reshape(*A.shape[:-1], N)), CB, SCB

    if state.threshold > 0.0:
        # The outlier columns stay on the device: the quantization lists them (count + indices)
        # and the dequantization adds their 16-bit product, reading that list itself, so the
        # forward never waits for the device.
        A_int8, row_stats, outlier_list = _ops.int8_vectorwise_quant_outliers.default(A2, float(state.threshold))
        C = _ops.int8_linear_matmul.default(A_int8, CB)
        if B.dtype != torch.int8 and state.has_fp16_weights:
            W = B.detach()  # the exact 16-bit weight columns
            if W.dtype != dtype:
                W = W.to(dtype)
        else:
            W = CB  # dequantized column by column with SCB
        state.set_outlier_list(outlier_list)
        out = _ops.int8_mm_dequant_outliers.default(C, row_stats, SCB, bias, A2, W, outlier_list, dtype)
    else:
        A_int8, row_stats, _ = _ops.int8_vectorwise_quant.default(A2, 0.0)
        C = _ops.int8_linear_matmul.default(A_int8, CB)
        out = _ops.int8_mm_dequant.default(C, row_stats, SCB, dtype, bias)
    return (out if A.dim() == 2 else out.reshape(*A.shape[:-1], N)), CB, SCB


class MatMul8bitLt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, B, out=None, bias=None, state=None):
        state = state if state is not None else MatmulLtState()
        result, CB, SCB = _forward(A, B, bias, state)
        ctx.state = state
        ctx.dtype_A = A.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        # The int8 weight and its scales as used here, whatever happens to `state` before backward.
        ctx.CB, ctx.SCB = CB, SCB
        ctx.save_for_backward(A if ctx.needs_input_grad[1] else None, B)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        A, B = ctx.saved_tensors
        state = ctx.state
        grad_A = grad_B = grad_bias = None
        go = grad_output.to(ctx.dtype_A)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0).to(ctx.bias_dtype)
        if ctx.needs_input_grad[0]:
            if B.dtype != torch.int8 and state.has_fp16_weights:
                W = B.to(ctx.dtype_A)  # the exact 16-bit weight
            else:
                W = _dequantized(ctx.CB, ctx.SCB, ctx.dtype_A)
            grad_A = torch.matmul(go, W)
        if ctx.needs_input_grad[1]:
            g2 = go.reshape(-1, go.shape[-1])
            grad_B = torch.matmul(g2.t(), A.reshape(-1, A.shape[-1]).to(ctx.dtype_A)).to(B.dtype)
        return grad_A, grad_B, None, grad_bias, None


def _state_weight(B, state):
    """A frozen state's int8 weight CB [N, K] is the weight, as in the reference, whatever B's
    layout: callers pass the weight or its transpose B.t() ([K, N])."""
    CB = state.CB
    if isinstance(B, torch.Tensor) and B.dim() == 2 and tuple(B.shape) == tuple(CB.shape[::-1]):
        return CB
    return B


def matmul(A, B, out=None, state=None, threshold=0.0, bias=None):
    """LLM.int8() product A @ B^T (+ bias) with outlier columns of A (|value| >= threshold)
    multiplied in 16-bit. B is a [N, K] weight: 16-bit, or int8 with state.SCB set."""
    if state is not None and state.CB is not None and not state.has_fp16_weights and B is not state.CB:
        B = _state_weight(B, state)
    _check(A, B, bias)
    state = state if state is not None else MatmulLtState()
    if threshold > 0.0:
        state.threshold = threshold
    if torch.is_grad_enabled() and (A.requires_grad or B.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        result = MatMul8bitLt.apply(A, B, None, bias, state)
    else:  # inference: no graph to record
        result = _forward(A, B, bias, state)[0]
    # `out=` as torch's own ops take it: a copy_ would broadcast into a larger out or round
    # into an integer one without a word.
    return into(out, result, "out", "bnb.matmul")


