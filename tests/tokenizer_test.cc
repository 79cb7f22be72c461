#include "engine/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

TEST(Tokenizer, RoundTripsThroughTheLibrary) {
  SyntheticModelSpec s;
  auto dir = testing::MakeModel(s);
  auto tok = Tokenizer::Load(dir->File("tokenizer.model"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓";
  auto ids = (*tok)->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 3u);
  EXPECT_LT(ids->size(), text.size());  // merges happened
  auto back = (*tok)->Decode(*ids);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, text);  // byte fallback keeps every character
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  EXPECT_GT((*tok)->vocab_size(), 256);
  // Ids beyond the tokenizer's pieces decode to nothing instead of failing.
  auto odd = (*tok)->Decode({(*tok)->vocab_size() + 5});
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(*odd, "");
}

// A continuation decoded after its context keeps the space before its first word; the pieces
// decoded alone lose it; an empty context is plain decoding.
TEST(Tokenizer, DecodeAfterKeepsTheContinuationsLeadingSpace) {
  auto dir = testing::MakeModel(SyntheticModelSpec{});
  auto tok = Tokenizer::Load(dir->File("tokenizer.model"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode("The quick brown fox");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 2u);
  const std::vector<int32_t> first = {ids->front()};
  const std::vector<int32_t> rest(ids->begin() + 1, ids->end());
  auto after = (*tok)->DecodeAfter(first, rest);
  auto alone = (*tok)->Decode(rest);
  auto head = (*tok)->Decode(first);
  ASSERT_TRUE(after.ok() && alone.ok() && head.ok());
  EXPECT_EQ(*head + *after, "The quick brown fox");
  EXPECT_EQ(*after, " " + *alone);
  EXPECT_EQ(*(*tok)->DecodeAfter({}, rest), *alone);
}

// One call for many sequences gives each the text DecodeAfter gives it alone, in order; empty
// lists and ids outside the vocabulary included.
TEST(Tokenizer, DecodeAfterEachMatchesDecodeAfter) {
  auto dir = testing::MakeModel(SyntheticModelSpec{});
  auto tok = Tokenizer::Load(dir->File("tokenizer.model"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<std::vector<int32_t>> contexts, ids;
  for (const char* text : {"The quick brown fox", "a lazy dog ✓", "x", "Ünïcödé and more words"}) {
    auto e = *(*tok)->Encode(text);
    contexts.push_back({e.front()});
    ids.push_back(std::vector<int32_t>(e.begin() + 1, e.end()));
  }
  contexts.push_back({});
  ids.push_back({5, (*tok)->vocab_size() + 7, 9});
  contexts.push_back({3});
  ids.push_back({});
  std::vector<Tokenizer::DecodeAfterItem> items;
  for (size_t i = 0; i < ids.size(); ++i) items.push_back({&contexts[i], &ids[i]});
  auto each = (*tok)->DecodeAfterEach(items);
  ASSERT_TRUE(each.ok()) << each.status();
  ASSERT_EQ(each->size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto alone = (*tok)->DecodeAfter(contexts[i], ids[i]);
    ASSERT_TRUE(alone.ok() && (*each)[i].ok());
    EXPECT_EQ(*(*each)[i], *alone) << "item " << i;
  }
  EXPECT_TRUE((*tok)->DecodeAfterEach({})->empty());
}

TEST(Tokenizer, BadModelFileNamed) {
  testing::TempDir dir;
  std::ofstream(dir.File("tokenizer.model")) << "not a sentencepiece model";
  auto tok = Tokenizer::Load(dir.File("tokenizer.model"));
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()),
              ::testing::HasSubstr(dir.File("tokenizer.model")));
  auto missing = Tokenizer::Load(dir.File("none.model"));
  EXPECT_FALSE(missing.ok());
}

// Pids of the tokenizer processes serving `model` (their command line names it).
std::vector<int> ProcessesServing(const std::string& model) {
  std::vector<int> pids;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string cmd = ss.str();
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find("sparsed-tokenizer serve") != std::string::npos &&
        cmd.find(model) != std::string::npos)
      pids.push_back(std::stoi(name));
  }
  return pids;
}

// Calls from many threads at once get the answers serial calls get, on at most max_processes
// processes, and the processes end with the tokenizer.
TEST(Tokenizer, ConcurrentCallsShareABoundedPool) {
  auto dir = testing::MakeModel(SyntheticModelSpec{});
  const std::string model = dir->File("tokenizer.model");
  {
    auto tok = Tokenizer::Load(model, /*max_processes=*/3);
    ASSERT_TRUE(tok.ok()) << tok.status();
    std::vector<std::string> texts;
    for (int i = 0; i < 16; ++i)
      texts.push_back("sentence " + std::to_string(i) + " of the quick brown fox ✓");
    std::vector<std::vector<int32_t>> serial;
    for (const auto& t : texts) serial.push_back(*(*tok)->Encode(t));
    std::vector<std::vector<int32_t>> parallel(texts.size());
    std::vector<std::string> decoded(texts.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < texts.size(); ++i) {
      threads.emplace_back([&, i] {
        for (int rep = 0; rep < 20; ++rep) {
          parallel[i] = *(*tok)->Encode(texts[i]);
          decoded[i] = *(*tok)->Decode(parallel[i]);
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(parallel, serial);
    EXPECT_EQ(decoded, texts);
    EXPECT_GE((*tok)->processes_started(), 1);
    EXPECT_LE((*tok)->processes_started(), 3);
    EXPECT_LE(ProcessesServing(model).size(), 3u);
  }
  EXPECT_TRUE(ProcessesServing(model).empty()) << "tokenizer processes outlive their tokenizer";
}

// A tokenizer process that dies fails the call it serves with INTERNAL (never the caller's
// process); the next call runs on a new one.
TEST(Tokenizer, ADeadProcessFailsOneCallAndIsReplaced) {
  auto dir = testing::MakeModel(SyntheticModelSpec{});
  const std::string model = dir->File("tokenizer.model");
  auto tok = Tokenizer::Load(model, /*max_processes=*/1);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto before = (*tok)->Encode("The quick brown fox");
  ASSERT_TRUE(before.ok());
  const std::vector<int> pids = ProcessesServing(model);
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(kill(pids[0], SIGKILL), 0);
  const auto lost = (*tok)->Encode("The quick brown fox");
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(lost.status().message()), ::testing::HasSubstr("signal 9"));
  const auto after = (*tok)->Encode("The quick brown fox");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, *before);
  EXPECT_EQ((*tok)->processes_started(), 2);
  EXPECT_EQ(ProcessesServing(model).size(), 1u);
}

}  // namespace
}  // namespace sparsed
