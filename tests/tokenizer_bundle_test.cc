// The tokenizer zip of the gateway worker (server/tokenizer_bundle.cc), read back with
// libarchive's reader: the files it holds and their bytes, the SHA-256 of the archive, the same
// bytes for the same files, and a directory without tokenizer.json refused naming the tool.
#include "server/tokenizer_bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/escaping.h"

namespace sparsed::server {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> Unzip(const std::string& zip) {
  std::map<std::string, std::string> out;
  archive* a = archive_read_new();
  archive_read_support_format_zip(a);
  EXPECT_EQ(archive_read_open_memory(a, zip.data(), zip.size()), ARCHIVE_OK);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string data;
    char buf[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) data.append(buf, n);
    out[archive_entry_pathname(e)] = data;
  }
  archive_read_free(a);
  return out;
}

void Write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

class TokenizerBundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tokenizer_bundle_test_" +
            std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(TokenizerBundleTest, HoldsTheTokenizerFilesAndTheirDigest) {
  Write(dir_ / "tokenizer.json", R"({"model": {"type": "BPE"}})");
  Write(dir_ / "tokenizer_config.json", R"({"chat_template": "{{ x }}"})");
  Write(dir_ / "config.json", R"({"eos_token_id": 2})");
  Write(dir_ / "tokenizer.model", "not for the gateway");
  Write(dir_ / "model.safetensors", "weights stay out");
  auto b = MakeTokenizerBundle(dir_.string());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->files,
            (std::vector<std::string>{"tokenizer.json", "tokenizer_config.json", "config.json"}));
  const auto files = Unzip(b->zip);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files.at("tokenizer.json"), R"({"model": {"type": "BPE"}})");
  EXPECT_EQ(files.at("config.json"), R"({"eos_token_id": 2})");
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(b->zip.data()), b->zip.size(), d);
  EXPECT_EQ(b->sha256, absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(d), 32)));
  EXPECT_EQ(b->sha256.size(), 64u);

  auto again = MakeTokenizerBundle(dir_.string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sha256, b->sha256);  // the same files make the same archive
}

TEST_F(TokenizerBundleTest, LargeFilesRoundTrip) {
  std::string big;
  for (int i = 0; i < 200000; ++i) big += std::to_string(i * 7919 % 10007) + ",";
  Write(dir_ / "tokenizer.json", big);
  auto b = MakeTokenizerBundle(dir_.string());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_LT(b->zip.size(), big.size());  // deflated
  EXPECT_EQ(Unzip(b->zip).at("tokenizer.json"), big);
}

TEST_F(TokenizerBundleTest, WithoutTokenizerJsonSaysHowToMakeIt) {
  Write(dir_ / "tokenizer.model", "spm");
  auto b = MakeTokenizerBundle(dir_.string());
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(b.status().message().find("tokenizer.json"), std::string::npos) << b.status();
  EXPECT_NE(b.status().message().find("tools/make_hf_tokenizer.py"), std::string::npos);
}

TEST(TokenizerBundleBundled, EveryBundledModelHasOne) {
  for (const char* m : {"sparsed-tiny", "sparsed-tiny-swiglu", "sparsed-tiny-prosparse"}) {
    auto b = MakeTokenizerBundle(std::string(SPARSED_SOURCE_DIR) + "/models/" + m);
    ASSERT_TRUE(b.ok()) << m << ": " << b.status();
    EXPECT_EQ(b->files.front(), "tokenizer.json") << m;
    EXPECT_EQ(Unzip(b->zip).count("tokenizer_config.json"), 1u) << m;
  }
}

}  // namespace
}  // namespace sparsed::server
