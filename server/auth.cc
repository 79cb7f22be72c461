#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/model/mapped_file.h"

namespace sparsed::server {
namespace {

std::array<unsigned char, 32> Digest(absl::string_view key) {
  std::array<unsigned char, 32> d;
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d.data());
  return d;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view text, absl::string_view file_name) {
  ApiKeys k;
  std::set<std::array<unsigned char, 32>> digests;
  std::set<std::string> names;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_no, ": ", why));
    };
    if (f.size() < 2 || f.size() > 3) return bad("expected KEY ROLE [NAME]");
    if (f[0].size() < 16) return bad("a key needs at least 16 characters");
    Entry e;
    if (f[1] == "generate") {
      e.caller.role = Role::kGenerate;
    } else if (f[1] == "admin") {
      e.caller.role = Role::kAdmin;
    } else {
      return bad(absl::StrCat("role '", f[1], "'; allowed: generate, admin"));
    }
    e.caller.name = f.size() == 3 ? std::string(f[2]) : absl::StrCat("key-", line_no);
    e.digest = Digest(f[0]);
    if (!digests.insert(e.digest).second) return bad("this key appears on an earlier line");
    if (!names.insert(e.caller.name).second)
      return bad(absl::StrCat("the name '", e.caller.name, "' appears on an earlier line"));
    k.entries_.push_back(std::move(e));
  }
  if (k.entries_.empty())
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": holds no key"));
  return k;
}

const Caller* ApiKeys::Find(absl::string_view key) const {
  const std::array<unsigned char, 32> d = Digest(key);
  const Caller* found = nullptr;
  for (const Entry& e : entries_) {
    if (CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0) found = &e.caller;
  }
  return found;
}

absl::StatusOr<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& path) {
  auto s = std::unique_ptr<KeyStore>(new KeyStore());
  s->path_ = path;
  if (!path.empty()) {
    absl::Status st = s->Reload();
    if (!st.ok()) return st;
  }
  return s;
}

absl::Status KeyStore::Reload() {
  const absl::StatusOr<std::string> text = ReadFileToString(path_);
  if (!text.ok())
    return absl::NotFoundError(absl::StrCat(path_, ": cannot read the API keys file"));
  absl::StatusOr<ApiKeys> k = ApiKeys::Parse(*text, path_);
  if (!k.ok()) return k.status();
  auto next = std::make_shared<const ApiKeys>(*std::move(k));
  std::lock_guard<std::mutex> l(mu_);
  keys_ = std::move(next);
  return absl::OkStatus();
}

absl::StatusOr<Caller> KeyStore::Authorize(const grpc::ServerContextBase& ctx, Role needed,
                                           absl::string_view what) const {
  if (path_.empty()) return Caller{"", Role::kAdmin};
  std::shared_ptr<const ApiKeys> keys;
  {
    std::lock_guard<std::mutex> l(mu_);
    keys = keys_;
  }
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        "this server needs an API key: send metadata 'authorization: Bearer KEY'");
  }
  absl::string_view v(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&v, "Bearer ")) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer KEY'");
  }
  const Caller* c = keys->Find(absl::StripAsciiWhitespace(v));
  if (c == nullptr) return absl::UnauthenticatedError("unknown API key");
  if (needed == Role::kAdmin && c->role != Role::kAdmin) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " needs an admin key; this key's role is generate"));
  }
  return *c;
}

}  // namespace sparsed::server
