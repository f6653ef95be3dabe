// What the launchers ask of a device (multiprocessors, compute capability, shared memory a
// block may opt into, L2 size, whether our cluster kernels run on it), queried once per
// device: an attribute query costs host time that a short launch cannot afford.
#pragma once
#include <cuda_runtime_api.h>

namespace bnb::cuda {

constexpr int kMaxDevices = 64;

struct DeviceCaps {
  int device = -1;     // -1: no usable current device, every other field 0
  int sm_count = 0;
  int major = 0;
  int minor = 0;
  int smem_optin = 0;  // bytes of shared memory one block may opt into
  int l2_bytes = 0;
  // Virtual architecture of this library's device code chosen for the device (90 for code
  // built for sm_90), 0 when there is none: a build without sm_90 code runs the empty
  // fallback body of a cluster kernel, so the hardware alone does not decide.
  int code_arch = 0;

  // Thread-block clusters with distributed shared memory, in code compiled for them.
  bool clusters() const { return major >= 9 && code_arch >= 90; }
};

// The capabilities of the current device; filled on first use per device (thread-safe),
// then read without a lock.
const DeviceCaps& device_caps();

}  // namespace bnb::cuda
