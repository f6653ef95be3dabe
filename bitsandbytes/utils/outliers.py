"""Finding the outlier feature dimensions of a model's linear layers (LLM.int8()'s emergent
features): `find_outlier_dims` on a weight or activations, and `OutlierTracer`, which records
them for every torch.nn.Linear during one forward pass."""
import torch


def find_outlier_dims(weight, reduction_dim=0, zscore=4.0, topk=None, rdm=False):
    """The dimensions of `weight` (indices along the axis that survives reducing
    `reduction_dim`) whose standard deviation is more than `zscore` standard deviations above
    the mean standard deviation; with `topk`, the topk dimensions of largest standard
    deviation instead; with rdm=True, topk random dimensions (a baseline)."""
    if rdm:
        if topk is None:
            raise ValueError("find_outlier_dims: rdm=True needs topk (how many random dimensions)")
        return torch.randint(0, weight.shape[1], size=(topk,), device=weight.device).long()
    std = weight.std(reduction_dim)
    if topk is not None:
        return torch.topk(std.abs(), k=topk, dim=0).indices
    zstd = (std - std.mean()) / std.std()
    return torch.where(zstd > zscore)[0]


def outlier_hook(module, input):
    """Forward pre-hook of OutlierTracer: records the outlier dimensions of `module`'s input.
    The first linear layer has no previous weight to read them from, so its input is tested
    (z-score 3 of the std over dim 1 of the flattened input, or any |value| > 6); every later
    layer gets the outlier input dimensions found in its own weight's column statistics."""
    if not isinstance(module, torch.nn.Linear):
        raise TypeError(f"outlier_hook: module must be a torch.nn.Linear, got {type(module).__name__}")
    tracer = OutlierTracer.get_instance()
    hvalue = tracer.get_hvalue(module.weight)
    if hvalue in tracer.hvalue2outlier_idx:
        # a second forward: everything is recorded
        for hook in tracer.hooks:
            hook.remove()
        return
    tracer.outliers.append(find_outlier_dims(module.weight))
    tracer.hvalues.append(hvalue)
    if len(tracer.outliers) > 1:
        tracer.hvalue2outlier_idx[hvalue] = tracer.outliers[-1]
    else:
        x = input[0]
        # reduction_dim=1 as the reference library computes it, so recorded indices agree
        by_std = find_outlier_dims(x.reshape(-1, x.shape[-1]), reduction_dim=1, zscore=3)
        large = (x.abs() > 6).reshape(-1, x.shape[-1]).sum(dim=0)
        by_magnitude = torch.where(large > 0)[0]
        tracer.hvalue2outlier_idx[hvalue] = torch.cat([by_std, by_magnitude]).unique()


class OutlierTracer:
    """Singleton: initialize(model) hooks every torch.nn.Linear of `model`; after a forward
    pass, get_outliers(layer.weight) gives that layer's outlier input dimensions."""

    _instance = None

    def __init__(self):
        raise RuntimeError("OutlierTracer is a singleton: call OutlierTracer.get_instance()")

    def initialize(self, model):
        self.last_w = None
        self.current_outlier_dims = None
        self.hvalues = []
        self.outliers = []
        self.hvalue2outlier_idx = {}
        self.initialized = True
        self.hooks = [m.register_forward_pre_hook(outlier_hook) for m in model.modules()
                      if isinstance(m, torch.nn.Linear)]

    def is_initialized(self):
        return getattr(self, "initialized", False)

    def get_hvalue(self, weight):
        """The key of a weight: the address of its storage."""
        return weight.data.untyped_storage().data_ptr()

    def get_outliers(self, weight):
        if not self.is_initialized():
            raise RuntimeError("OutlierTracer: call initialize(model) and run a forward pass first")
        return self.hvalue2outlier_idx.get(self.get_hvalue(weight))

    @classmethod
    def get_instance(cls):
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
        return cls._instance
