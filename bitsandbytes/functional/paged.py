"""Paged tensors under the reference library's names: `get_paged` allocates one (zeros in
CUDA unified memory, through `paged_zeros`), `prefetch_tensor` migrates one to its GPU or to the host, and
`GlobalPageManager` keeps the paged tensors of the optimizers so they can all be prefetched."""
import weakref

import torch

from .optimizer import paged_zeros, prefetch_to_device, prefetch_to_host


def get_paged(*shape, dtype=torch.float32, device=None):
    """A zero tensor of `shape` in unified memory of `device` (default: the first GPU), marked
    `is_paged` with its `page_deviceid`. Unlike the reference's (a CPU view of the managed
    memory) it is a tensor of the CUDA device, so torch operations run on the GPU. On a CPU
    device it is an ordinary tensor, still marked, so code paths can be tested without a GPU."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"get_paged: shape must be non-negative ints, got {shape}")
    device = torch.device("cuda", 0) if device is None else torch.device(device)
    out = paged_zeros(shape, dtype=dtype, device=device)
    out.is_paged = True
    out.page_deviceid = out.device.index if out.device.type == "cuda" else -1
    return out


def prefetch_tensor(A, to_cpu=False):
    """Queues the migration of paged tensor `A` to its GPU (to host memory with to_cpu=True,
    freeing its GPU memory until it is used there again) on the current stream."""
    if not getattr(A, "is_paged", False):
        raise ValueError("prefetch_tensor: A must be a paged tensor (from get_paged); only paged tensors can be "
                         "prefetched")
    if to_cpu:
        prefetch_to_host(A)
    else:
        prefetch_to_device(A)


class GlobalPageManager:
    """The process-wide list of paged tensors (`paged_tensors`, where `get_state_buffer`
    registers a subclass's state, as in the reference), and the built-in paged optimizers'
    state, held weakly (`register_weakly`: it is freed with its optimizer), so that
    `prefetch_all` moves all of it."""

    _instance = None

    def __init__(self):
        raise RuntimeError("GlobalPageManager is a singleton: call GlobalPageManager.get_instance()")

    def initialize(self):
        self.paged_tensors = []
        self._weak = []  # weakref.ref of the built-in optimizers' paged state, in creation order
        self._live = 0  # how many of them were alive at the last pruning

    def register_weakly(self, t):
        """Registers paged tensor `t` for prefetch_all without keeping it alive."""
        self._weak.append(weakref.ref(t))
        if len(self._weak) > 2 * self._live + 64:  # prune the freed now and then, not at every call
            self._weak = [r for r in self._weak if r() is not None]
            self._live = len(self._weak)

    @classmethod
    def get_instance(cls):
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.initialize()
        return cls._instance

    def prefetch_all(self, to_cpu=False):
        # The tensors registered first are used first in a step: migrate them last, so that
        # they are the least likely to be evicted again before use.
        held = [t for t in (r() for r in self._weak) if t is not None]
        for t in (self.paged_tensors + held)[::-1]:
            prefetch_tensor(t, to_cpu)
