"""Fast approximate quantiles of a tensor, and the quantization map built from them.

`estimate_quantiles` counts the values in a two-level histogram over order-preserving
float keys (two reads of the input, the counting in on-chip memory; docs/quantiles.md has
the method and its error bound) instead of sorting the whole tensor.
"""
import torch

from .._formats import FORMAT_8BIT, QUANTILES_MAX, QUANTILES_MIN_VALUES
from .._ops import check_float
from ._args import check_tensor

_DEFAULT_OFFSET = 1 / 512


class QuantileArgumentError(ValueError, NotImplementedError):
    """Bad arguments to estimate_quantiles. A ValueError, and a NotImplementedError for code
    written against earlier releases, which raised that."""


def estimate_quantiles(A, out=None, offset=_DEFAULT_OFFSET, num_quantiles=256):
    """Estimates `num_quantiles` equidistant quantiles of A (any shape; float32, float16 or
    bfloat16; at least 256 values) at the probabilities offset + j * (1 - 2 offset) /
    (num_quantiles - 1), j = 0 .. num_quantiles - 1, as float32 on A's device.

    `offset` trims that fraction from both tails (default 1/512). With fewer than 256
    quantiles and the default offset, the offset becomes 1 / (2 num_quantiles), so that the
    quantiles sit at the centres of num_quantiles equal-mass bins. `out`, when given, is a
    float32 tensor of num_quantiles values on A's device that receives the result.

    float16 / bfloat16 inputs give exact order statistics; float32 ones are within one final
    histogram bin (2048 neighbouring floats, relative width 2^-12) of the exact one. A NaN in A
    makes every quantile NaN (as torch.quantile); +-Inf are the largest and smallest values.
    """
    fn = "estimate_quantiles"
    check_tensor(A, "A", fn)
    if not isinstance(num_quantiles, int):
        raise QuantileArgumentError(
            f"{fn}: num_quantiles must be an int from 1 to {QUANTILES_MAX}, got {num_quantiles!r}")
    if 1 <= num_quantiles < QUANTILES_MAX and offset == _DEFAULT_OFFSET:
        offset = 1 / (2 * num_quantiles)
    try:
        # The op checks A's dtype (TypeError) and the values (ValueError, naming the argument).
        result = torch.ops.bitsandbytes.estimate_quantiles(A, float(offset), num_quantiles)
    except ValueError as e:
        raise QuantileArgumentError(str(e)) from None
    # As torch.quantile: a NaN anywhere in A makes every quantile NaN (decided on the device).
    result = result.masked_fill(A.isnan().any(), float("nan"))
    if out is None:
        return result
    if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.numel() != num_quantiles \
            or out.device != A.device:
        raise ValueError(f"{fn}: out must be a float32 tensor of {num_quantiles} values on {A.device}")
    return out.copy_(result.view(out.shape))


def create_quantile_map(A, total_bits=8):
    """An 8-bit quantization map (256 float32 values, sorted, on A's device) from the data's
    own quantiles: the 2^total_bits - 1 quantiles at the centres of equal-mass bins, plus
    zero, divided by their largest magnitude (so the map spans [-1, 1] or [0, 1]), padded
    with zeros to 256 values. Each code then stands for about the same number of values
    of A, the map that spends the 256 codes most evenly on this data."""
    fn = "create_quantile_map"
    if not isinstance(total_bits, int) or not 1 <= total_bits <= FORMAT_8BIT.bits:
        raise ValueError(f"{fn}: total_bits must be an int from 1 to {FORMAT_8BIT.bits}, got {total_bits!r}")
    q = estimate_quantiles(A, num_quantiles=2 ** total_bits - 1)
    if not bool(torch.isfinite(q).all()):
        raise ValueError(f"{fn}: A must hold finite values to build a map from (its quantiles are NaN or Inf)")
    code = torch.cat([q, q.new_zeros(FORMAT_8BIT.map_size - q.numel())]).sort().values
    scale = code.abs().max()
    # An all-zero input leaves the map at zero instead of dividing by zero.
    return code / torch.where(scale > 0, scale, torch.ones_like(scale))


# Fake kernel of the op (torch.compile, opcheck).


@torch.library.register_fake("bitsandbytes::estimate_quantiles")
def _estimate_quantiles_fake(A, offset, num_quantiles):
    op = "estimate_quantiles"
    check_float(A.dtype, op, "A")
    torch._check_value(A.numel() >= QUANTILES_MIN_VALUES,
                       lambda: f"{op}: A must hold at least {QUANTILES_MIN_VALUES} values to estimate quantiles "
                               f"from, got {A.numel()}")
    torch._check_value(1 <= num_quantiles <= QUANTILES_MAX,
                       lambda: f"{op}: num_quantiles must be between 1 and {QUANTILES_MAX}, got {num_quantiles}")
    torch._check_value(0.0 <= offset <= 0.5, lambda: f"{op}: offset must be in [0, 0.5], got {offset}")
    return torch.empty(num_quantiles, dtype=torch.float32, device=A.device)
