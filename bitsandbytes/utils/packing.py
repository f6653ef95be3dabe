"""A dict of plain (JSON) values stored as a uint8 tensor, so that it can sit in a state dict."""
import json

import torch


def pack_dict_to_tensor(source_dict):
    """The UTF-8 bytes of `source_dict` as JSON, as a 1-D uint8 tensor."""
    try:
        text = json.dumps(source_dict)
    except TypeError as e:
        raise TypeError(f"pack_dict_to_tensor: source_dict must hold JSON values only ({e})") from None
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)


def unpack_tensor_to_dict(tensor_data):
    """Inverse of pack_dict_to_tensor."""
    if not isinstance(tensor_data, torch.Tensor) or tensor_data.dtype != torch.uint8:
        raise TypeError(f"unpack_tensor_to_dict: tensor_data must be a uint8 tensor, got {type(tensor_data).__name__}"
                        + (f" of {tensor_data.dtype}" if isinstance(tensor_data, torch.Tensor) else ""))
    return json.loads(bytes(tensor_data.cpu().tolist()).decode("utf-8"))
