"""The `weight_format` codes a Linear8bitLt state dict stores beside its int8 weight. Only
"row" (0) is written since the 0.45 releases; the tiled layouts are read by older checkpoints."""
LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {"row": 0, "col32": 1, "col_turing": 2, "col_ampere": 3}
INVERSE_LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING = {code: name for name, code in LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING.items()}
