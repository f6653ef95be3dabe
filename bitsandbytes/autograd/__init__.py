"""Autograd functions for the LLM.int8() and 4-bit matmuls."""
from ._functions import MatMul8bitLt, MatmulLtState, matmul
from .matmul_4bit import MatMul4Bit, matmul_4bit

__all__ = ["MatMul4Bit", "MatMul8bitLt", "MatmulLtState", "matmul", "matmul_4bit"]
