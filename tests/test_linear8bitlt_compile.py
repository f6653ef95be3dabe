"""torch.compile(Linear8bitLt, fullgraph=True) with its quantized int8 weight, at threshold 0 and
6 (outlier columns present), in the default and reduce-overhead modes: no graph break, and the
eager layer's output."""
import pytest
import torch

from bitsandbytes.nn import Linear8bitLt


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("rows", [3, 40])  # the weight-streaming path and the int8 GEMM
def test_compiled_linear8bitlt(threshold, mode, rows, device):
    torch._dynamo.reset()
    fp = torch.nn.Linear(64, 48).half()
    layer = Linear8bitLt(64, 48, has_fp16_weights=False, threshold=threshold)
    layer.load_state_dict(fp.state_dict())
    layer = layer.to(device).eval()
    assert layer.weight.dtype == torch.int8
    x = torch.randn(rows, 64, dtype=torch.float16, device=device)
    x[:, 5] = 9.0  # an outlier column at threshold 6
    with torch.no_grad():
        want = layer(x)
        compiled = torch.compile(layer, fullgraph=True, mode=mode)
        for _ in range(2):  # the second call replays what the first compiled
            got = compiled(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
