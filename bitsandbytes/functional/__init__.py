"""bitsandbytes.functional: quantization maps, quantization and the low-level calls under
the optimizers and int8 layers."""
from .blockwise import (dequantize, dequantize_blockwise, dequantize_no_absmax, quantize, quantize_blockwise,
                        quantize_no_absmax)
from .int8 import (int8_double_quant, int8_linear_matmul, int8_mm_dequant, int8_vectorwise_dequant,
                   int8_vectorwise_quant, int8_weight_linear)
from .maps import create_dynamic_map, create_fp8_map, create_linear_map
from .quant_state import QuantState

__all__ = [
    "QuantState", "create_dynamic_map", "create_fp8_map", "create_linear_map", "dequantize", "dequantize_blockwise",
    "dequantize_no_absmax", "int8_double_quant", "int8_linear_matmul", "int8_mm_dequant",
    "int8_vectorwise_dequant", "int8_vectorwise_quant", "int8_weight_linear", "quantize", "quantize_blockwise",
    "quantize_no_absmax",
]
