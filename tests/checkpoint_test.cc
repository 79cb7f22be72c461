// Loading whole checkpoints, and every malformed-checkpoint case failing with the culprit named.
#include "engine/model/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/model/safetensors_writer.h"
#include "engine/model/weights.h"
#include "nlohmann/json.hpp"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

SyntheticModelSpec Tiny() {
  SyntheticModelSpec s;
  s.preset = "tiny";
  s.tokenizer = false;
  return s;
}

absl::Status LoadAll(const std::string& dir) {
  auto ck = Checkpoint::Open(dir);
  if (!ck.ok()) return ck.status();
  return LoadModelWeights(**ck, {}).status();
}

// Rewrites model.safetensors through `edit` on its tensor list.
void RewriteTensors(const std::string& dir,
                    const std::function<void(std::vector<TensorToWrite>*)>& edit) {
  auto f = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(f.ok());
  std::vector<TensorToWrite> ts;
  for (const auto& [name, e] : (*f)->entries()) {
    auto v = (*f)->Get(name);
    ASSERT_TRUE(v.ok());
    const auto* p = static_cast<const uint8_t*>(v->data);
    ts.push_back({name, v->dtype, e.shape, std::vector<uint8_t>(p, p + (e.end - e.begin))});
  }
  f->reset();
  edit(&ts);
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", ts).ok());
}

TEST(Checkpoint, LoadsSingleAndShardedAlike) {
  auto single = testing::MakeModel(Tiny());
  SyntheticModelSpec sharded_spec = Tiny();
  sharded_spec.shard_bytes = 64 << 10;
  auto sharded = testing::MakeModel(sharded_spec);
  // Shards named model-0000i-of-0000N for i = 1..N, N > 1, each named by the index's weight
  // map and nothing else in it; every tensor of the single file is in exactly one shard.
  std::set<std::string> shard_files;
  for (const auto& e : fs::directory_iterator(sharded->path())) {
    const std::string f = e.path().filename().string();
    if (f.rfind("model-", 0) == 0) shard_files.insert(f);
  }
  const int n = static_cast<int>(shard_files.size());
  ASSERT_GT(n, 1);
  for (int i = 1; i <= n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", i, n);
    EXPECT_EQ(shard_files.count(name), 1u) << name;
  }
  std::ifstream index_in(sharded->File("model.safetensors.index.json"));
  ASSERT_TRUE(index_in.good());
  const nlohmann::json index = nlohmann::json::parse(index_in);
  std::set<std::string> mapped;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    mapped.insert(file.get<std::string>());
  }
  EXPECT_EQ(mapped, shard_files);
  auto a = Checkpoint::Open(single->path());
  auto b = Checkpoint::Open(sharded->path());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->TensorNames(), (*b)->TensorNames());
  EXPECT_EQ(index["weight_map"].size(), (*a)->TensorNames().size());
  auto wa = LoadModelWeights(**a, {});
  auto wb = LoadModelWeights(**b, {});
  ASSERT_TRUE(wa.ok() && wb.ok());
  const Matrix& ma = wa->layers[1].down_t;
  const Matrix& mb = wb->layers[1].down_t;
  ASSERT_EQ(ma.bytes(), mb.bytes());
  EXPECT_EQ(0, std::memcmp(ma.data, mb.data, ma.bytes()));
  EXPECT_EQ(ma.rows, 256);  // transposed: [F × d]
}

TEST(Checkpoint, DownProjectionIsTransposed) {
  auto dir = testing::MakeModel(Tiny());
  auto ck = Checkpoint::Open(dir->path());
  ASSERT_TRUE(ck.ok());
  auto w = LoadModelWeights(**ck, {});
  ASSERT_TRUE(w.ok());
  auto down = (*ck)->Get("model.layers.0.mlp.down_proj.weight");
  ASSERT_TRUE(down.ok());
  const Matrix& t = w->layers[0].down_t;
  for (int64_t i : {0, 5, 255}) {
    for (int64_t c : {0, 3, 63}) {
      EXPECT_EQ(LoadAsF32(t.Row(i), t.dtype, c), LoadAsF32(down->data, down->dtype, c * 256 + i));
    }
  }
}

TEST(Checkpoint, TruncatedFileNamesFile) {
  auto dir = testing::MakeModel(Tiny());
  const std::string path = dir->File("model.safetensors");
  fs::resize_file(path, fs::file_size(path) - 1000);
  const absl::Status s = LoadAll(dir->path());
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr(path), HasSubstr("outside the data section")));
}

TEST(Checkpoint, BadHeaderJsonNamesFile) {
  auto dir = testing::MakeModel(Tiny());
  const std::string path = dir->File("model.safetensors");
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekp(9);
  io.write("@@@@", 4);
  io.close();
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()),
              AllOf(HasSubstr(path), HasSubstr("JSON")));
}

TEST(Checkpoint, MissingTensorNamed) {
  auto dir = testing::MakeModel(Tiny());
  RewriteTensors(dir->path(), [](std::vector<TensorToWrite>* ts) {
    std::erase_if(
        *ts, [](const TensorToWrite& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  });
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()),
              AllOf(HasSubstr("missing tensor"), HasSubstr("model.layers.1.mlp.up_proj.weight")));
}

TEST(Checkpoint, WrongShapeNamed) {
  auto dir = testing::MakeModel(Tiny());
  RewriteTensors(dir->path(), [](std::vector<TensorToWrite>* ts) {
    for (auto& t : *ts) {
      if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {t.shape[1], t.shape[0]};
    }
  });
  EXPECT_THAT(
      std::string(LoadAll(dir->path()).message()),
      AllOf(HasSubstr("model.safetensors"), HasSubstr("model.layers.0.self_attn.k_proj.weight"),
            HasSubstr("expected [32, 64]")));
}

TEST(Checkpoint, WrongDtypeNamed) {
  auto dir = testing::MakeModel(Tiny());
  RewriteTensors(dir->path(), [](std::vector<TensorToWrite>* ts) {
    for (auto& t : *ts) {
      if (t.name == "model.norm.weight") {
        t.dtype = DType::kF32;  // same bytes as 32 bf16 values → shape no longer matches
      }
    }
  });
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()), HasSubstr("model.norm.weight"));
}

TEST(Checkpoint, UnknownActivationNamed) {
  auto dir = testing::MakeModel(Tiny());
  std::ifstream in(dir->File("config.json"));
  auto j = nlohmann::json::parse(in);
  in.close();
  j["hidden_act"] = "squareplus";
  std::ofstream(dir->File("config.json")) << j.dump();
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()),
              AllOf(HasSubstr("config.json"), HasSubstr("'hidden_act'"), HasSubstr("squareplus")));
}

TEST(Checkpoint, IndexNamingMissingShard) {
  SyntheticModelSpec s = Tiny();
  s.shard_bytes = 64 << 10;
  auto dir = testing::MakeModel(s);
  std::ifstream in(dir->File("model.safetensors.index.json"));
  auto j = nlohmann::json::parse(in);
  in.close();
  j["weight_map"]["model.norm.weight"] = "model-00099-of-00099.safetensors";
  std::ofstream(dir->File("model.safetensors.index.json")) << j.dump();
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()),
              HasSubstr("model-00099-of-00099.safetensors"));
  j["weight_map"]["model.norm.weight"] = "../etc/passwd";
  std::ofstream(dir->File("model.safetensors.index.json")) << j.dump();
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()),
              HasSubstr("not a file in the model directory"));
}

TEST(Checkpoint, MissingDirectoryAndWeights) {
  EXPECT_THAT(std::string(LoadAll("/nonexistent/model").message()),
              HasSubstr("/nonexistent/model/config.json"));
  auto dir = testing::MakeModel(Tiny());
  fs::remove(dir->File("model.safetensors"));
  EXPECT_THAT(std::string(LoadAll(dir->path()).message()), HasSubstr("neither model.safetensors"));
}

}  // namespace
}  // namespace sparsed
