// Asynchronous copies from global to shared memory (cp.async, sm_80 and later): the bytes go in
// flight without holding registers, and land in shared memory where the issuing thread reads
// them after waiting on their group. A thread that reads only what it copied itself needs no
// barrier.
#pragma once
#include <cstdint>

namespace bnb::cuda {

// Bytes = 4, 8 or 16 from src (aligned to Bytes) to dst in shared memory (aligned to Bytes).
// 16-byte copies bypass L1 (.cg); the smaller sizes exist only as .ca.
template <int Bytes>
__device__ __forceinline__ void copy_async(void* dst, const void* src) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
  const unsigned d = unsigned(__cvta_generic_to_shared(dst));
  if constexpr (Bytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(d), "l"(src), "n"(Bytes) : "memory");
}

// Closes the group of the copies issued since the last commit.
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Waits until at most `pending` of the most recent groups are still in flight (0 <= pending <
// MaxPending; the count must be an immediate, hence the unrolled choice).
template <int MaxPending>
__device__ __forceinline__ void copy_async_wait(int pending) {
  if constexpr (MaxPending > 1) {
    if (pending >= MaxPending - 1) {
      asm volatile("cp.async.wait_group %0;" ::"n"(MaxPending - 1) : "memory");
      return;
    }
    copy_async_wait<MaxPending - 1>(pending);
  } else {
    asm volatile("cp.async.wait_group 0;" ::: "memory");
  }
}

}  // namespace bnb::cuda
