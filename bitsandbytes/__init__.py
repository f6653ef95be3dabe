"""bitsandbytes: 8-bit optimizers, LLM.int8() matmul and 8-bit quantization for PyTorch."""
import torch

from . import _ops  # noqa: F401  (registers the custom ops and their fake kernels)
from . import functional, nn, optim, utils
from ._version import __version__

# Read by libraries that decide whether a model can be loaded on a device.
supported_torch_devices = {"cpu", "cuda"}
features = {"multi_backend"}

__all__ = ["__version__", "functional", "nn", "optim", "utils", "supported_torch_devices", "features"]
