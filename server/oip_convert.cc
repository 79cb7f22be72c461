#include "server/oip_convert.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "scheduler/request.h"

namespace sparsed::server {
namespace {

using nlohmann::json;
using Tensor = inference::ModelInferRequest::InferInputTensor;

// One input the model declares: its name, its canonical datatype (ModelMetadata, ModelConfig) and
// its one dimension (-1: any number of elements).
struct InputSpec {
  const char* name;
  const char* datatype;
  inference::DataType type;
  int64_t dim;
};
constexpr InputSpec kInputs[] = {
    {kTextInput, "BYTES", inference::TYPE_STRING, 1},
    {"max_tokens", "INT32", inference::TYPE_INT32, 1},
    {"temperature", "FP32", inference::TYPE_FP32, 1},
    {"top_p", "FP32", inference::TYPE_FP32, 1},
    {"top_k", "INT32", inference::TYPE_INT32, 1},
    {"repetition_penalty", "FP32", inference::TYPE_FP32, 1},
    {"presence_penalty", "FP32", inference::TYPE_FP32, 1},
    {"frequency_penalty", "FP32", inference::TYPE_FP32, 1},
    {"seed", "UINT64", inference::TYPE_UINT64, 1},
    {"random_seed", "UINT64", inference::TYPE_UINT64, 1},
    {"ignore_eos", "BOOL", inference::TYPE_BOOL, 1},
    {"stream", "BOOL", inference::TYPE_BOOL, 1},
    {"exclude_input_in_output", "BOOL", inference::TYPE_BOOL, 1},
    {"sampling_parameters", "BYTES", inference::TYPE_STRING, 1},
    {"stop_words", "BYTES", inference::TYPE_STRING, -1},
    {"bad_words", "BYTES", inference::TYPE_STRING, -1},
    {"end_id", "INT32", inference::TYPE_INT32, 1},
    {"pad_id", "INT32", inference::TYPE_INT32, 1},
    {"beam_width", "INT32", inference::TYPE_INT32, 1},
};

// The sampling and stopping settings a request may give as a one-element input, a
// sampling_parameters key or a request parameter.
enum Key {
  kMaxTokens,
  kTemperature,
  kTopP,
  kTopK,
  kMinP,
  kRepetitionPenalty,
  kPresencePenalty,
  kFrequencyPenalty,
  kSeed,
  kRandomSeed,
  kIgnoreEos,
  kNumKeys
};
enum class Kind { kNumber, kInteger, kBool };
struct KeySpec {
  const char* name;
  Key key;
  Kind kind;
  bool input;  // also a one-element input of that name
  bool json;   // also a sampling_parameters key (vLLM's SamplingParams)
};
constexpr KeySpec kKeys[] = {
    {"max_tokens", kMaxTokens, Kind::kInteger, true, true},
    {"temperature", kTemperature, Kind::kNumber, true, true},
    {"top_p", kTopP, Kind::kNumber, true, true},
    {"top_k", kTopK, Kind::kInteger, true, true},
    {"min_p", kMinP, Kind::kNumber, false, true},
    {"repetition_penalty", kRepetitionPenalty, Kind::kNumber, true, true},
    {"presence_penalty", kPresencePenalty, Kind::kNumber, true, true},
    {"frequency_penalty", kFrequencyPenalty, Kind::kNumber, true, true},
    {"seed", kSeed, Kind::kInteger, true, true},
    {"random_seed", kRandomSeed, Kind::kInteger, true, false},
    {"ignore_eos", kIgnoreEos, Kind::kBool, true, true},
};

const KeySpec* FindKey(const std::string& name) {
  for (const KeySpec& k : kKeys)
    if (name == k.name) return &k;
  return nullptr;
}

// The sampling_parameters keys handled apart from kKeys.
constexpr const char* kJsonListKeys[] = {"stop", "stop_token_ids", "n"};
// The request parameters handled apart from kKeys.
constexpr const char* kOtherParams[] = {"stop", "priority", "cache_salt",
                                        "triton_enable_empty_final_response"};

constexpr size_t kMaxStops = 16;           // StoppingParams' bounds (scheduler/request.h)
constexpr size_t kMaxStopBytes = 256;      //
constexpr int64_t kMaxElements = 1 << 20;  // more is no input of this model

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(what); }

// The number of elements `t`'s shape holds; -1 for a negative dimension or more than
// kMaxElements (a product that could overflow is never formed).
int64_t Elements(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape()) {
    if (d < 0 || (d > 0 && n > kMaxElements / d)) return -1;
    n *= d;
  }
  return n;
}

// The raw bytes of input `i`, when the request uses raw_input_contents.
const std::string* Raw(const inference::ModelInferRequest& in, int i) {
  return i < in.raw_input_contents_size() ? &in.raw_input_contents(i) : nullptr;
}

// A one-element numeric or BOOL input as a JSON value: a bool for BOOL, an integer for the
// integer datatypes (exact), a double for FP32/FP64.
absl::StatusOr<json> Scalar(const inference::ModelInferRequest& in, int i) {
  const Tensor& t = in.inputs(i);
  if (Elements(t) != 1) {
    return Bad(absl::StrCat("input '", t.name(), "' must have one element (shape [1] or [1, 1])"));
  }
  const std::string& dt = t.datatype();
  const std::string* raw = Raw(in, i);
  auto raw_as = [&](auto tag) -> absl::StatusOr<json> {
    using T = decltype(tag);
    if (raw->size() != sizeof(T)) {
      return Bad(absl::StrCat("input '", t.name(), "' (", dt, "): raw content has ", raw->size(),
                              " bytes, expected ", sizeof(T)));
    }
    T v;
    std::memcpy(&v, raw->data(), sizeof v);
    return json(v);
  };
  const auto& c = t.contents();
  if (dt == "INT32" || dt == "INT16" || dt == "INT8") {
    if (raw)
      return dt == "INT32"   ? raw_as(int32_t{})
             : dt == "INT16" ? raw_as(int16_t{})
                             : raw_as(int8_t{});
    if (c.int_contents_size() == 1) return json(c.int_contents(0));
  } else if (dt == "INT64") {
    if (raw) return raw_as(int64_t{});
    if (c.int64_contents_size() == 1) return json(c.int64_contents(0));
  } else if (dt == "UINT32" || dt == "UINT16" || dt == "UINT8") {
    if (raw)
      return dt == "UINT32"   ? raw_as(uint32_t{})
             : dt == "UINT16" ? raw_as(uint16_t{})
                              : raw_as(uint8_t{});
    if (c.uint_contents_size() == 1) return json(c.uint_contents(0));
  } else if (dt == "UINT64") {
    if (raw) return raw_as(uint64_t{});
    if (c.uint64_contents_size() == 1) return json(c.uint64_contents(0));
  } else if (dt == "FP32") {
    if (raw) {
      auto v = raw_as(float{});
      if (!v.ok()) return v;
      return json(v->get<double>());
    }
    if (c.fp32_contents_size() == 1) return json(static_cast<double>(c.fp32_contents(0)));
  } else if (dt == "FP64") {
    if (raw) return raw_as(double{});
    if (c.fp64_contents_size() == 1) return json(c.fp64_contents(0));
  } else if (dt == "BOOL") {
    if (raw) {
      auto v = raw_as(uint8_t{});
      if (!v.ok()) return v;
      return json(v->get<uint64_t>() != 0);
    }
    if (c.bool_contents_size() == 1) return json(c.bool_contents(0));
  } else {
    return Bad(absl::StrCat("input '", t.name(), "' has datatype ", dt,
                            "; it must be a number (INT32, INT64, UINT32, UINT64, FP32, FP64) "
                            "or BOOL"));
  }
  return Bad(absl::StrCat("input '", t.name(), "' (", dt, ") has no content for its element"));
}

// Every element of a BYTES input.
absl::StatusOr<std::vector<std::string>> Strings(const inference::ModelInferRequest& in, int i) {
  const Tensor& t = in.inputs(i);
  if (t.datatype() != "BYTES") {
    return Bad(
        absl::StrCat("input '", t.name(), "' has datatype ", t.datatype(), "; it must be BYTES"));
  }
  const int64_t n = Elements(t);
  if (n < 0) {
    return Bad(absl::StrCat("input '", t.name(), "' has a negative dimension or more than ",
                            kMaxElements, " elements"));
  }
  std::vector<std::string> out;
  if (const std::string* raw = Raw(in, i)) {
    // BYTES raw content: each element is a 4-byte little-endian length, then that many bytes.
    size_t at = 0;
    while (at < raw->size()) {
      uint32_t len = 0;
      if (raw->size() - at >= 4) std::memcpy(&len, raw->data() + at, 4);
      if (raw->size() - at < 4 || raw->size() - at - 4 < len ||
          static_cast<int64_t>(out.size()) >= n) {
        return Bad(absl::StrCat("input '", t.name(), "': raw BYTES content of ", raw->size(),
                                " bytes is not ", n, " length-prefixed element(s)"));
      }
      out.push_back(raw->substr(at + 4, len));
      at += 4 + size_t{len};
    }
  } else {
    out.assign(t.contents().bytes_contents().begin(), t.contents().bytes_contents().end());
  }
  if (static_cast<int64_t>(out.size()) != n) {
    return Bad(absl::StrCat("input '", t.name(), "' has ", out.size(),
                            " elements in its content for a shape of ", n));
  }
  return out;
}

// The one element of a BYTES input (text_input, sampling_parameters).
absl::StatusOr<std::string> OneString(const inference::ModelInferRequest& in, int i,
                                      const char* what) {
  const Tensor& t = in.inputs(i);
  if (t.datatype() != "BYTES") {
    return Bad(
        absl::StrCat("input '", t.name(), "' has datatype ", t.datatype(), "; it must be BYTES"));
  }
  if (Elements(t) != 1) {
    return Bad(absl::StrCat("input '", t.name(), "' has ", Elements(t),
                            " elements; it must have one element (shape [1] or [1, 1]): ", what));
  }
  if (!Raw(in, i) && t.contents().bytes_contents_size() != 1) {
    return Bad(absl::StrCat("input '", t.name(),
                            "' has no content (bytes_contents or raw_input_contents)"));
  }
  auto all = Strings(in, i);
  if (!all.ok()) return all.status();
  return std::move((*all)[0]);
}

std::string Show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 64 ? s.substr(0, 64) + "..." : s;
}

// Reads a value as an exact integer (a JSON integer, an integral number, or a string of one).
std::optional<json> AsInteger(const json& v) {
  if (v.is_number_integer()) return v;  // signed or unsigned
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9.2e18)
      return json(static_cast<int64_t>(d));
    return std::nullopt;
  }
  if (v.is_string()) {
    int64_t i;
    uint64_t u;
    const std::string s(absl::StripAsciiWhitespace(v.get<std::string>()));
    if (absl::SimpleAtoi(s, &i)) return json(i);
    if (absl::SimpleAtoi(s, &u)) return json(u);
  }
  return std::nullopt;
}

// `v` as an integer in [lo, hi], or nullopt.
std::optional<int64_t> IntIn(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) return std::nullopt;
  return i;
}

// What a request asked for, by key; each source overrides the ones read before it.
struct Settings {
  std::optional<json> value[kNumKeys];  // normalised by Kind: double, integer or bool
  std::string from[kNumKeys];           // "input 'top_k'", "sampling_parameters key 'top_k'", ...
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
};

// Records `v` for `k`, read as k's kind; `where` names it in errors.
absl::Status Set(Settings& s, const KeySpec& k, const json& v, const std::string& where) {
  json norm;
  switch (k.kind) {
    case Kind::kNumber: {
      double d = 0;
      bool ok = false;
      if (v.is_number()) {
        d = v.get<double>();
        ok = true;
      } else if (v.is_string()) {
        ok = absl::SimpleAtod(absl::StripAsciiWhitespace(v.get<std::string>()), &d);
      }
      if (!ok || !std::isfinite(d) || std::abs(d) > std::numeric_limits<float>::max()) {
        return Bad(absl::StrCat(where, " must be a finite number; got ", Show(v)));
      }
      norm = d;
      break;
    }
    case Kind::kInteger: {
      std::optional<json> i = AsInteger(v);
      if (!i) return Bad(absl::StrCat(where, " must be an integer; got ", Show(v)));
      norm = *i;
      break;
    }
    case Kind::kBool:
      if (v.is_boolean()) {
        norm = v;
      } else if (v.is_number()) {
        norm = v.get<double>() != 0;
      } else if (v.is_string() && absl::AsciiStrToLower(v.get<std::string>()) == "true") {
        norm = true;
      } else if (v.is_string() && absl::AsciiStrToLower(v.get<std::string>()) == "false") {
        norm = false;
      } else {
        return Bad(absl::StrCat(where, " must be a bool; got ", Show(v)));
      }
      break;
  }
  s.value[k.key] = std::move(norm);
  s.from[k.key] = where;
  return absl::OkStatus();
}

absl::Status AddStop(Settings& s, std::string stop, const std::string& where) {
  if (stop.empty() || stop.size() > kMaxStopBytes) {
    return Bad(absl::StrCat(where, " has a stop string of ", stop.size(), " bytes; allowed: 1 to ",
                            kMaxStopBytes));
  }
  if (s.stop.size() >= kMaxStops) {
    return Bad(
        absl::StrCat(where, ": more than ", kMaxStops, " stop strings in all (stop_words, stop)"));
  }
  s.stop.push_back(std::move(stop));
  return absl::OkStatus();
}

absl::Status AddStopTokenId(Settings& s, const json& v, const std::string& where) {
  std::optional<json> i = AsInteger(v);
  std::optional<int64_t> id = i ? IntIn(*i, 0, std::numeric_limits<int32_t>::max()) : std::nullopt;
  if (!id) return Bad(absl::StrCat(where, " must be a token id (an integer >= 0); got ", Show(v)));
  if (s.stop_token_ids.size() >= kMaxStopTokenIds) {
    return Bad(absl::StrCat(where, ": more than ", kMaxStopTokenIds,
                            " stop token ids in all (end_id, stop_token_ids)"));
  }
  s.stop_token_ids.push_back(static_cast<int32_t>(*id));
  return absl::OkStatus();
}

std::string JsonKeyList() {
  std::vector<std::string> names;
  for (const KeySpec& k : kKeys)
    if (k.json) names.push_back(k.name);
  for (const char* n : kJsonListKeys) names.push_back(n);
  return absl::StrJoin(names, ", ");
}

// The vLLM backend's sampling_parameters: a JSON object of SamplingParams keys.
absl::Status ReadSamplingParameters(Settings& s, const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Bad(
        "input 'sampling_parameters' must hold a JSON object (vLLM SamplingParams keys), e.g. "
        "{\"temperature\": 0, \"max_tokens\": 16}");
  }
  for (const auto& [key, v] : j.items()) {
    const std::string where = absl::StrCat("sampling_parameters key '", key, "'");
    const KeySpec* k = FindKey(key);
    if (k && k->json) {
      if (v.is_null()) continue;  // vLLM's default
      if (absl::Status st = Set(s, *k, v, where); !st.ok()) return st;
    } else if (key == "stop") {
      if (v.is_string()) {
        if (absl::Status st = AddStop(s, v.get<std::string>(), where); !st.ok()) return st;
      } else if (v.is_array()) {
        for (const json& e : v) {
          if (!e.is_string())
            return Bad(absl::StrCat(where, " must be a string or a list of strings"));
          if (absl::Status st = AddStop(s, e.get<std::string>(), where); !st.ok()) return st;
        }
      } else if (!v.is_null()) {
        return Bad(absl::StrCat(where, " must be a string or a list of strings"));
      }
    } else if (key == "stop_token_ids") {
      if (v.is_array()) {
        for (const json& e : v)
          if (absl::Status st = AddStopTokenId(s, e, where); !st.ok()) return st;
      } else if (!v.is_null()) {
        return Bad(absl::StrCat(where, " must be a list of token ids"));
      }
    } else if (key == "logprobs" || key == "prompt_logprobs") {
      if (!v.is_null()) {
        return Bad(absl::StrCat(where,
                                " is not supported here: no output tensor carries "
                                "log-probabilities (sparsed.v1's Generate returns them)"));
      }
    } else if (key == "n") {
      std::optional<json> n = v.is_null() ? json(1) : AsInteger(v);
      if (!n || !IntIn(*n, 1, 1)) {
        return Bad(absl::StrCat(where, " is ", Show(v), "; only 1 is supported (one sequence)"));
      }
    } else {
      return Bad(
          absl::StrCat(where, " is unknown or not supported here; supported: ", JsonKeyList()));
    }
  }
  return absl::OkStatus();
}

std::string InputList() {
  std::vector<std::string> names;
  for (const InputSpec& i : kInputs) names.push_back(i.name);
  return absl::StrJoin(names, ", ");
}

std::string ParamList() {
  std::vector<std::string> names;
  for (const KeySpec& k : kKeys) names.push_back(k.name);
  for (const char* n : kOtherParams) names.push_back(n);
  return absl::StrJoin(names, ", ");
}

// A request parameter as a JSON value.
std::optional<json> ParamValue(const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return json(p.bool_param());
    case inference::InferParameter::kInt64Param:
      return json(p.int64_param());
    case inference::InferParameter::kDoubleParam:
      return json(p.double_param());
    case inference::InferParameter::kUint64Param:
      return json(p.uint64_param());
    case inference::InferParameter::kStringParam:
      return json(p.string_param());
    default:
      return std::nullopt;
  }
}

// Reads one one-element BOOL-like input (stream, exclude_input_in_output).
absl::StatusOr<bool> BoolInput(const inference::ModelInferRequest& in, int i) {
  auto v = Scalar(in, i);
  if (!v.ok()) return v.status();
  if (v->is_boolean()) return v->get<bool>();
  return v->get<double>() != 0;
}

// Reads one one-element integer input in [lo, hi].
absl::StatusOr<int64_t> IntInput(const inference::ModelInferRequest& in, int i, int64_t lo,
                                 int64_t hi) {
  auto v = Scalar(in, i);
  if (!v.ok()) return v.status();
  std::optional<json> n = v->is_boolean() ? std::nullopt : AsInteger(*v);
  std::optional<int64_t> r = n ? IntIn(*n, lo, hi) : std::nullopt;
  if (!r) {
    return Bad(absl::StrCat("input '", in.inputs(i).name(), "' is ", Show(*v),
                            "; allowed: an integer in [", lo, ", ", hi, "]"));
  }
  return *r;
}

// Applies the settings to `out`, with the range checks no later stage makes by these names.
absl::Status Apply(const Settings& s, v1::GenerateRequest& out) {
  auto range = [&](Key k, const json& v, auto lo, auto hi) {
    return Bad(absl::StrCat(s.from[k], " is ", Show(v), "; allowed: [", lo, ", ", hi, "]"));
  };
  if (const auto& v = s.value[kMaxTokens]) {
    const std::optional<int64_t> n = IntIn(*v, 1, 1 << 20);
    if (!n) return range(kMaxTokens, *v, 1, 1 << 20);
    out.mutable_stopping()->set_max_new_tokens(static_cast<uint32_t>(*n));
  }
  auto* sampling = out.mutable_sampling();
  if (const auto& v = s.value[kTemperature]) sampling->set_temperature(v->get<float>());
  if (const auto& v = s.value[kTopP]) sampling->set_top_p(v->get<float>());
  if (const auto& v = s.value[kTopK]) {
    // vLLM: -1 (and 0) turn top-k off; sparsed's off is 0.
    const std::optional<int64_t> k = IntIn(*v, -1, std::numeric_limits<int32_t>::max());
    if (!k) return range(kTopK, *v, -1, std::numeric_limits<int32_t>::max());
    sampling->set_top_k(*k < 0 ? 0 : static_cast<int32_t>(*k));
  }
  if (const auto& v = s.value[kMinP]) sampling->set_min_p(v->get<float>());
  if (const auto& v = s.value[kRepetitionPenalty])
    sampling->set_repetition_penalty(v->get<float>());
  if (const auto& v = s.value[kPresencePenalty]) sampling->set_presence_penalty(v->get<float>());
  if (const auto& v = s.value[kFrequencyPenalty]) sampling->set_frequency_penalty(v->get<float>());
  // seed over random_seed (TensorRT-LLM's name).
  const Key seed_key = s.value[kSeed] ? kSeed : kRandomSeed;
  if (const auto& v = s.value[seed_key]) {
    if (!v->is_number_unsigned() && v->get<int64_t>() < 0) {
      return range(seed_key, *v, 0, std::numeric_limits<uint64_t>::max());
    }
    sampling->set_seed(v->get<uint64_t>());
  }
  if (const auto& v = s.value[kIgnoreEos]) out.mutable_stopping()->set_ignore_eos(v->get<bool>());
  for (const std::string& stop : s.stop) out.mutable_stopping()->add_stop(stop);
  for (int32_t id : s.stop_token_ids) out.mutable_stopping()->add_stop_token_ids(id);
  return absl::OkStatus();
}

void AddModelInput(const InputSpec& spec, inference::ModelInput* t) {
  t->set_name(spec.name);
  t->set_data_type(spec.type);
  t->add_dims(spec.dim);
  t->set_optional(std::strcmp(spec.name, kTextInput) != 0);
}

}  // namespace

absl::Status CheckModelName(const std::string& name, const std::string& served) {
  if (name.empty() || name == served) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat("unknown model '", name, "'; this server serves '", served, "'"));
}

absl::Status CheckModel(const std::string& name, const std::string& version,
                        const std::string& served) {
  if (absl::Status st = CheckModelName(name, served); !st.ok()) return st;
  if (version.empty() || version == "1") return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("unknown version '", version, "' of model '", served,
                                          "'; it has version 1 only"));
}

absl::StatusOr<OipRequest> ParseInferRequest(const inference::ModelInferRequest& in) {
  if (in.raw_input_contents_size() > 0 && in.raw_input_contents_size() != in.inputs_size()) {
    return Bad(absl::StrCat("raw_input_contents has ", in.raw_input_contents_size(),
                            " entries for ", in.inputs_size(), " inputs; give one per input"));
  }
  for (const auto& o : in.outputs()) {
    if (o.name() != kTextOutput) {
      return Bad(absl::StrCat("output '", o.name(), "' is not an output of this model; it has ",
                              kTextOutput));
    }
  }
  OipRequest r;
  v1::GenerateRequest& out = r.generate;
  out.set_add_bos(true);
  out.set_request_id(in.id());
  out.mutable_sampling()->set_temperature(1.0f);
  bool have_text = false;
  std::optional<bool> stream, exclude_input;
  std::optional<std::string> sampling_parameters;
  Settings s;
  std::set<std::string> seen;
  for (int i = 0; i < in.inputs_size(); ++i) {
    const std::string& name = in.inputs(i).name();
    if (!seen.insert(name).second) return Bad(absl::StrCat("input '", name, "' is given twice"));
    const std::string where = absl::StrCat("input '", name, "'");
    if (name == kTextInput) {
      auto text = OneString(in, i, "one prompt per request");
      if (!text.ok()) return text.status();
      out.set_prompt(*std::move(text));
      have_text = true;
    } else if (const KeySpec* k = FindKey(name); k && k->input) {
      auto v = Scalar(in, i);
      if (!v.ok()) return v.status();
      if (absl::Status st = Set(s, *k, *v, where); !st.ok()) return st;
    } else if (name == "sampling_parameters") {
      auto text = OneString(in, i, "a JSON object");
      if (!text.ok()) return text.status();
      sampling_parameters = *std::move(text);
    } else if (name == "stop_words") {
      auto words = Strings(in, i);
      if (!words.ok()) return words.status();
      for (std::string& w : *words) {
        if (w.empty()) continue;  // as TensorRT-LLM's preprocessing skips them
        if (absl::Status st = AddStop(s, std::move(w), where); !st.ok()) return st;
      }
    } else if (name == "bad_words") {
      auto words = Strings(in, i);
      if (!words.ok()) return words.status();
      for (const std::string& w : *words) {
        if (!w.empty()) {
          return Bad(absl::StrCat("input 'bad_words' (\"", w.substr(0, 64),
                                  "\") is not supported: this server bans no words in sampling"));
        }
      }
    } else if (name == "end_id") {
      auto id = IntInput(in, i, -1, std::numeric_limits<int32_t>::max());
      if (!id.ok()) return id.status();
      if (*id >= 0) {  // -1: none, TensorRT-LLM's default
        if (absl::Status st = AddStopTokenId(s, json(*id), where); !st.ok()) return st;
      }
    } else if (name == "pad_id") {
      auto id = IntInput(in, i, -1, std::numeric_limits<int32_t>::max());
      if (!id.ok()) return id.status();  // no effect: it pads TensorRT-LLM's batches
    } else if (name == "beam_width") {
      auto w = IntInput(in, i, 1, 1);
      if (!w.ok()) return Bad(absl::StrCat(w.status().message(), " (no beam search here)"));
    } else if (name == "stream") {
      auto b = BoolInput(in, i);
      if (!b.ok()) return b.status();
      stream = *b;
    } else if (name == "exclude_input_in_output") {
      auto b = BoolInput(in, i);
      if (!b.ok()) return b.status();
      exclude_input = *b;
    } else {
      return Bad(absl::StrCat("input '", name,
                              "' is not an input of this model; it takes: ", InputList()));
    }
  }
  if (!have_text) return Bad("input 'text_input' (BYTES, one element: the prompt) is missing");
  if (sampling_parameters) {
    if (absl::Status st = ReadSamplingParameters(s, *sampling_parameters); !st.ok()) return st;
  }
  for (const auto& [name, p] : in.parameters()) {
    const std::string where = absl::StrCat("parameter '", name, "'");
    const std::optional<json> v = ParamValue(p);
    if (!v) return Bad(absl::StrCat(where, " has no value"));
    if (const KeySpec* k = FindKey(name)) {
      if (absl::Status st = Set(s, *k, *v, where); !st.ok()) return st;
    } else if (name == "stop") {
      if (!v->is_string()) return Bad(absl::StrCat(where, " must be a string"));
      if (absl::Status st = AddStop(s, v->get<std::string>(), where); !st.ok()) return st;
    } else if (name == "priority") {
      std::optional<json> n = v->is_boolean() ? std::nullopt : AsInteger(*v);
      std::optional<int64_t> pr =
          n ? IntIn(*n, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max())
            : std::nullopt;
      if (!pr) return Bad(absl::StrCat(where, " must be a 32-bit integer; got ", Show(*v)));
      out.set_priority(static_cast<int32_t>(*pr));
    } else if (name == "cache_salt") {
      // The prefix-cache partition, as sparsed.v1's cache_salt.
      if (!v->is_string()) return Bad("parameter 'cache_salt' must be a string");
      out.set_cache_salt(v->get<std::string>());
    } else if (name == "triton_enable_empty_final_response") {
      if (!v->is_boolean()) return Bad(absl::StrCat(where, " must be a bool"));
    } else {
      return Bad(absl::StrCat(where, " is not one this server takes; it takes: ", ParamList()));
    }
  }
  if (absl::Status st = Apply(s, out); !st.ok()) return st;
  r.echo_prompt = exclude_input.has_value() && !*exclude_input;
  r.stream = stream.value_or(true);
  if (r.echo_prompt && stream.value_or(false)) {
    return Bad(
        "input 'exclude_input_in_output' = false is not allowed with input 'stream' = true (as "
        "the vLLM backend refuses it): a stream sends only the new text");
  }
  return r;
}

absl::StatusOr<v1::GenerateRequest> FromInferRequest(const inference::ModelInferRequest& in) {
  auto r = ParseInferRequest(in);
  if (!r.ok()) return r.status();
  return std::move(r->generate);
}

inference::ModelInferResponse TextResponse(const std::string& model, const std::string& id,
                                           const std::string& text, bool final) {
  inference::ModelInferResponse r;
  r.set_model_name(model);
  r.set_model_version("1");
  r.set_id(id);
  auto* t = r.add_outputs();
  t->set_name(kTextOutput);
  t->set_datatype("BYTES");
  t->add_shape(1);
  std::string raw(4, '\0');
  const uint32_t len = static_cast<uint32_t>(text.size());
  std::memcpy(raw.data(), &len, 4);
  raw += text;
  r.add_raw_output_contents(std::move(raw));
  (*r.mutable_parameters())["triton_final_response"].set_bool_param(final);
  return r;
}

void DescribeModel(const std::string& model, inference::ModelMetadataResponse* out) {
  out->set_name(model);
  out->add_versions("1");
  out->set_platform("sparsed");
  for (const InputSpec& spec : kInputs) {
    auto* t = out->add_inputs();
    t->set_name(spec.name);
    t->set_datatype(spec.datatype);
    t->add_shape(spec.dim);
  }
  auto* t = out->add_outputs();
  t->set_name(kTextOutput);
  t->set_datatype("BYTES");
  t->add_shape(1);
}

void DescribeModelConfig(const std::string& model, inference::ModelConfig* out) {
  out->set_name(model);
  out->set_platform("sparsed");
  out->set_backend("sparsed");
  out->set_max_batch_size(0);
  for (const InputSpec& spec : kInputs) AddModelInput(spec, out->add_input());
  auto* t = out->add_output();
  t->set_name(kTextOutput);
  t->set_data_type(inference::TYPE_STRING);
  t->add_dims(1);
  out->mutable_model_transaction_policy()->set_decoupled(true);
}

}  // namespace sparsed::server
