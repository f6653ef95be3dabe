// The scratch of one multi-tensor optimizer launch, owned by the op layer: the per-tensor
// statistics (workspace), the device table of tensor slots and its host mirror.
//
// Why the op keeps them: the CUDA kernel reads its tensors' pointers from a device table, and
// uploading that table at every step would cost a pinned copy per step; the slots hold
// pointers into the workspace, so the workspace must stay put for the table to stay valid.
// Launches are found again by the tensors they update (parameters, states, absmax; not the
// gradients, which may be reallocated between steps). Correctness never rests on that lookup:
// the table is compared with its mirror at every step and uploaded again where they differ.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "bnb/optimizer.h"

namespace bnb::ops {

struct OptimizerLaunch {
  at::Tensor workspace;              // float32, kStats per tensor, on the launch's device
  at::Tensor table;                  // uint8 device copy of `mirror`
  std::vector<uint8_t> mirror;       // what `table` holds
};

// The launch of `slots` on `device` (made on first use), with a workspace of at least
// slots.size() * kStats floats. Thread-safe; the most recently used launches are kept.
std::shared_ptr<OptimizerLaunch> optimizer_launch_for(const c10::Device& device,
                                                      const std::vector<TensorSlot>& slots);

}  // namespace bnb::ops
