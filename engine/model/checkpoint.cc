#include "engine/model/checkpoint.h"

#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace sparsed {

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  std::error_code ec;
  if (fs::is_regular_file(dir, ec) && fs::path(dir).extension() == ".gguf") {
    RETURN_IF_ERROR(ck->OpenGguf(dir));
    return ck;
  }
  if (fs::is_directory(dir, ec) && !fs::exists(config_path, ec)) {
    std::vector<fs::path> ggufs;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
    if (ggufs.size() == 1) {
      RETURN_IF_ERROR(ck->OpenGguf(ggufs[0].string()));
      return ck;
    }
    if (ggufs.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": holds ", ggufs.size(),
                       " .gguf files and no config.json; name the file to serve"));
    }
  }
  ASSIGN_OR_RETURN(ck->config_text_, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(ck->config_, ParseModelConfig(ck->config_text_, config_path));

  std::vector<std::string> shard_names;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::map<std::string, std::string> index_map;
  if (fs::exists(index_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path.string()));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": field 'weight_map' is missing or not an object"));
    }
    std::set<std::string> unique;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": weight_map entry '",
                                                       it.key(), "' is not a file name"));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map entry '", it.key(), "' names '", shard,
                         "', which is not a file in the model directory"));
      }
      index_map[it.key()] = shard;
      if (unique.insert(shard).second) shard_names.push_back(shard);
    }
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither model.safetensors nor model.safetensors.index.json found"));
  }

  std::map<std::string, const SafetensorsFile*> by_name;
  for (const std::string& s : shard_names) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open((fs::path(dir) / s).string()));
    ck->total_bytes_ += fs::file_size(fs::path(dir) / s);
    by_name[s] = f.get();
    for (const auto& [name, e] : f->entries()) ck->where_[name] = f.get();
    ck->files_.push_back(std::move(f));
  }
  for (const auto& [tensor, shard] : index_map) {
    auto it = ck->where_.find(tensor);
    if (it == ck->where_.end() || it->second != by_name[shard]) {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": tensor '", tensor,
                                                     "' is listed in ", shard,
                                                     " but not stored there"));
    }
  }
  return ck;
}

std::string Checkpoint::FileOf(const std::string& name) const {
  if (gguf_) return gguf_->path();
  auto it = where_.find(name);
  return it == where_.end() ? absl::StrCat(dir_, "/model.safetensors*") : it->second->path();
}

absl::StatusOr<TensorView> Checkpoint::Get(const std::string& name) const {
  if (gguf_) {
    auto g = gguf_names_.find(name);
    if (g == gguf_names_.end()) {
      return absl::NotFoundError(
          absl::StrCat(gguf_->path(), ": no GGUF tensor stands for '", name, "'"));
    }
    return gguf_->Get(g->second);
  }
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": missing tensor '", name, "' (in no safetensors file)"));
  }
  return it->second->Get(name);
}

absl::StatusOr<TensorView> Checkpoint::GetShaped(const std::string& name,
                                                 std::vector<int64_t> shape) const {
  ASSIGN_OR_RETURN(TensorView v, Get(name));
  if (v.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        FileOf(name), ": tensor '", name, "' has shape [", absl::StrJoin(v.shape, ", "),
        "], expected [", absl::StrJoin(shape, ", "), "]"));
  }
  return v;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  for (const auto& [name, g] : gguf_names_) names.push_back(name);
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

}  // namespace sparsed
