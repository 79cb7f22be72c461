// A std::mutex that Clang's thread-safety analysis understands, and its scoped lock. Members
// marked ABSL_GUARDED_BY(mu) may then be touched only with `mu` held, and functions marked
// ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) only called so: a Clang build with -Wthread-safety rejects
// anything else (tests/thread_safety_test.py runs that check in the suite). GCC ignores the
// annotations.
//
// Why not absl::Mutex, which carries the same annotations: Debian's Abseil is not built with
// ThreadSanitizer, so TSan would not see its synchronisation; std::mutex is compiled into the
// caller, instrumented. Condition variables: std::condition_variable_any waits on a Mutex.
#pragma once

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace sparsed {

class ABSL_LOCKABLE Mutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace sparsed
