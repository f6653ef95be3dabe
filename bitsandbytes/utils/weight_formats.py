"""The `weight_format` codes a Linear8bitLt state dict stores beside its int8 weight, and the
tiled layouts of older checkpoints. Only "row" (0) is written since the 0.45 releases; releases
up to 0.44 saved the weight of a layer that had run on the GPU in cuBLASLt's tiled order for its
GPU ("col_turing", "col_ampere"), which loading brings back to row-major order."""
import torch

LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {"row": 0, "col32": 1, "col_turing": 2, "col_ampere": 3}
INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {code: name for name, code in LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING.items()}

# The tile of each weight layout: [rows, cols] values, the tiles stored column of tiles by column
# of tiles (all tiles of columns 0..31 top to bottom, then those of columns 32..63, ...).
TILE_SHAPES = {"col_turing": (8, 32), "col_ampere": (32, 32)}


def _offset_in_tile(layout, r, c):
    """Where the value of row r, column c of a tile is stored within the tile, as cuBLASLt
    describes its orders."""
    if layout == "col_turing":
        # CUBLASLT_ORDER_COL4_4R2_8C: 4x4 sub-tiles along the columns, those of the even rows
        # (0, 2, 4, 6) in the first 128 bytes, those of the odd rows in the next 128
        return (r % 2) * 128 + (c // 4) * 16 + (r // 2) * 4 + c % 4
    # CUBLASLT_ORDER_COL32_2R_4R4: ((((r % 8) / 2 * 4 + r / 8) * 2 + r % 2) * 32 + c
    return (((r % 8) // 2 * 4 + r // 8) * 2 + r % 2) * 32 + c


def tile_indices(layout):
    """int64 [tile rows, tile cols]: at each storage offset of a tile (read row-major), the
    row-major index within the tile of the value stored there."""
    rows, cols = TILE_SHAPES[layout]
    out = torch.empty(rows * cols, dtype=torch.int64)
    for r in range(rows):
        for c in range(cols):
            out[_offset_in_tile(layout, r, c)] = r * cols + c
    return out.view(rows, cols)


def untile(permuted, indices):
    """The row-major matrix stored in `permuted` ([rows, cols], a whole number of tiles of
    indices' shape, ordered column of tiles by column of tiles), each tile's values placed as
    `indices` records (tile_indices, or the reference's get_inverse_transform_indices)."""
    (rows, cols), (tile_rows, tile_cols) = permuted.shape, indices.shape
    if rows % tile_rows or cols % tile_cols:
        raise ValueError(f"the tiled weight {tuple(permuted.shape)} must hold a whole number of "
                         f"{tile_rows}x{tile_cols} tiles")
    chunks = permuted.reshape(-1, tile_rows * tile_cols)
    tiles = torch.empty_like(chunks)
    tiles[:, indices.flatten().to(chunks.device)] = chunks
    tiles = tiles.view(cols // tile_cols, rows // tile_rows, tile_rows, tile_cols)
    return tiles.permute(1, 2, 0, 3).reshape(rows, cols).contiguous()


def format_name(weight_format):
    """The layout name of a stored `weight_format` (its code as a tensor or int, or its name)."""
    if isinstance(weight_format, torch.Tensor):
        weight_format = weight_format.item()
    if isinstance(weight_format, int) and not isinstance(weight_format, bool):
        if weight_format not in INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING:
            raise ValueError(f"weight_format must be one of {sorted(INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING)} "
                             f"({', '.join(LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING)}), got {weight_format}")
        return INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING[weight_format]
    if weight_format not in LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING:
        raise ValueError(f"weight_format must be one of {', '.join(LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING)}, got "
                         f"{weight_format!r}")
    return weight_format


def to_row_major(weight, weight_format, shape):
    """The row-major int8 weight of `shape` ([out, in]) that a checkpoint stored in
    `weight_format`; the padding of a tiled layout (to whole tiles) is dropped."""
    layout = format_name(weight_format)
    if layout == "row":
        return weight
    if layout not in TILE_SHAPES:
        raise ValueError(f"weight_format {layout!r} is not a layout int8 weights were saved in; "
                         f"{', '.join(['row', *TILE_SHAPES])} are")
    if weight.dim() != 2 or weight.shape[0] < shape[0] or weight.shape[1] < shape[1]:
        raise ValueError(f"a {layout} weight of shape {tuple(weight.shape)} cannot hold a [{shape[0]}, {shape[1]}] "
                         "weight")
    return untile(weight, tile_indices(layout))[: shape[0], : shape[1]].contiguous()
