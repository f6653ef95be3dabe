"""bitsandbytes.functional: quantization maps, quantization and the low-level calls under
the optimizers and int8 layers."""
from .blockwise import (dequantize, dequantize_blockwise, dequantize_no_absmax, quantize, quantize_blockwise,
                        quantize_no_absmax)
from .maps import create_dynamic_map, create_fp8_map, create_linear_map
from .optimizer import (optimizer_update_8bit_blockwise, optimizer_update_32bit, optimizer_update_multi,
                        paged_zeros, percentile_clipping, prefetch_to_device)
from .quant_state import QuantState

__all__ = [
    "QuantState", "create_dynamic_map", "create_fp8_map", "create_linear_map", "dequantize", "dequantize_blockwise",
    "dequantize_no_absmax", "optimizer_update_32bit", "optimizer_update_8bit_blockwise",
    "optimizer_update_multi", "paged_zeros", "percentile_clipping", "prefetch_to_device", "quantize", "quantize_blockwise", "quantize_no_absmax",
]
