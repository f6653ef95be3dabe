"""When a paged optimizer migrates its state back to the GPU before a step.

Paged state lives in CUDA unified memory so that the driver can evict it to host memory when
the GPU runs out of memory, instead of failing an allocation. Migrating it back costs time even
when every page is already on the GPU (the driver walks the whole range: about 0.6 ms per
0.5 GB on an H100, more than the step itself for 8-bit state), so a step migrates the state only
when it may have left the GPU since the last migration:
- the plan is new (first step, state created, loaded or replaced);
- paged memory was sent to the host on purpose since (`prefetch_to_host`,
  `prefetch_tensor(..., to_cpu=True)`, `GlobalPageManager.prefetch_all(to_cpu=True)`);
- the GPU may have run short of memory: the most memory torch's allocator has held on it, plus
  what everything else holds there now, plus the paged state again, comes near its capacity.
A migration skipped wrongly would cost speed, never correctness: a kernel that touches an
evicted page faults it back."""
from ..functional.optimizer import cuda_memory_numbers, host_moves, prefetch_to_device


def pressure_possible(total, free, reserved, peak_reserved, paged_bytes):
    """Whether a device of `total` bytes (`free` free now, torch's allocator holding `reserved`,
    at most `peak_reserved` ever) may have evicted managed memory. What others hold (the CUDA
    context, other allocators and processes, the managed pages on the GPU) is taken from now;
    the paged state is counted once more because its pages on the host are not in that. The
    room kept is a 32nd of the device (2.5 GB of 80)."""
    others = total - free - reserved
    return peak_reserved + others + paged_bytes > total - total // 32


class Residency:
    """The paged state of one step plan, per GPU, and whether it must be migrated back."""

    def __init__(self, launches):
        self.state = {}  # device -> the plan's paged state tensors there
        for launch in launches:
            device = launch.params[0].device
            if device.type == "cuda":
                self.state.setdefault(device, []).extend(launch.state1 + launch.state2)
        self.bytes = {d: sum(t.numel() * t.element_size() for t in ts) for d, ts in self.state.items()}
        self.seen = {}  # device -> host_moves() at its last migration

    def prefetch(self):
        """Queues the migration of the state of every GPU where it may have left the GPU."""
        moves = host_moves()
        for device, tensors in self.state.items():
            if self.seen.get(device) == moves and not self._pressure(device):
                continue
            prefetch_to_device(tensors)
            self.seen[device] = moves

    def _pressure(self, device):
        total, free, reserved, peak = cuda_memory_numbers(self.state[device][0])
        return pressure_possible(total, free, reserved, peak, self.bytes[device])
