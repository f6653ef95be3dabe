"""bitsandbytes.nn: drop-in layers."""
from .embedding import Embedding, StableEmbedding

__all__ = ["Embedding", "StableEmbedding"]
