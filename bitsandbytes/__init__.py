"""bitsandbytes: 8-bit optimizers, LLM.int8() matmul, 8-bit and 4-bit (NF4/FP4) quantization for PyTorch."""
from . import _ops  # noqa: F401  (registers the custom ops and their fake kernels)
from . import autograd, functional, nn, optim, utils
from .autograd import MatmulLtState, bmm_cublas, matmul, matmul_4bit, matmul_cublas, mm_cublas
from ._version import __version__

# Read by libraries that decide whether a model can be loaded on a device.
supported_torch_devices = {"cpu", "cuda"}
features = {"multi_backend"}

__all__ = ["__version__", "MatmulLtState", "autograd", "features", "functional", "bmm_cublas", "matmul", "matmul_4bit", "matmul_cublas", "mm_cublas", "nn", "optim",
           "supported_torch_devices", "utils"]
