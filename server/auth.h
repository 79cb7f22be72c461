// API keys and roles (--api_keys_file). Clients send `authorization: Bearer KEY` metadata; each
// key has a role:
//   generate — Generate, GenerateStream, Tokenize, GetModelInfo, the Open Inference Protocol's
//              inference calls, and Abort of the requests this key started;
//   admin    — all of that, Abort of any request, and GetServerLoad.
// Health stays open (probes present no key); grpc.reflection.v1 is off while keys are on. Keys are
// held as SHA-256 digests and compared in constant time; the file is re-read on SIGHUP
// (KeyStore::Reload). Without a file every call is allowed, as for a trusted network.
#pragma once

#include <grpcpp/server_context.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sparsed::server {

enum class Role { kGenerate, kAdmin };

struct Caller {
  std::string name;  // the key's name (its third field, or "key-LINE")
  Role role = Role::kAdmin;
};

// Whose requests `c` may abort: any (null) for an admin, else only its own (its name, matched
// against Request::owner).
inline const std::string* AbortScope(const Caller& c) {
  return c.role == Role::kAdmin ? nullptr : &c.name;
}

// The parsed file: one key per line, `KEY ROLE [NAME]` separated by spaces; blank lines and
// lines starting with '#' are skipped. A key has at least 16 characters. INVALID_ARGUMENT names
// the file and line: an unknown role, a short or repeated key, a repeated name.
class ApiKeys {
 public:
  static absl::StatusOr<ApiKeys> Parse(absl::string_view text, absl::string_view file_name);
  // The caller a presented key belongs to, or null. Every entry is compared (constant time).
  const Caller* Find(absl::string_view key) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    Caller caller;
  };
  std::vector<Entry> entries_;
};

// Thread-safety: thread-safe; Reload() swaps the keys under a lock while calls check them.
class KeyStore {
 public:
  // Loads `path`; an empty path allows every call.
  static absl::StatusOr<std::unique_ptr<KeyStore>> Open(const std::string& path);
  bool enabled() const { return !path_.empty(); }
  // Re-reads the file; on error the keys in use stay.
  absl::Status Reload();
  // The caller of `ctx` when its key has at least `needed`: UNAUTHENTICATED without a valid
  // `authorization: Bearer KEY`, PERMISSION_DENIED naming the role `what` needs. When keys are
  // off: an anonymous admin.
  absl::StatusOr<Caller> Authorize(const grpc::ServerContextBase& ctx, Role needed,
                                   absl::string_view what) const;

 private:
  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const ApiKeys> keys_;  // guarded by mu_
};

}  // namespace sparsed::server
