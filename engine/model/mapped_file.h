// Read-only memory mapping of a whole file (RAII).
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sparsed {

// Thread-safety: immutable after Open(); may be read from any thread.
class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  absl::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }
  const std::string& path() const { return path_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Drops the pages wholly inside [p, p + n) of a read-only file mapping from this process's
// resident set (a later read maps them again from the file): for data copied out of a mapping
// that will not be read again. A no-op for memory that is not such a mapping's.
void ReleaseMappedPages(const void* p, size_t n);

// Reads a whole (small) file into a string.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace sparsed
