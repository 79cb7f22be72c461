#include "engine/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

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

}  // namespace
}  // namespace sparsed
