// Open Inference Protocol requests to the daemon's (server/oip_convert.cc): the inputs Triton's
// vLLM and TensorRT-LLM backends take (sampling_parameters JSON, stop_words, bad_words, end_id,
// stream, exclude_input_in_output, ...) mapped key by key, the precedence of parameters over
// sampling_parameters over inputs, contents and raw_input_contents read alike, every unknown or
// unsupported tensor, key and parameter refused INVALID_ARGUMENT by name; the result carried
// through ToRequest on the bundled model; and ModelConfig agreeing with what the parser takes.
#include "server/oip_convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "server/convert.h"
#include "tests/bundled_engine_fixture.h"

namespace sparsed::server {
namespace {

using Request = inference::ModelInferRequest;

// A ModelInferRequest built one input at a time, in contents (Raw() moves them all to
// raw_input_contents, as Triton's clients send them).
class Build {
 public:
  explicit Build(const std::string& prompt = "Hello") {
    if (!prompt.empty()) Bytes("text_input", {prompt});
  }
  Build& Bytes(const std::string& name, const std::vector<std::string>& v) {
    auto* t = Add(name, "BYTES", static_cast<int64_t>(v.size()));
    for (const std::string& s : v) t->mutable_contents()->add_bytes_contents(s);
    return *this;
  }
  Build& Int32(const std::string& name, int32_t v) {
    Add(name, "INT32", 1)->mutable_contents()->add_int_contents(v);
    return *this;
  }
  Build& Int64(const std::string& name, int64_t v) {
    Add(name, "INT64", 1)->mutable_contents()->add_int64_contents(v);
    return *this;
  }
  Build& Uint64(const std::string& name, uint64_t v) {
    Add(name, "UINT64", 1)->mutable_contents()->add_uint64_contents(v);
    return *this;
  }
  Build& Fp32(const std::string& name, float v) {
    Add(name, "FP32", 1)->mutable_contents()->add_fp32_contents(v);
    return *this;
  }
  Build& Bool(const std::string& name, bool v) {
    Add(name, "BOOL", 1)->mutable_contents()->add_bool_contents(v);
    return *this;
  }
  Build& Param(const std::string& name, double v) {
    (*r_.mutable_parameters())[name].set_double_param(v);
    return *this;
  }
  Build& IntParam(const std::string& name, int64_t v) {
    (*r_.mutable_parameters())[name].set_int64_param(v);
    return *this;
  }
  Build& StringParam(const std::string& name, const std::string& v) {
    (*r_.mutable_parameters())[name].set_string_param(v);
    return *this;
  }
  Build& Output(const std::string& name) {
    r_.add_outputs()->set_name(name);
    return *this;
  }
  // Every input's contents as raw_input_contents.
  Build& Raw() {
    for (auto& t : *r_.mutable_inputs()) {
      const auto& c = t.contents();
      std::string raw;
      auto put = [&raw](const auto& v) { raw.append(reinterpret_cast<const char*>(&v), sizeof v); };
      for (const std::string& s : c.bytes_contents()) {
        put(static_cast<uint32_t>(s.size()));
        raw += s;
      }
      for (int32_t v : c.int_contents()) put(v);
      for (int64_t v : c.int64_contents()) put(v);
      for (uint64_t v : c.uint64_contents()) put(v);
      for (float v : c.fp32_contents()) put(v);
      for (bool v : c.bool_contents()) put(static_cast<uint8_t>(v));
      t.clear_contents();
      r_.add_raw_input_contents(std::move(raw));
    }
    return *this;
  }
  const Request& get() const { return r_; }

 private:
  Request::InferInputTensor* Add(const std::string& name, const char* dt, int64_t n) {
    auto* t = r_.add_inputs();
    t->set_name(name);
    t->set_datatype(dt);
    t->add_shape(n);
    return t;
  }
  Request r_;
};

class OipConvertTest : public testing::BundledEngineTest {
 protected:
  static OipRequest Parse(const Build& b) {
    auto r = ParseInferRequest(b.get());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : OipRequest{};
  }
  static void ExpectInvalid(const Build& b, const std::string& needle) {
    testing::ExpectInvalidNaming(ParseInferRequest(b.get()).status(), needle);
  }
};

TEST_F(OipConvertTest, DefaultsAndScalarInputsInContentsAndRaw) {
  OipRequest plain = Parse(Build("Once"));
  EXPECT_EQ(plain.generate.prompt(), "Once");
  EXPECT_TRUE(plain.generate.add_bos());
  EXPECT_FLOAT_EQ(plain.generate.sampling().temperature(), 1.0f);
  EXPECT_EQ(plain.generate.stopping().max_new_tokens(), 0u);  // ToRequest's default (16)
  EXPECT_FALSE(plain.echo_prompt);
  EXPECT_TRUE(plain.stream);

  for (bool raw : {false, true}) {
    SCOPED_TRACE(raw ? "raw_input_contents" : "contents");
    Build b;
    b.Int64("max_tokens", 7)
        .Fp32("temperature", 0.5f)
        .Fp32("top_p", 0.9f)
        .Int32("top_k", -1)
        .Fp32("repetition_penalty", 1.25f)
        .Fp32("presence_penalty", 0.5f)
        .Fp32("frequency_penalty", -0.5f)
        .Uint64("seed", (uint64_t{1} << 63) + 5)
        .Bool("ignore_eos", true)
        .Bool("stream", false)
        .Bool("exclude_input_in_output", false)
        .Bytes("stop_words", {"\n\n", "", "The end"})
        .Bytes("bad_words", {""})
        .Int32("end_id", 2)
        .Int32("pad_id", 0)
        .Int32("beam_width", 1);
    if (raw) b.Raw();
    OipRequest r = Parse(b);
    const auto& s = r.generate.sampling();
    const auto& p = r.generate.stopping();
    EXPECT_EQ(p.max_new_tokens(), 7u);
    EXPECT_FLOAT_EQ(s.temperature(), 0.5f);
    EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
    EXPECT_EQ(s.top_k(), 0);  // -1: off
    EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.25f);
    EXPECT_FLOAT_EQ(s.presence_penalty(), 0.5f);
    EXPECT_FLOAT_EQ(s.frequency_penalty(), -0.5f);
    EXPECT_EQ(s.seed(), (uint64_t{1} << 63) + 5);  // exact, not through a double
    EXPECT_TRUE(p.ignore_eos());
    EXPECT_EQ(std::vector<std::string>(p.stop().begin(), p.stop().end()),
              (std::vector<std::string>{"\n\n", "The end"}));  // empty words skipped
    EXPECT_EQ(std::vector<int32_t>(p.stop_token_ids().begin(), p.stop_token_ids().end()),
              (std::vector<int32_t>{2}));
    EXPECT_TRUE(r.echo_prompt);
    EXPECT_FALSE(r.stream);
  }
  // random_seed is TensorRT-LLM's name for seed; seed wins when both are given; end_id -1: none.
  EXPECT_EQ(Parse(Build().Uint64("random_seed", 9)).generate.sampling().seed(), 9u);
  EXPECT_EQ(Parse(Build().Uint64("random_seed", 9).Uint64("seed", 4)).generate.sampling().seed(),
            4u);
  EXPECT_EQ(Parse(Build().Int32("end_id", -1)).generate.stopping().stop_token_ids_size(), 0);
}

TEST_F(OipConvertTest, SamplingParametersMappedKeyByKey) {
  OipRequest r = Parse(Build().Bytes(
      "sampling_parameters",
      {R"({"temperature": 0, "top_p": 0.8, "top_k": 12, "min_p": 0.05, "max_tokens": 5,
           "seed": 18446744073709551615, "stop": ["<|x|>", "\n"], "stop_token_ids": [3, 4],
           "presence_penalty": 0.25, "frequency_penalty": 0.125, "repetition_penalty": 1.5,
           "ignore_eos": true, "n": 1, "logprobs": null})"}));
  const auto& s = r.generate.sampling();
  const auto& p = r.generate.stopping();
  EXPECT_FLOAT_EQ(s.temperature(), 0.0f);
  EXPECT_FLOAT_EQ(s.top_p(), 0.8f);
  EXPECT_EQ(s.top_k(), 12);
  EXPECT_FLOAT_EQ(s.min_p(), 0.05f);
  EXPECT_EQ(p.max_new_tokens(), 5u);
  EXPECT_EQ(s.seed(), 18446744073709551615u);
  EXPECT_EQ(std::vector<std::string>(p.stop().begin(), p.stop().end()),
            (std::vector<std::string>{"<|x|>", "\n"}));
  EXPECT_EQ(std::vector<int32_t>(p.stop_token_ids().begin(), p.stop_token_ids().end()),
            (std::vector<int32_t>{3, 4}));
  EXPECT_FLOAT_EQ(s.presence_penalty(), 0.25f);
  EXPECT_FLOAT_EQ(s.frequency_penalty(), 0.125f);
  EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.5f);
  EXPECT_TRUE(p.ignore_eos());

  // As the vLLM backend's examples send them: numbers and bools as strings; a single stop string.
  r = Parse(Build().Bytes("sampling_parameters", {R"({"temperature": "0.1", "top_p": "0.95",
      "max_tokens": "100", "ignore_eos": "false", "stop": "END"})"}));
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 0.1f);
  EXPECT_FLOAT_EQ(r.generate.sampling().top_p(), 0.95f);
  EXPECT_EQ(r.generate.stopping().max_new_tokens(), 100u);
  EXPECT_FALSE(r.generate.stopping().ignore_eos());
  EXPECT_EQ(r.generate.stopping().stop(0), "END");
  // null is the key's default; an integral float is an integer.
  r = Parse(Build().Bytes("sampling_parameters", {R"({"max_tokens": null, "top_k": 3.0})"}));
  EXPECT_EQ(r.generate.stopping().max_new_tokens(), 0u);
  EXPECT_EQ(r.generate.sampling().top_k(), 3);
}

TEST_F(OipConvertTest, ParametersOverSamplingParametersOverInputs) {
  Build b;
  b.Int32("max_tokens", 10)
      .Fp32("temperature", 0.7f)
      .Int32("top_k", 5)
      .Bytes("stop_words", {"A"})
      .Bytes("sampling_parameters",
             {R"({"max_tokens": 20, "temperature": 0.3, "stop": "B", "stop_token_ids": [7]})"})
      .IntParam("max_tokens", 30)
      .StringParam("stop", "C")
      .IntParam("priority", -2)
      .StringParam("cache_salt", "tenant")
      .Int32("end_id", 8);
  OipRequest r = Parse(b);
  EXPECT_EQ(r.generate.stopping().max_new_tokens(), 30u);      // parameter
  EXPECT_FLOAT_EQ(r.generate.sampling().temperature(), 0.3f);  // sampling_parameters
  EXPECT_EQ(r.generate.sampling().top_k(), 5);                 // input
  EXPECT_EQ(r.generate.stopping().stop_size(), 3);             // A, B, C: all kept
  EXPECT_EQ(r.generate.stopping().stop_token_ids_size(), 2);   // end_id, stop_token_ids
  EXPECT_EQ(r.generate.priority(), -2);
  EXPECT_EQ(r.generate.cache_salt(), "tenant");
  // Parameters as Triton's client sends them: a float, an unsigned priority, the stream flag.
  Build c;
  c.Param("temperature", 0.0);
  c.Output("text_output").Param("top_p", 0.5);
  inference::ModelInferRequest req = c.get();
  (*req.mutable_parameters())["priority"].set_uint64_param(3);
  (*req.mutable_parameters())["triton_enable_empty_final_response"].set_bool_param(true);
  auto parsed = ParseInferRequest(req);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->generate.priority(), 3);
  EXPECT_FLOAT_EQ(parsed->generate.sampling().top_p(), 0.5f);
}

TEST_F(OipConvertTest, EveryUnknownOrUnsupportedNameRefused) {
  const std::string big(300, 'x');
  const struct {
    const char* what;
    Build request;
    const char* needle;
  } cases[] = {
      {"no prompt", Build("").Int32("max_tokens", 4), "text_input"},
      {"prompt as INT32", Build("").Int32("text_input", 3), "BYTES"},
      {"two prompts", Build("").Bytes("text_input", {"a", "b"}), "one element"},
      {"unknown input", Build().Int32("num_beams", 1), "input 'num_beams'"},
      {"vLLM's return_logprobs", Build().Bool("return_logprobs", true), "return_logprobs"},
      {"input twice", Build().Int32("max_tokens", 1).Int32("max_tokens", 2), "given twice"},
      {"unknown output", Build().Output("output_log_probs"), "output 'output_log_probs'"},
      {"max_tokens 0", Build().Int32("max_tokens", 0), "max_tokens"},
      {"max_tokens as BYTES", Build().Bytes("max_tokens", {"4"}), "max_tokens"},
      {"max_tokens 2^21", Build().Int64("max_tokens", 1 << 21), "max_tokens"},
      {"top_k -2", Build().Int32("top_k", -2), "top_k"},
      {"seed < 0", Build().Int64("seed", -1), "seed"},
      {"temperature NaN", Build().Fp32("temperature", std::nanf("")), "temperature"},
      {"bad_words", Build().Bytes("bad_words", {"", "damn"}), "bad_words"},
      {"beam_width 4", Build().Int32("beam_width", 4), "beam_width"},
      {"end_id -2", Build().Int32("end_id", -2), "end_id"},
      {"stop_words too long", Build().Bytes("stop_words", {big}), "stop_words"},
      {"17 stop strings", Build().Bytes("stop_words", std::vector<std::string>(17, "s")),
       "stop strings"},
      {"echo while streaming", Build().Bool("stream", true).Bool("exclude_input_in_output", false),
       "exclude_input_in_output"},
      {"sampling_parameters not JSON", Build().Bytes("sampling_parameters", {"{temp"}),
       "sampling_parameters"},
      {"sampling_parameters a list", Build().Bytes("sampling_parameters", {"[1]"}), "JSON object"},
      {"unknown key", Build().Bytes("sampling_parameters", {R"({"temprature": 0})"}),
       "'temprature'"},
      {"logprobs key", Build().Bytes("sampling_parameters", {R"({"logprobs": 2})"}), "'logprobs'"},
      {"lora_name key", Build().Bytes("sampling_parameters", {R"({"lora_name": "a"})"}),
       "'lora_name'"},
      {"n 2", Build().Bytes("sampling_parameters", {R"({"n": 2})"}), "'n'"},
      {"temperature text", Build().Bytes("sampling_parameters", {R"({"temperature": "hot"})"}),
       "'temperature'"},
      {"top_k 1.5", Build().Bytes("sampling_parameters", {R"({"top_k": 1.5})"}), "'top_k'"},
      {"ignore_eos maybe", Build().Bytes("sampling_parameters", {R"({"ignore_eos": "maybe"})"}),
       "'ignore_eos'"},
      {"stop a number", Build().Bytes("sampling_parameters", {R"({"stop": 5})"}), "'stop'"},
      {"stop_token_ids -1", Build().Bytes("sampling_parameters", {R"({"stop_token_ids": [-1]})"}),
       "'stop_token_ids'"},
      {"unknown parameter", Build().IntParam("sequence_id", 5), "parameter 'sequence_id'"},
      {"cache_salt a number", Build().IntParam("cache_salt", 5), "cache_salt"},
      {"priority 2^40", Build().IntParam("priority", int64_t{1} << 40), "priority"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ExpectInvalid(c.request, c.needle);
  }
  // Raw content that is not length-prefixed elements.
  Build raw;
  raw.Raw();
  Request r = raw.get();
  r.mutable_raw_input_contents(0)->resize(2);
  auto bad = ParseInferRequest(r);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("text_input"), std::string::npos) << bad.status();
}

TEST_F(OipConvertTest, CarriedThroughToRequest) {
  OipRequest r = Parse(
      Build("In the beginning")
          .Bytes("sampling_parameters", {R"({"max_tokens": 5, "temperature": 0, "stop": "God"})"})
          .Int32("end_id", 2));
  auto req = ToRequest(r.generate, engine_->Info());
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->stopping.max_new_tokens, 5);
  EXPECT_EQ(req->sampling.temperature, 0.0f);
  EXPECT_EQ(req->stopping.stop, (std::vector<std::string>{"God"}));
  EXPECT_EQ(req->stopping.stop_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(req->prompt[0], engine_->config().bos_token_id);
  // An end_id past the vocabulary is refused there, naming the stop token ids.
  r = Parse(Build().Int32("end_id", static_cast<int32_t>(engine_->config().vocab_size)));
  auto out = ToRequest(r.generate, engine_->Info());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("stop_token_ids"), std::string::npos) << out.status();
}

TEST_F(OipConvertTest, ModelConfigDescribesWhatTheParserTakes) {
  inference::ModelConfig config;
  DescribeModelConfig("m", &config);
  EXPECT_EQ(config.name(), "m");
  EXPECT_EQ(config.backend(), "sparsed");
  EXPECT_EQ(config.max_batch_size(), 0);
  EXPECT_TRUE(config.model_transaction_policy().decoupled());
  ASSERT_EQ(config.output_size(), 1);
  EXPECT_EQ(config.output(0).name(), kTextOutput);
  EXPECT_EQ(config.output(0).data_type(), inference::TYPE_STRING);
  inference::ModelMetadataResponse md;
  DescribeModel("m", &md);
  ASSERT_EQ(md.inputs_size(), config.input_size());
  // Every declared input, in its declared datatype, is taken.
  Build all("");
  for (int i = 0; i < config.input_size(); ++i) {
    const inference::ModelInput& in = config.input(i);
    SCOPED_TRACE(in.name());
    EXPECT_EQ(md.inputs(i).name(), in.name());
    EXPECT_EQ(in.optional(), in.name() != kTextInput);
    switch (in.data_type()) {
      case inference::TYPE_STRING:
        all.Bytes(in.name(), {in.name() == kTextInput              ? "Hi"
                              : in.name() == "sampling_parameters" ? "{}"
                                                                   : ""});
        break;
      case inference::TYPE_INT32:
        all.Int32(in.name(), 1);
        break;
      case inference::TYPE_UINT64:
        all.Uint64(in.name(), 1);
        break;
      case inference::TYPE_FP32:
        all.Fp32(in.name(), 1.0f);
        break;
      case inference::TYPE_BOOL:
        all.Bool(in.name(), true);
        break;
      default:
        ADD_FAILURE() << "datatype " << in.data_type();
    }
  }
  Parse(all);
  Parse(all.Raw());
  EXPECT_TRUE(CheckModel("m", "1", "m").ok());
  EXPECT_TRUE(CheckModel("", "", "m").ok());
  EXPECT_EQ(CheckModel("m", "2", "m").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CheckModel("x", "", "m").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sparsed::server
