"""Linear8bitLt.forward leaves its parameters as they are: a bias of another dtype than the
input is cast for the call only, and its gradient still reaches the parameter."""
import pytest
import torch

import bitsandbytes as bnb


def _layer(device, has_fp16_weights, rows_dtype=torch.float16):
    torch.manual_seed(0)
    layer = bnb.nn.Linear8bitLt(32, 24, bias=True, has_fp16_weights=has_fp16_weights, threshold=0.0)
    layer.weight.data = layer.weight.data.to(rows_dtype)
    layer.bias.data = (torch.randn(24) * 0.3).float()  # fp32 bias, values a 16-bit cast would round
    return layer.to(device)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("has_fp16_weights", [True, False])
@pytest.mark.parametrize("rows", [1, 40])  # the decode (weight-streaming) path and the general one
def test_forward_keeps_the_bias(dtype, has_fp16_weights, rows, device):
    layer = _layer(device, has_fp16_weights)
    bias = layer.bias
    before = bias.detach().clone()
    out = layer(torch.randn(rows, 32, device=device).to(dtype))
    assert out.dtype == dtype
    assert layer.bias is bias and bias.dtype == torch.float32
    assert torch.equal(bias.detach(), before)


@pytest.mark.parametrize("has_fp16_weights", [True, False])
@pytest.mark.parametrize("rows", [1, 40])
def test_bias_gradient_reaches_the_parameter(has_fp16_weights, rows, device):
    layer = _layer(device, has_fp16_weights)
    layer.train()
    x = torch.randn(rows, 32, device=device).to(torch.bfloat16).requires_grad_(True)
    grad_out = torch.randn(rows, 24, device=device).to(torch.bfloat16)
    layer(x).backward(grad_out)
    assert layer.bias.grad is not None and layer.bias.grad.dtype == torch.float32
    torch.testing.assert_close(layer.bias.grad, grad_out.float().sum(0), rtol=2e-2, atol=2e-2)
    assert x.grad is not None
