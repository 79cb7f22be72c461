// sparsity.json: round trip, every malformed field refused with the file and field named, files
// made for another model refused at engine load, and threshold mode's loading rules.
#include "engine/sparse/sparsity_profile.h"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/engine.h"
#include "nlohmann/json.hpp"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

SparsityProfile Sample() {
  SparsityProfile p;
  p.fingerprint = "fnv1a64:0123456789abcdef";
  p.num_layers = 2;
  p.intermediate_size = 64;
  p.cett = 0.2;
  p.layers = {{0.125, 0.31}, {0.5, 0.27}};
  p.perplexity = SparsityPerplexity{10.5, 10.6, 1.0};
  p.calibration_text = "heldout.txt";
  p.calibration_tokens = 4096;
  return p;
}

TEST(SparsityProfileTest, RoundTrips) {
  const SparsityProfile p = Sample();
  auto q = ParseSparsityProfile(SparsityProfileToJson(p), "sparsity.json");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->fingerprint, p.fingerprint);
  EXPECT_EQ(q->num_layers, 2);
  EXPECT_EQ(q->intermediate_size, 64);
  EXPECT_EQ(q->cett, 0.2);
  ASSERT_EQ(q->layers.size(), 2u);
  EXPECT_EQ(q->layers[1].epsilon, 0.5);
  EXPECT_EQ(q->layers[0].active_ratio, 0.31);
  ASSERT_TRUE(q->perplexity.has_value());
  EXPECT_EQ(q->perplexity->sparse, 10.6);
  EXPECT_EQ(*q->perplexity->target_increase_percent, 1.0);
  EXPECT_EQ(q->calibration_tokens, 4096);
  EXPECT_EQ(SparsityProfileToJson(*q), SparsityProfileToJson(p));
}

struct Corruption {
  const char* what;
  std::function<void(nlohmann::json&)> edit;
  const char* field;  // expected in the message
};

TEST(SparsityProfileTest, MalformedFilesNameTheField) {
  const std::vector<Corruption> cases = {
      {"wrong format", [](auto& j) { j["format"] = "other"; }, "'format'"},
      {"future version", [](auto& j) { j["version"] = 2; }, "'version'"},
      {"no fingerprint", [](auto& j) { j["model"].erase("fingerprint"); }, "'model.fingerprint'"},
      {"layers not int", [](auto& j) { j["model"]["num_layers"] = "2"; }, "'model.num_layers'"},
      {"zero layers", [](auto& j) { j["model"]["num_layers"] = 0; }, "'model.num_layers'"},
      {"mode", [](auto& j) { j["mode"] = "exact"; }, "'mode'"},
      {"cett > 1", [](auto& j) { j["cett"] = 1.5; }, "'cett'"},
      {"cett negative", [](auto& j) { j["cett"] = -0.1; }, "'cett'"},
      {"layer count", [](auto& j) { j["layers"].erase(1); }, "'layers'"},
      {"layers not array", [](auto& j) { j["layers"] = 3; }, "'layers'"},
      {"negative epsilon", [](auto& j) { j["layers"][1]["epsilon"] = -1; }, "'layers[1].epsilon'"},
      {"string epsilon", [](auto& j) { j["layers"][0]["epsilon"] = "x"; }, "'layers[0].epsilon'"},
      {"ratio > 1", [](auto& j) { j["layers"][0]["active_ratio"] = 2; },
       "'layers[0].active_ratio'"},
      {"perplexity type", [](auto& j) { j["perplexity"] = 1; }, "'perplexity'"},
      {"calibration tokens", [](auto& j) { j["calibration"]["tokens"] = -5; },
       "'calibration.tokens'"},
  };
  for (const Corruption& c : cases) {
    nlohmann::json j = nlohmann::json::parse(SparsityProfileToJson(Sample()));
    c.edit(j);
    auto r = ParseSparsityProfile(j.dump(), "/m/sparsity.json");
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(r.status().message().find("/m/sparsity.json"), std::string::npos) << c.what;
    EXPECT_NE(r.status().message().find(c.field), std::string::npos)
        << c.what << ": " << r.status().message();
  }
  for (const char* text : {"", "{", "[]", "null", "{\"format\": \"sparsed-sparsity\"}"}) {
    auto r = ParseSparsityProfile(text, "s.json");
    EXPECT_FALSE(r.ok()) << text;
  }
}

TEST(SparsityProfileTest, MismatchedModelIsRefused) {
  const SparsityProfile p = Sample();
  EXPECT_TRUE(CheckProfileMatchesModel(p, "s.json", p.fingerprint, 2, 64).ok());
  auto other = CheckProfileMatchesModel(p, "s.json", "fnv1a64:ffffffffffffffff", 2, 64);
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.message().find("another model"), std::string::npos);
  auto shape = CheckProfileMatchesModel(p, "s.json", p.fingerprint, 3, 64);
  EXPECT_EQ(shape.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(shape.message().find("3 of 64"), std::string::npos) << shape.message();
}

SyntheticModelSpec SiluSpec(uint64_t seed) {
  SyntheticModelSpec s;
  s.activation = "silu";
  s.seed = seed;
  s.tokenizer = false;
  return s;
}

absl::StatusOr<std::unique_ptr<Engine>> Load(const std::string& dir, const std::string& mode,
                                             const std::string& file = "") {
  EngineOptions o;
  o.model_dir = dir;
  o.sparsity_mode = mode;
  o.sparsity_file = file;
  o.kv_blocks = 16;
  o.load_tokenizer = false;
  o.backend.threads = 2;
  return Engine::Load(o);
}

TEST(SparsityProfileTest, EngineLoadsMatchingFileAndRefusesOthers) {
  auto a = testing::MakeModel(SiluSpec(1));
  auto b = testing::MakeModel(SiluSpec(2));
  // No file: threshold mode says what to run.
  auto none = Load(a->path(), "threshold");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("sparsed-calibrate"), std::string::npos);

  auto dense_a = Load(a->path(), "off");
  auto dense_b = Load(b->path(), "off");
  ASSERT_TRUE(dense_a.ok() && dense_b.ok());
  EXPECT_NE((*dense_a)->fingerprint(), (*dense_b)->fingerprint());
  const ModelConfig& c = (*dense_a)->config();
  SparsityProfile p;
  p.fingerprint = (*dense_a)->fingerprint();
  p.num_layers = static_cast<int>(c.num_layers);
  p.intermediate_size = static_cast<int>(c.intermediate_size);
  p.cett = 0.1;
  p.layers.assign(c.num_layers, SparsityLayer{0.01, 0.5});
  ASSERT_TRUE(WriteSparsityProfile(p, a->File("sparsity.json")).ok());

  auto ok = Load(a->path(), "threshold");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->sparsity_mode(), SparsityMode::kThreshold);
  ASSERT_TRUE((*ok)->sparsity_profile().has_value());
  EXPECT_EQ((*ok)->sparsity_profile()->cett, 0.1);

  // The same file given to the other model.
  auto wrong = Load(b->path(), "threshold", a->File("sparsity.json"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong.status().message().find(a->File("sparsity.json")), std::string::npos);

  // A corrupted file.
  {
    std::ofstream(a->File("sparsity.json")) << "{\"format\": \"sparsed-sparsity\", \"version\": 1";
  }
  auto corrupt = Load(a->path(), "threshold");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sparsed
