"""Embedding8bit: an embedding table stored as int8 rows with their absmax, for inference."""
import torch

from .linear8bitlt import Int8Params
from .parameters import QuantizedParameterModule


class Embedding8bit(QuantizedParameterModule, torch.nn.Embedding):
    """torch.nn.Embedding whose table is quantized row by row (int8 codes CB and the float32
    absmax SCB of each row) when the module is moved to a device, or at its first lookup. A
    lookup reads only the int8 rows it needs and dequantizes them (code * absmax / 127) to the
    dtype the table had. The state dict holds `weight` (int8), `SCB` and `weight_format`, as
    Linear8bitLt's does."""

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.dtype = self.weight.data.dtype
        self.weight = Int8Params(self.weight.data, has_fp16_weights=False, requires_grad=False)

    def forward(self, input):
        w = self.weight
        if not w._is_quantized():
            w.quantize_()
        rows = torch.nn.functional.embedding(input, w.data)
        scales = torch.nn.functional.embedding(input, w.SCB.view(-1, 1).float())
        return (rows * (scales / 127.0)).to(self.dtype)
