"""Linear8bitLt checkpoints whose int8 weight was saved in cuBLASLt's tiled orders (weight_format
col_turing = 2, col_ampere = 3, as releases up to 0.44 wrote them) load in row-major order,
as the 0.45 releases load them. The tiled checkpoints are written here from cuBLASLt's
description of each order, element by element."""
import pytest
import torch

import bitsandbytes as bnb
from bitsandbytes.nn import Linear8bitLt

TILES = {"col_turing": (8, 32), "col_ampere": (32, 32)}


def stored_offset(layout, row, col, padded_rows):
    """Offset of element (row, col) in a matrix stored in `layout`: tiles column of tiles by
    column of tiles; within a tile, col_turing (COL4_4R2_8C) keeps 4x4 sub-tiles of the even
    rows, then of the odd rows; col_ampere (COL32_2R_4R4) puts tile row r at row slot
    ((r % 8) / 2 * 4 + r / 8) * 2 + r % 2."""
    tr, tc = TILES[layout]
    r, c = row % tr, col % tc
    tile_start = (col // tc) * padded_rows * tc + (row // tr) * tr * tc
    if layout == "col_turing":
        within = (128 if r % 2 else 0) + (c // 4) * 16 + (r // 2) * 4 + c % 4
    else:
        within = (((r % 8) // 2 * 4 + r // 8) * 2 + r % 2) * 32 + c
    return tile_start + within


def to_tiled(W, layout):
    """W ([rows, cols], any dtype) stored in `layout`, padded with zeros to whole tiles."""
    tr, tc = TILES[layout]
    rows, cols = -(-W.shape[0] // tr) * tr, -(-W.shape[1] // tc) * tc
    out = torch.zeros(rows * cols, dtype=W.dtype)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            out[stored_offset(layout, i, j, rows)] = W[i, j]
    return out.view(rows, cols)


def test_the_layouts_as_cublaslt_describes_them():
    """The first values of a stored tile: col_turing holds rows 0, 2, 4, 6 of columns 0..3,
    then the same rows of columns 4..7; col_ampere stores tile rows 0, 1, 8, 9, 16, 17, ..."""
    W = torch.arange(64 * 64).view(64, 64)
    turing = to_tiled(W, "col_turing").reshape(-1)
    assert turing[:20].tolist() == [r * 64 + c for r in (0, 2, 4, 6) for c in range(4)] + [4, 5, 6, 7]
    assert turing[128:132].tolist() == [64, 65, 66, 67]  # row 1
    ampere = to_tiled(W, "col_ampere").reshape(-1, 32)
    assert [int(row[0]) // 64 for row in ampere[:8]] == [0, 1, 8, 9, 16, 17, 24, 25]
    for layout in TILES:
        back = bnb.utils.weight_formats.to_row_major(to_tiled(W, layout), layout, W.shape)
        assert torch.equal(back, W)


@pytest.mark.parametrize("layout,code", [("col_turing", 2), ("col_ampere", 3)])
@pytest.mark.parametrize("shape", [(72, 96), (40, 70)])  # whole tiles, and padded ones
def test_tiled_checkpoint_loads_in_row_major_order(layout, code, shape, device):
    n_out, n_in = shape
    fp = torch.nn.Linear(n_in, n_out)
    layer = Linear8bitLt(n_in, n_out, has_fp16_weights=False, threshold=6.0)
    layer.load_state_dict(fp.state_dict())
    layer = layer.to(device)
    sd = layer.state_dict()
    tiled = dict(sd, weight=to_tiled(sd["weight"].cpu(), layout).to(device),
                 weight_format=torch.tensor(code, dtype=torch.uint8))
    other = Linear8bitLt(n_in, n_out, has_fp16_weights=False, threshold=6.0)
    other.load_state_dict(fp.state_dict())
    other = other.to(device)
    other.load_state_dict(tiled)
    assert torch.equal(other.weight.data, layer.weight.data)
    x = torch.randn(9, n_in, dtype=torch.float16, device=device)
    assert torch.equal(other(x), layer(x))
    assert int(other.state_dict()["weight_format"]) == 0  # saved row-major again
    other.load_state_dict(dict(tiled, weight_format=layout))  # the name, as some writers stored it
    assert torch.equal(other.weight.data, layer.weight.data)


def test_deprecated_undo_layout_agrees():
    W = torch.randint(-127, 128, (64, 96), dtype=torch.int8)
    for layout in TILES:
        idx = bnb.utils.weight_formats.tile_indices(layout)
        with pytest.warns(DeprecationWarning):
            assert torch.equal(bnb.autograd.undo_layout(to_tiled(W, layout), idx), W)
