#include <mutex>

#include "device_caps.cuh"

namespace bnb::cuda {

namespace {

// Compiled with the same architectures as every kernel of the library: its attributes tell
// which of them the device runs.
__global__ void device_caps_probe_kernel() {}

DeviceCaps query(int device) {
  DeviceCaps c;
  cudaFuncAttributes fa{};
  const bool ok =
      cudaDeviceGetAttribute(&c.sm_count, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&c.major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&c.minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&c.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&c.l2_bytes, cudaDevAttrL2CacheSize, device) == cudaSuccess;
  if (!ok) {
    (void)cudaGetLastError();  // a failed query is not the caller's error
    return DeviceCaps{};
  }
  if (cudaFuncGetAttributes(&fa, device_caps_probe_kernel) == cudaSuccess)
    c.code_arch = fa.ptxVersion;
  else
    (void)cudaGetLastError();  // no code for this device: launches will say so
  c.device = device;
  return c;
}

struct Slot {
  std::once_flag once;
  DeviceCaps caps;
};

}  // namespace

const DeviceCaps& device_caps() {
  static const DeviceCaps none{};
  static Slot slots[kMaxDevices];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return none;
  Slot& slot = slots[device];
  std::call_once(slot.once, [&] { slot.caps = query(device); });
  return slot.caps;
}

}  // namespace bnb::cuda
