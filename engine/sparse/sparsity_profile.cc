#include "engine/sparse/sparsity_profile.h"

#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/mapped_file.h"
#include "nlohmann/json.hpp"

namespace sparsed {
namespace {

using nlohmann::json;

class Reader {
 public:
  explicit Reader(const std::string& file) : file_(file) {}
  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": field '", field, "' ", what));
  }
  absl::StatusOr<const json*> Member(const json& obj, const std::string& path,
                                     const std::string& key) const {
    auto it = obj.find(key);
    if (it == obj.end()) return Error(path, "is missing");
    return &*it;
  }
  absl::StatusOr<double> Number(const json& obj, const std::string& path, const std::string& key,
                                bool allow_infinite = false) const {
    ASSIGN_OR_RETURN(const json* v, Member(obj, path, key));
    if (!v->is_number()) return Error(path, "must be a number");
    const double d = v->get<double>();
    if (std::isnan(d) || (!allow_infinite && std::isinf(d)) || d < 0) {
      return Error(path, "must be a finite non-negative number");
    }
    return d;
  }
  absl::StatusOr<int64_t> Integer(const json& obj, const std::string& path,
                                  const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Member(obj, path, key));
    if (!v->is_number_integer() || v->get<int64_t>() < 0) {
      return Error(path, "must be a non-negative integer");
    }
    return v->get<int64_t>();
  }
  absl::StatusOr<std::string> String(const json& obj, const std::string& path,
                                     const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Member(obj, path, key));
    if (!v->is_string()) return Error(path, "must be a string");
    return v->get<std::string>();
  }
  absl::StatusOr<const json*> Object(const json& obj, const std::string& path,
                                     const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Member(obj, path, key));
    if (!v->is_object()) return Error(path, "must be an object");
    return v;
  }

 private:
  std::string file_;
};

}  // namespace

absl::StatusOr<SparsityProfile> ParseSparsityProfile(const std::string& text,
                                                     const std::string& file_name) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": not a JSON object"));
  }
  Reader r(file_name);
  SparsityProfile p;
  ASSIGN_OR_RETURN(std::string format, r.String(doc, "format", "format"));
  if (format != "sparsed-sparsity") return r.Error("format", "must be \"sparsed-sparsity\"");
  ASSIGN_OR_RETURN(int64_t version, r.Integer(doc, "version", "version"));
  if (version != SparsityProfile::kVersion) {
    return r.Error("version", absl::StrCat("is ", version, "; this build reads version ",
                                           SparsityProfile::kVersion));
  }
  ASSIGN_OR_RETURN(const json* model, r.Object(doc, "model", "model"));
  ASSIGN_OR_RETURN(p.fingerprint, r.String(*model, "model.fingerprint", "fingerprint"));
  ASSIGN_OR_RETURN(int64_t layers, r.Integer(*model, "model.num_layers", "num_layers"));
  ASSIGN_OR_RETURN(int64_t neurons,
                   r.Integer(*model, "model.intermediate_size", "intermediate_size"));
  if (layers == 0 || layers > (1 << 16)) return r.Error("model.num_layers", "is out of range");
  if (neurons == 0 || neurons > (1 << 24)) {
    return r.Error("model.intermediate_size", "is out of range");
  }
  p.num_layers = static_cast<int>(layers);
  p.intermediate_size = static_cast<int>(neurons);
  ASSIGN_OR_RETURN(std::string mode, r.String(doc, "mode", "mode"));
  if (mode != "threshold") return r.Error("mode", "must be \"threshold\"");
  ASSIGN_OR_RETURN(p.cett, r.Number(doc, "cett", "cett"));
  if (p.cett > 1) return r.Error("cett", "must be within [0, 1]");
  ASSIGN_OR_RETURN(const json* ls, r.Member(doc, "layers", "layers"));
  if (!ls->is_array()) return r.Error("layers", "must be an array");
  if (static_cast<int64_t>(ls->size()) != layers) {
    return r.Error("layers", absl::StrCat("has ", ls->size(), " entries for ", layers,
                                          " layers (model.num_layers)"));
  }
  for (size_t i = 0; i < ls->size(); ++i) {
    const std::string path = absl::StrCat("layers[", i, "]");
    const json& l = (*ls)[i];
    if (!l.is_object()) return r.Error(path, "must be an object");
    SparsityLayer layer;
    ASSIGN_OR_RETURN(layer.epsilon, r.Number(l, path + ".epsilon", "epsilon"));
    ASSIGN_OR_RETURN(layer.active_ratio, r.Number(l, path + ".active_ratio", "active_ratio"));
    if (layer.active_ratio > 1) return r.Error(path + ".active_ratio", "must be within [0, 1]");
    p.layers.push_back(layer);
  }
  if (doc.contains("perplexity")) {
    ASSIGN_OR_RETURN(const json* pp, r.Object(doc, "perplexity", "perplexity"));
    SparsityPerplexity q;
    ASSIGN_OR_RETURN(q.dense, r.Number(*pp, "perplexity.dense", "dense"));
    ASSIGN_OR_RETURN(q.sparse, r.Number(*pp, "perplexity.sparse", "sparse"));
    if (pp->contains("target_increase_percent")) {
      ASSIGN_OR_RETURN(
          q.target_increase_percent,
          r.Number(*pp, "perplexity.target_increase_percent", "target_increase_percent"));
    }
    p.perplexity = q;
  }
  if (doc.contains("calibration")) {
    ASSIGN_OR_RETURN(const json* c, r.Object(doc, "calibration", "calibration"));
    ASSIGN_OR_RETURN(p.calibration_text, r.String(*c, "calibration.text", "text"));
    ASSIGN_OR_RETURN(p.calibration_tokens, r.Integer(*c, "calibration.tokens", "tokens"));
  }
  return p;
}

absl::StatusOr<SparsityProfile> ReadSparsityProfile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseSparsityProfile(text, path);
}

std::string SparsityProfileToJson(const SparsityProfile& p) {
  json doc = {{"format", "sparsed-sparsity"},
              {"version", SparsityProfile::kVersion},
              {"model",
               {{"fingerprint", p.fingerprint},
                {"num_layers", p.num_layers},
                {"intermediate_size", p.intermediate_size}}},
              {"mode", "threshold"},
              {"cett", p.cett}};
  json layers = json::array();
  for (const SparsityLayer& l : p.layers) {
    layers.push_back({{"epsilon", l.epsilon}, {"active_ratio", l.active_ratio}});
  }
  doc["layers"] = layers;
  if (p.perplexity) {
    json pp = {{"dense", p.perplexity->dense}, {"sparse", p.perplexity->sparse}};
    if (p.perplexity->target_increase_percent) {
      pp["target_increase_percent"] = *p.perplexity->target_increase_percent;
    }
    doc["perplexity"] = pp;
  }
  if (!p.calibration_text.empty() || p.calibration_tokens) {
    doc["calibration"] = {{"text", p.calibration_text}, {"tokens", p.calibration_tokens}};
  }
  return doc.dump(1) + "\n";
}

absl::Status WriteSparsityProfile(const SparsityProfile& profile, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << SparsityProfileToJson(profile);
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Status CheckProfileMatchesModel(const SparsityProfile& p, const std::string& file_name,
                                      const std::string& fingerprint, int num_layers,
                                      int intermediate_size) {
  if (p.num_layers != num_layers || p.intermediate_size != intermediate_size) {
    return absl::FailedPreconditionError(
        absl::StrCat(file_name, " was made for a model with ", p.num_layers, " layers of ",
                     p.intermediate_size, " neurons; this model has ", num_layers, " of ",
                     intermediate_size, ". Run sparsed-calibrate on this model"));
  }
  if (p.fingerprint != fingerprint) {
    return absl::FailedPreconditionError(
        absl::StrCat(file_name, " was made for another model (fingerprint ", p.fingerprint,
                     ", this model is ", fingerprint, "). Run sparsed-calibrate on this model"));
  }
  return absl::OkStatus();
}

}  // namespace sparsed
