// Hand-offs of a call's reactor between threads that go through gRPC's completion queues: Debian's
// libgrpc is not built with ThreadSanitizer, so it cannot see that the thread which starts an
// operation (StartWrite, Finish, ...) happens before the thread that runs its reaction
// (OnWriteDone, OnDone, ...). HandOff before such a call and TakeOver at the start of each reaction
// tell it; elsewhere they compile to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace sparsed::server {

inline void HandOff([[maybe_unused]] const void* reactor) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(reactor));
#endif
}

inline void TakeOver([[maybe_unused]] const void* reactor) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(reactor));
#endif
}

}  // namespace sparsed::server
