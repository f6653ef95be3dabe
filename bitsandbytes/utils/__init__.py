"""bitsandbytes.utils: the helpers the reference library exposes here (outlier tracing,
replace_linear, dict packing, the 8-bit weight-format mappings) and our build information."""
from .build import build_info, has_kernel, optimizer_state_bytes
from .outliers import OutlierTracer, find_outlier_dims, outlier_hook
from .packing import pack_dict_to_tensor, unpack_tensor_to_dict
from .replace_linear import replace_linear
from .weight_formats import INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING, LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING

__all__ = ["INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING", "LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING", "OutlierTracer",
           "build_info", "find_outlier_dims", "has_kernel", "optimizer_state_bytes", "outlier_hook",
           "pack_dict_to_tensor", "replace_linear", "unpack_tensor_to_dict"]
