#include "server/oip_convert.h"

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"

namespace sparsed::server {
namespace {

using Tensor = inference::ModelInferRequest::InferInputTensor;

int64_t Elements(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape()) n *= d;
  return n;
}

// The raw bytes of input `i`, when the request uses raw_input_contents.
const std::string* Raw(const inference::ModelInferRequest& in, int i) {
  return i < in.raw_input_contents_size() ? &in.raw_input_contents(i) : nullptr;
}

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(what); }

// A one-element numeric input as a double: from contents or raw bytes, by datatype.
absl::StatusOr<double> Scalar(const inference::ModelInferRequest& in, int i) {
  const Tensor& t = in.inputs(i);
  if (Elements(t) != 1) {
    return Bad(absl::StrCat("input '", t.name(), "' must have one element (shape [1] or [1, 1])"));
  }
  const std::string& dt = t.datatype();
  const std::string* raw = Raw(in, i);
  auto raw_as = [&](size_t size, auto tag) -> absl::StatusOr<double> {
    using T = decltype(tag);
    if (raw->size() != size) {
      return Bad(absl::StrCat("input '", t.name(), "' (", dt, "): raw content has ", raw->size(),
                              " bytes, expected ", size));
    }
    T v;
    std::memcpy(&v, raw->data(), sizeof v);
    return static_cast<double>(v);
  };
  const auto& c = t.contents();
  if (dt == "INT32" || dt == "INT16" || dt == "INT8") {
    if (raw)
      return dt == "INT32"   ? raw_as(4, int32_t{})
             : dt == "INT16" ? raw_as(2, int16_t{})
                             : raw_as(1, int8_t{});
    if (c.int_contents_size() == 1) return c.int_contents(0);
  } else if (dt == "INT64") {
    if (raw) return raw_as(8, int64_t{});
    if (c.int64_contents_size() == 1) return static_cast<double>(c.int64_contents(0));
  } else if (dt == "UINT32" || dt == "UINT16" || dt == "UINT8") {
    if (raw)
      return dt == "UINT32"   ? raw_as(4, uint32_t{})
             : dt == "UINT16" ? raw_as(2, uint16_t{})
                              : raw_as(1, uint8_t{});
    if (c.uint_contents_size() == 1) return c.uint_contents(0);
  } else if (dt == "UINT64") {
    if (raw) return raw_as(8, uint64_t{});
    if (c.uint64_contents_size() == 1) return static_cast<double>(c.uint64_contents(0));
  } else if (dt == "FP32") {
    if (raw) return raw_as(4, float{});
    if (c.fp32_contents_size() == 1) return c.fp32_contents(0);
  } else if (dt == "FP64") {
    if (raw) return raw_as(8, double{});
    if (c.fp64_contents_size() == 1) return c.fp64_contents(0);
  } else if (dt == "BOOL") {
    if (raw) return raw_as(1, uint8_t{});
    if (c.bool_contents_size() == 1) return c.bool_contents(0) ? 1.0 : 0.0;
  } else {
    return Bad(absl::StrCat("input '", t.name(), "' has datatype ", dt,
                            "; it must be a number (INT32, INT64, UINT32, UINT64, FP32, FP64) "
                            "or BOOL"));
  }
  return Bad(absl::StrCat("input '", t.name(), "' (", dt, ") has no content for its element"));
}

// The one BYTES element of text_input.
absl::StatusOr<std::string> Text(const inference::ModelInferRequest& in, int i) {
  const Tensor& t = in.inputs(i);
  if (t.datatype() != "BYTES") {
    return Bad(
        absl::StrCat("input 'text_input' has datatype ", t.datatype(), "; it must be BYTES"));
  }
  if (Elements(t) != 1) {
    return Bad(
        absl::StrCat("input 'text_input' has ", Elements(t),
                     " elements; it must have one element (shape [1] or [1, 1]): one prompt per "
                     "request"));
  }
  if (const std::string* raw = Raw(in, i)) {
    // BYTES raw content: each element is a 4-byte little-endian length, then that many bytes.
    uint32_t len = 0;
    if (raw->size() < 4 || (std::memcpy(&len, raw->data(), 4), raw->size() != 4 + size_t{len})) {
      return Bad(absl::StrCat("input 'text_input': raw BYTES content of ", raw->size(),
                              " bytes is not one length-prefixed element"));
    }
    return raw->substr(4);
  }
  if (t.contents().bytes_contents_size() != 1) {
    return Bad("input 'text_input' has no content (bytes_contents or raw_input_contents)");
  }
  return t.contents().bytes_contents(0);
}

std::optional<double> Param(const inference::ModelInferRequest& in, const std::string& name) {
  auto it = in.parameters().find(name);
  if (it == in.parameters().end()) return std::nullopt;
  const inference::InferParameter& p = it->second;
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return p.bool_param() ? 1.0 : 0.0;
    case inference::InferParameter::kInt64Param:
      return static_cast<double>(p.int64_param());
    case inference::InferParameter::kDoubleParam:
      return p.double_param();
    case inference::InferParameter::kUint64Param:
      return static_cast<double>(p.uint64_param());
    default:
      return std::nullopt;
  }
}

}  // namespace

absl::Status CheckModelName(const std::string& name, const std::string& served) {
  if (name.empty() || name == served) return absl::OkStatus();
  return absl::NotFoundError(
      absl::StrCat("unknown model '", name, "'; this server serves '", served, "'"));
}

absl::StatusOr<v1::GenerateRequest> FromInferRequest(const inference::ModelInferRequest& in) {
  if (in.raw_input_contents_size() > 0 && in.raw_input_contents_size() != in.inputs_size()) {
    return Bad(absl::StrCat("raw_input_contents has ", in.raw_input_contents_size(),
                            " entries for ", in.inputs_size(), " inputs; give one per input"));
  }
  v1::GenerateRequest out;
  out.set_add_bos(true);
  out.set_request_id(in.id());
  out.mutable_sampling()->set_temperature(1.0f);
  bool have_text = false;
  std::optional<double> values[7];
  static const char* const kNames[7] = {"max_tokens", "temperature", "top_p",     "top_k",
                                        "seed",       "random_seed", "ignore_eos"};
  for (int i = 0; i < in.inputs_size(); ++i) {
    const std::string& name = in.inputs(i).name();
    if (name == kTextInput) {
      auto text = Text(in, i);
      if (!text.ok()) return text.status();
      out.set_prompt(*std::move(text));
      have_text = true;
      continue;
    }
    int k = 0;
    while (k < 7 && name != kNames[k]) ++k;
    if (k == 7) {
      continue;  // inputs other backends define (stream, bad_words, ...) are not ours to refuse
    }
    auto v = Scalar(in, i);
    if (!v.ok()) return v.status();
    values[k] = *v;
  }
  if (!have_text) return Bad("input 'text_input' (BYTES, one element: the prompt) is missing");
  for (int k = 0; k < 7; ++k) {
    if (auto p = Param(in, kNames[k])) values[k] = p;
  }
  if (values[0]) {
    if (*values[0] < 1 || *values[0] > 1e9) {
      return Bad(absl::StrCat("max_tokens = ", *values[0], " must be at least 1"));
    }
    out.mutable_stopping()->set_max_new_tokens(static_cast<uint32_t>(*values[0]));
  }
  if (values[1]) out.mutable_sampling()->set_temperature(static_cast<float>(*values[1]));
  if (values[2]) out.mutable_sampling()->set_top_p(static_cast<float>(*values[2]));
  if (values[3]) out.mutable_sampling()->set_top_k(static_cast<int32_t>(*values[3]));
  const std::optional<double> seed = values[4] ? values[4] : values[5];
  if (seed) out.mutable_sampling()->set_seed(static_cast<uint64_t>(*seed));
  if (values[6]) out.mutable_stopping()->set_ignore_eos(*values[6] != 0);
  if (auto p = Param(in, "priority")) out.set_priority(static_cast<int32_t>(*p));
  // The prefix-cache partition, as sparsed.v1's cache_salt (a string parameter).
  if (auto it = in.parameters().find("cache_salt"); it != in.parameters().end()) {
    if (it->second.parameter_choice_case() != inference::InferParameter::kStringParam)
      return Bad("parameter 'cache_salt' must be a string");
    out.set_cache_salt(it->second.string_param());
  }
  return out;
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
  auto add = [](auto* list, const char* name, const char* dt) {
    auto* t = list->Add();
    t->set_name(name);
    t->set_datatype(dt);
    t->add_shape(1);
  };
  add(out->mutable_inputs(), kTextInput, "BYTES");
  add(out->mutable_inputs(), "max_tokens", "INT32");
  add(out->mutable_inputs(), "temperature", "FP32");
  add(out->mutable_inputs(), "top_p", "FP32");
  add(out->mutable_inputs(), "top_k", "INT32");
  add(out->mutable_inputs(), "seed", "UINT64");
  add(out->mutable_inputs(), "ignore_eos", "BOOL");
  add(out->mutable_outputs(), kTextOutput, "BYTES");
}

}  // namespace sparsed::server
