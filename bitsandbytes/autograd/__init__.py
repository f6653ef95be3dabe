"""Autograd functions for the LLM.int8() matmul."""
from ._functions import MatMul8bitLt, MatmulLtState, matmul

__all__ = ["MatMul8bitLt", "MatmulLtState", "matmul"]
