#include "engine/tokenizer/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/common/plugin_path.h"
#include "engine/tokenizer/spm_plugin_api.h"

namespace sparsed {

// The dlopen'ed plugin and its entry points.
class SpmPlugin {
 public:
  static absl::StatusOr<std::shared_ptr<SpmPlugin>> Load();
  ~SpmPlugin() {
    if (lib_) dlclose(lib_);
  }
  decltype(&spd_load) load = nullptr;
  decltype(&spd_free) free = nullptr;
  decltype(&spd_encode) encode = nullptr;
  decltype(&spd_decode) decode = nullptr;
  decltype(&spd_vocab_size) vocab_size = nullptr;
  decltype(&spd_bos_id) bos_id = nullptr;
  decltype(&spd_eos_id) eos_id = nullptr;
  decltype(&spd_train) train = nullptr;

 private:
  void* lib_ = nullptr;
};

namespace {

template <typename F>
bool Sym(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

}  // namespace

absl::StatusOr<std::shared_ptr<SpmPlugin>> SpmPlugin::Load() {
#ifdef SPARSED_NO_DEEPBIND
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL;
#else
  constexpr int kFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif
  std::string tried;
  for (const std::string& path : PluginCandidates("libsparsed_spm.so")) {
    if (!std::filesystem::exists(path)) {
      absl::StrAppend(&tried, " ", path);
      continue;
    }
    void* lib = dlopen(path.c_str(), kFlags);
    if (lib == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load tokenizer plugin ", path, ": ", dlerror()));
    }
    auto p = std::make_shared<SpmPlugin>();
    p->lib_ = lib;
    if (!Sym(lib, "spd_load", &p->load) || !Sym(lib, "spd_free", &p->free) ||
        !Sym(lib, "spd_encode", &p->encode) || !Sym(lib, "spd_decode", &p->decode) ||
        !Sym(lib, "spd_vocab_size", &p->vocab_size) || !Sym(lib, "spd_bos_id", &p->bos_id) ||
        !Sym(lib, "spd_eos_id", &p->eos_id) || !Sym(lib, "spd_train", &p->train)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": tokenizer plugin lacks an entry point"));
    }
    return p;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "tokenizer plugin libsparsed_spm.so not found (set SPARSED_PLUGIN_DIR); tried:", tried));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  auto plugin = SpmPlugin::Load();
  if (!plugin.ok()) return plugin.status();
  char err[512] = {0};
  void* h = (*plugin)->load(model_path.c_str(), err, sizeof err);
  if (h == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": cannot load SentencePiece model: ", err));
  }
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  t->plugin_ = *std::move(plugin);
  t->handle_ = h;
  return t;
}

Tokenizer::~Tokenizer() {
  if (handle_) plugin_->free(handle_);
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text) const {
  std::vector<int32_t> ids(text.size() + 16);
  int n =
      plugin_->encode(handle_, text.data(), text.size(), ids.data(), static_cast<int>(ids.size()));
  if (n < 0) return absl::InvalidArgumentError("text could not be tokenized");
  if (n > static_cast<int>(ids.size())) {
    ids.resize(n);
    n = plugin_->encode(handle_, text.data(), text.size(), ids.data(), n);
  }
  ids.resize(n);
  return ids;
}

absl::StatusOr<std::string> Tokenizer::DecodeAfter(const std::vector<int32_t>& context,
                                                   const std::vector<int32_t>& ids) const {
  if (!context.empty()) {
    auto prefix = Decode(context);
    if (!prefix.ok()) return prefix.status();
    std::vector<int32_t> all = context;
    all.insert(all.end(), ids.begin(), ids.end());
    auto full = Decode(all);
    if (!full.ok()) return full.status();
    if (full->compare(0, prefix->size(), *prefix) == 0) return full->substr(prefix->size());
  }
  return Decode(ids);
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> known;
  known.reserve(ids.size());
  const int vs = vocab_size();
  for (int32_t id : ids) {
    if (id >= 0 && id < vs) known.push_back(id);
  }
  std::string out(known.size() * 8 + 16, '\0');
  int n = plugin_->decode(handle_, known.data(), static_cast<int>(known.size()), out.data(),
                          static_cast<int>(out.size()));
  if (n < 0) return absl::InternalError("token ids could not be decoded");
  if (n > static_cast<int>(out.size())) {
    out.resize(n);
    n = plugin_->decode(handle_, known.data(), static_cast<int>(known.size()), out.data(), n);
  }
  out.resize(n);
  return out;
}

int Tokenizer::vocab_size() const { return plugin_->vocab_size(handle_); }
int Tokenizer::bos_id() const { return plugin_->bos_id(handle_); }
int Tokenizer::eos_id() const { return plugin_->eos_id(handle_); }

absl::Status TrainSentencePiece(const std::string& flags) {
  auto plugin = SpmPlugin::Load();
  if (!plugin.ok()) return plugin.status();
  char err[1024] = {0};
  if ((*plugin)->train(flags.c_str(), err, sizeof err) != 0) {
    return absl::InternalError(absl::StrCat("SentencePiece training failed: ", err));
  }
  return absl::OkStatus();
}

}  // namespace sparsed
