"""The module path `bitsandbytes.nn.modules`, where code written for the reference library
imports the layer classes from; they are defined beside this file."""
from .embedding import Embedding, StableEmbedding
from .embedding8bit import Embedding8bit
from .linear4bit import Embedding4bit, EmbeddingFP4, EmbeddingNF4, Linear4bit, LinearFP4, LinearNF4, Params4bit
from .linear8bitlt import Int8Params, Linear8bitLt

__all__ = ["Embedding", "Embedding4bit", "Embedding8bit", "EmbeddingFP4", "EmbeddingNF4", "Int8Params", "Linear4bit", "Linear8bitLt",
           "LinearFP4", "LinearNF4", "Params4bit", "StableEmbedding"]
