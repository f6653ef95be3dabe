"""bitsandbytes.functional: quantization maps, quantization and the low-level calls under
the optimizers and int8 layers."""
from .blockwise import (dequantize, dequantize_blockwise, dequantize_no_absmax, quantize, quantize_blockwise,
                        quantize_no_absmax)
from .int8 import (int8_double_quant, int8_linear_matmul, int8_mm_dequant, int8_vectorwise_dequant,
                   int8_vectorwise_quant, int8_weight_linear)
from .maps import create_dynamic_map, create_fp8_map, create_linear_map
from .quant_state import QuantState
from .quantiles import create_quantile_map, estimate_quantiles

__all__ = [
    "QuantState", "create_dynamic_map", "create_fp8_map", "create_linear_map", "create_quantile_map", "dequantize",
    "dequantize_blockwise", "dequantize_no_absmax", "estimate_quantiles", "int8_double_quant", "int8_linear_matmul",
    "int8_mm_dequant", "int8_vectorwise_dequant", "int8_vectorwise_quant", "int8_weight_linear", "quantize",
    "quantize_blockwise", "quantize_no_absmax",
]
