"""Names of the 4-bit (QLoRA) layers, so that code which checks isinstance(x, Linear4bit)
or Params4bit keeps working. 4-bit quantization itself is not available yet."""
import torch

from .parameters import QuantizedParameter

_MESSAGE = "4-bit quantization (Linear4bit / Params4bit) is not available in this version of bitsandbytes yet"


class Params4bit(QuantizedParameter):
    def __new__(cls, *args, **kwargs):
        raise NotImplementedError(_MESSAGE)


class Linear4bit(torch.nn.Linear):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(_MESSAGE)
