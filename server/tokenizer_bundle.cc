#include "server/tokenizer_bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/sha.h>

#include <array>
#include <filesystem>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/model/mapped_file.h"

namespace sparsed::server {
namespace {

constexpr const char* kRequired = "tokenizer.json";
constexpr std::array<const char*, 5> kOptional = {
    "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json",
    "chat_template.jinja"};

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

la_ssize_t AppendToString(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

absl::Status ArchiveError(archive* a, absl::string_view what) {
  return absl::InternalError(absl::StrCat("zipping the tokenizer files: ", what, ": ",
                                          archive_error_string(a) ? archive_error_string(a) : "?"));
}

}  // namespace

absl::StatusOr<TokenizerBundle> MakeTokenizerBundle(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path required = fs::path(dir) / kRequired;
  if (!fs::exists(required)) {
    return absl::FailedPreconditionError(absl::StrCat(
        required.string(),
        " does not exist: a gateway tokenizes with Hugging Face's tokenizer.json; make it from "
        "the model's tokenizer.model with tools/make_hf_tokenizer.py ",
        dir));
  }
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<const char*> names = {kRequired};
  names.insert(names.end(), kOptional.begin(), kOptional.end());
  for (const char* name : names) {
    const fs::path p = fs::path(dir) / name;
    if (name != kRequired && !fs::exists(p)) continue;
    absl::StatusOr<std::string> data = ReadFileToString(p.string());
    if (!data.ok()) return data.status();
    files.emplace_back(name, *std::move(data));
  }

  TokenizerBundle b;
  std::unique_ptr<archive, ArchiveDeleter> a(archive_write_new());
  if (a == nullptr) return absl::ResourceExhaustedError("archive_write_new failed");
  if (archive_write_set_format_zip(a.get()) != ARCHIVE_OK) return ArchiveError(a.get(), "format");
  // Whole blocks only at the end, not padded to 10 KiB records.
  archive_write_set_bytes_in_last_block(a.get(), 1);
  if (archive_write_open2(a.get(), &b.zip, nullptr, AppendToString, nullptr, nullptr) !=
      ARCHIVE_OK) {
    return ArchiveError(a.get(), "open");
  }
  for (const auto& [name, data] : files) {
    std::unique_ptr<archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(data.size()));
    archive_entry_set_mtime(e.get(), 0, 0);  // the same files give the same bytes (and digest)
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) return ArchiveError(a.get(), name);
    if (archive_write_data(a.get(), data.data(), data.size()) !=
        static_cast<la_ssize_t>(data.size())) {
      return ArchiveError(a.get(), name);
    }
    b.files.push_back(name);
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) return ArchiveError(a.get(), "close");

  std::array<unsigned char, SHA256_DIGEST_LENGTH> d;
  SHA256(reinterpret_cast<const unsigned char*>(b.zip.data()), b.zip.size(), d.data());
  b.sha256 =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
  return b;
}

}  // namespace sparsed::server
