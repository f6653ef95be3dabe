"""bitsandbytes.functional: quantization maps, quantization and the low-level calls under
the optimizers and int8 layers."""
from .fourbit import (dequantize_4bit, dequantize_fp4, dequantize_nf4, gemv_4bit, get_4bit_type, linear_4bit,
                      quantize_4bit, quantize_fp4, quantize_nf4)
from .blockwise import (dequantize, dequantize_blockwise, dequantize_no_absmax, quantize, quantize_blockwise,
                        quantize_no_absmax)
from .int8 import (int8_double_quant, int8_linear_matmul, int8_mm_dequant, int8_vectorwise_dequant,
                   int8_vectorwise_quant, int8_weight_linear)
from .deprecated_int8 import (batched_igemm, double_quant, extract_outliers, get_colrow_absmax, get_row_absmax,
                             igemm, igemmlt, mm_dequant, transform, vectorwise_dequant, vectorwise_mm_dequant,
                             vectorwise_quant)
from .maps import create_dynamic_map, create_fp8_map, create_linear_map, create_optimizer_4bit_map
from .optimizer import (optimizer_update_8bit, optimizer_update_8bit_blockwise, optimizer_update_32bit,
                        optimizer_update_multi, paged_zeros, percentile_clipping, prefetch_to_device,
                        prefetch_to_host)
from .paged import GlobalPageManager, get_paged, prefetch_tensor
from .quant_state import QuantState
from .quantiles import create_quantile_map, estimate_quantiles

__all__ = [
    "GlobalPageManager", "QuantState", "get_paged", "prefetch_tensor", "create_dynamic_map", "dequantize_4bit", "dequantize_fp4", "dequantize_nf4", "gemv_4bit", "linear_4bit",
    "get_4bit_type", "quantize_4bit", "quantize_fp4", "quantize_nf4", "create_fp8_map", "create_linear_map", "create_optimizer_4bit_map", "create_quantile_map", "dequantize",
    "dequantize_blockwise", "dequantize_no_absmax", "estimate_quantiles", "int8_double_quant", "int8_linear_matmul",
    "int8_mm_dequant", "int8_vectorwise_dequant", "int8_vectorwise_quant", "int8_weight_linear",
    "optimizer_update_32bit", "optimizer_update_8bit", "optimizer_update_8bit_blockwise", "optimizer_update_multi", "paged_zeros",
    "percentile_clipping", "prefetch_to_device", "prefetch_to_host", "quantize", "quantize_blockwise", "quantize_no_absmax",
    # deprecated int8 API of the reference's 0.45 release
    "batched_igemm", "double_quant", "extract_outliers", "get_colrow_absmax", "get_row_absmax", "igemm", "igemmlt",
    "mm_dequant", "transform", "vectorwise_dequant", "vectorwise_mm_dequant", "vectorwise_quant",
]
