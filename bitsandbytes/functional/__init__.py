"""bitsandbytes.functional: quantization maps, quantization and the low-level calls under
the optimizers and int8 layers."""
from .blockwise import (dequantize, dequantize_blockwise, dequantize_no_absmax, quantize, quantize_blockwise,
                        quantize_no_absmax)
from .maps import create_dynamic_map, create_fp8_map, create_linear_map
from .quant_state import QuantState
from .quantiles import create_quantile_map, estimate_quantiles

__all__ = [
    "QuantState", "create_dynamic_map", "create_fp8_map", "create_linear_map", "create_quantile_map", "dequantize",
    "dequantize_blockwise", "dequantize_no_absmax", "estimate_quantiles", "quantize", "quantize_blockwise",
    "quantize_no_absmax",
]
