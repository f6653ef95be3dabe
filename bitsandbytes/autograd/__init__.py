"""Autograd functions for the LLM.int8() and 4-bit matmuls."""
from ._functions import MatMul8bitLt, MatmulLtState, matmul
from .deprecated_int8 import MatMul8bit, bmm_cublas, get_inverse_transform_indices, matmul_cublas, mm_cublas, undo_layout
from .matmul_4bit import MatMul4Bit, matmul_4bit

__all__ = ["MatMul4Bit", "MatMul8bit", "MatMul8bitLt", "MatmulLtState", "bmm_cublas", "get_inverse_transform_indices",
           "matmul", "matmul_4bit", "matmul_cublas", "mm_cublas", "undo_layout"]
