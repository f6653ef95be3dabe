"""Tensors over 2^31 elements: the kernels index with 64 bits."""
import os

import pytest
import torch

import bitsandbytes.functional as F

N = 2**31 + 4099  # over the int32 range, not a multiple of any block size


def enough_memory(device, needed_bytes):
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free > needed_bytes * 1.2
    # Several GB on the host: opt in where the machine has room (the GPU run always checks).
    return os.environ.get("BNB_TEST_HUGE_CPU") == "1"


@pytest.mark.slow
def test_huge_tensor_round_trip(device):
    if not enough_memory(device, N * (2 + 1 + 2)):
        pytest.skip("not enough memory for a 2^31-element tensor (set BNB_TEST_HUGE_CPU=1 on the CPU)")
    A = torch.empty(N, dtype=torch.bfloat16, device=device)
    # Distinct, known values at the far end, where a 32-bit index would have wrapped.
    A.fill_(0.5)
    tail = torch.linspace(-3, 3, 8192, device=device).to(torch.bfloat16)
    A[-8192:] = tail
    q, state = F.quantize_blockwise(A, blocksize=4096)
    assert state.absmax.numel() == -(N // -4096)
    # Block-level checks at the end of the tensor.
    assert state.absmax[-1].item() == pytest.approx(tail[-(N % 4096):].float().abs().max().item())
    assert state.absmax[0].item() == 0.5
    back = F.dequantize_blockwise(q, state)
    del q
    torch.testing.assert_close(back[-8192:].float(), tail.float(), atol=3 * 0.02, rtol=0.02)
    assert torch.all(back[:4096] == 0.5)
