"""Embeddings whose weight always gets 32-bit optimizer state.

Embedding rows of rare tokens see few, large updates; quantizing their optimizer state to
8 bits makes training unstable, so these layers ask every bitsandbytes optimizer (through
the GlobalOptimManager) for 32-bit state for their weight, whatever its optim_bits.
"""
import torch
import torch.nn.functional as TF

from ..optim.manager import GlobalOptimManager


def _register_32bit_state(module):
    GlobalOptimManager.get_instance().register_module_override(module, "weight", {"optim_bits": 32})


class Embedding(torch.nn.Embedding):
    """torch.nn.Embedding (Xavier-uniform initialisation) whose weight always gets 32-bit
    optimizer state."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                         _weight, device=device, dtype=dtype)
        _register_32bit_state(self)

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self):
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].fill_(0)


class StableEmbedding(Embedding):
    """Embedding (Xavier-uniform initialisation, 32-bit optimizer state for its weight) with a
    LayerNorm after the lookup, computed in float32."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, device=None, dtype=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                         _weight, device=device, dtype=dtype)
        self.norm = torch.nn.LayerNorm(embedding_dim, device=device)

    def forward(self, input):
        emb = TF.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)
        # The norm runs in float32 so that half-precision weights stay stable (its own parameters
        # too, which a module cast such as .half() made 16-bit).
        emb = emb.to(torch.get_default_dtype())
        norm = self.norm
        weight = norm.weight.to(emb.dtype) if norm.weight is not None else None
        bias = norm.bias.to(emb.dtype) if norm.bias is not None else None
        return TF.layer_norm(emb, norm.normalized_shape, weight, bias, norm.eps).to(self.weight.dtype)
