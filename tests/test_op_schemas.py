"""The ops the reference library registers as torch.ops.bitsandbytes.* and we have too keep its
current schemas (names, argument names and order, defaults, overloads), so that code and other
backends written against them find ours; each passes opcheck with sample inputs of the shapes
the reference's own op tests use."""
import pytest
import torch

import bitsandbytes.functional as F

ops = torch.ops.bitsandbytes

# The reference's current schemas, as it declares them.
REFERENCE_SCHEMAS = [
    "int8_linear_matmul(Tensor A, Tensor B) -> Tensor",
    "int8_linear_matmul.out(Tensor A, Tensor B, Tensor! out) -> ()",
    "int8_vectorwise_quant(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor?)",
    "int8_vectorwise_dequant(Tensor A, Tensor stats) -> Tensor",
    "int8_mm_dequant(Tensor A, Tensor row_stats, Tensor col_stats, ScalarType? dtype=None, Tensor? bias=None) "
    "-> Tensor",
    "int8_scaled_mm(Tensor A, Tensor B, Tensor row_stats, Tensor col_stats, Tensor? bias=None, "
    "ScalarType? dtype=None) -> Tensor",
    "int8_double_quant(Tensor A, float threshold=0.0) -> (Tensor, Tensor, Tensor, Tensor, Tensor?)",
    "dequantize_4bit(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype) "
    "-> Tensor",
    "dequantize_4bit.out(Tensor A, Tensor absmax, int blocksize, str quant_type, int[] shape, ScalarType dtype, "
    "Tensor! out) -> ()",
    "quantize_4bit(Tensor A, int blocksize, str quant_type, ScalarType quant_storage) -> (Tensor, Tensor)",
    "dequantize_blockwise(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype) -> Tensor",
    "dequantize_blockwise.out(Tensor A, Tensor absmax, Tensor code, int blocksize, ScalarType dtype, "
    "Tensor! out) -> ()",
    "quantize_blockwise(Tensor A, Tensor code, int blocksize) -> (Tensor, Tensor)",
    "gemv_4bit(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize) -> Tensor",
    "gemv_4bit.out(Tensor A, Tensor B, int[] shapeB, Tensor absmax, Tensor code, int blocksize, Tensor! out) "
    "-> ()",
]


@pytest.mark.parametrize("schema", REFERENCE_SCHEMAS, ids=lambda s: s.split("(")[0])
def test_schema_is_the_references(schema):
    want = torch._C.parse_schema("bitsandbytes::" + schema)
    name, _, overload = schema.split("(")[0].partition(".")
    got = getattr(getattr(ops, name), overload or "default")._schema
    assert got == want, f"ours: {got}"


def _samples(device):
    i8 = dict(dtype=torch.int8, device=device)
    A8, B8 = torch.randint(-128, 127, (10, 20), **i8), torch.randint(-128, 127, (30, 20), **i8)
    yield ops.int8_linear_matmul.default, (A8, B8)
    yield ops.int8_linear_matmul.out, (A8, B8, torch.empty(10, 30, dtype=torch.int32, device=device))
    A = torch.randn(10, 20, dtype=torch.float16, device=device)
    A[:, 3] = 8.0
    yield ops.int8_vectorwise_quant.default, (A, 0.0)
    yield ops.int8_vectorwise_quant.default, (A, 3.0)
    yield ops.int8_vectorwise_dequant.default, (A8, torch.rand(10, device=device))
    yield ops.int8_double_quant.default, (A, 3.0)
    C = torch.randint(-128, 127, (256, 256), dtype=torch.int32, device=device)
    rs, cs = torch.randn(256, device=device), torch.randn(256, device=device)
    yield ops.int8_mm_dequant.default, (C, rs, cs)
    yield ops.int8_mm_dequant.default, (C, rs, cs, torch.bfloat16, torch.randn(256, device=device))
    for bias in (None, torch.randn(30, dtype=torch.float16, device=device)):
        yield ops.int8_scaled_mm.default, (A8, B8, torch.randn(10, device=device), torch.randn(30, device=device),
                                           bias, torch.float16)
    code = F.create_dynamic_map().to(device)
    X = torch.randn(1024, 1024, device=device)
    q, absmax = ops.quantize_blockwise(X, code, 256)
    yield ops.quantize_blockwise.default, (X, code, 256)
    yield ops.dequantize_blockwise.default, (q, absmax, code, 256, torch.float32)
    yield ops.dequantize_blockwise.out, (q, absmax, code, 256, torch.float16,
                                         torch.empty(1024, 1024, dtype=torch.float16, device=device))
    W = torch.randn(128, 64, dtype=torch.bfloat16, device=device)
    packed, absmax4 = ops.quantize_4bit(W, 64, "nf4", torch.uint8)
    yield ops.quantize_4bit.default, (W, 64, "nf4", torch.uint8)
    yield ops.dequantize_4bit.default, (packed, absmax4, 64, "nf4", [128, 64], torch.bfloat16)
    yield ops.dequantize_4bit.out, (packed, absmax4, 64, "nf4", [128, 64], torch.bfloat16,
                                    torch.empty(128, 64, dtype=torch.bfloat16, device=device))
    x = torch.randn(1, 1, 64, dtype=torch.bfloat16, device=device)
    nf4 = F.get_4bit_type("nf4", device=device)
    yield ops.gemv_4bit.default, (x, packed, [128, 64], absmax4, nf4, 64)
    yield ops.gemv_4bit.out, (x, packed, [128, 64], absmax4, nf4, 64,
                              torch.empty(1, 1, 128, dtype=torch.bfloat16, device=device))


def test_opcheck_with_the_reference_samples(device):
    for op, args in _samples(device):
        torch.library.opcheck(op, args)


def test_out_overloads_equal_the_functional_ops(device):
    for op, args in _samples(device):
        if op._overloadname != "out":
            continue
        out = args[-1]
        op(*args)
        want = getattr(ops, op._opname).default(*args[:-1])
        assert torch.equal(out, want), op
