"""bitsandbytes.nn: drop-in layers."""
from .embedding import Embedding, StableEmbedding
from .linear4bit import Linear4bit, Params4bit
from .linear8bitlt import Int8Params, Linear8bitLt

__all__ = ["Embedding", "Int8Params", "Linear4bit", "Linear8bitLt", "Params4bit", "StableEmbedding"]
