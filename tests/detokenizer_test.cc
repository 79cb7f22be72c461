// Incremental detokenization with the real SentencePiece tokenizer: UTF-8 safety, stop strings.
#include "scheduler/detokenizer.h"

#include <gtest/gtest.h>

#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

bool ValidUtf8(const std::string& s) {
  return Utf8CompletePrefix(s) == s.size() && s.find("\xEF\xBF\xBD") == std::string::npos;
}

class Detok : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SyntheticModelSpec s;
    dir_ = testing::MakeModel(s).release();
    tok_ = Tokenizer::Load(dir_->File("tokenizer.model"))->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static testing::TempDir* dir_;
  static Tokenizer* tok_;
};
testing::TempDir* Detok::dir_ = nullptr;
Tokenizer* Detok::tok_ = nullptr;

TEST(Utf8, CompletePrefix) {
  EXPECT_EQ(Utf8CompletePrefix("abc"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("a\xC3"), 1u);  // é cut after its lead byte
  EXPECT_EQ(Utf8CompletePrefix("a\xC3\xA9"), 3u);
  EXPECT_EQ(Utf8CompletePrefix("\xE2\x9C"), 0u);           // ✓ missing its last byte
  EXPECT_EQ(Utf8CompletePrefix("x\xF0\x9F\x98\x80"), 5u);  // 😀
  EXPECT_EQ(Utf8CompletePrefix(""), 0u);
}

TEST_F(Detok, StreamsUtf8SafeDeltasOneTokenAtATime) {
  const std::string text = "héllo wörld ✓ 日本語 😀 done";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer d(tok_, {});
  std::string streamed;
  for (int32_t id : *ids) {
    auto delta = d.Push({id});
    ASSERT_TRUE(delta.ok());
    EXPECT_TRUE(ValidUtf8(delta->text)) << "broken character emitted after id " << id;
    streamed += delta->text;
  }
  streamed += *d.Flush();
  EXPECT_EQ(streamed, text);
}

// A continuation keeps the space before its first word when decoded after the prompt's last
// token; without context SentencePiece drops it.
TEST_F(Detok, ContinuationKeepsItsLeadingSpaceAfterContext) {
  auto ids = tok_->Encode("The quick brown fox");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 2u);
  const std::vector<int32_t> rest(ids->begin() + 1, ids->end());
  auto first = tok_->Decode({ids->front()});
  ASSERT_TRUE(first.ok());
  IncrementalDetokenizer with(tok_, {}, {ids->front()});
  IncrementalDetokenizer without(tok_, {});
  std::string a, b;
  for (int32_t id : rest) {
    a += with.Push({id})->text;
    b += without.Push({id})->text;
  }
  a += *with.Flush();
  b += *without.Flush();
  EXPECT_EQ(*first + a, "The quick brown fox");
  EXPECT_EQ(a.front(), ' ') << a;
  EXPECT_NE(b.front(), ' ') << b;
}

TEST_F(Detok, StopStringIsNotEmittedEvenAcrossTokens) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer d(tok_, {"fox jum", "zzz"});
  std::string streamed;
  bool stopped = false;
  for (int32_t id : *ids) {
    auto delta = d.Push({id});
    ASSERT_TRUE(delta.ok());
    streamed += delta->text;
    if (delta->stopped) {
      stopped = true;
      break;
    }
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(streamed, "The quick brown ");
}

TEST_F(Detok, StopIndexNamesTheEarliestStopString) {
  const std::string text = "The quick brown fox jumps over the lazy dog";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  // Both appear once the whole text is decoded; "brown" comes first in the text.
  IncrementalDetokenizer d(tok_, {"lazy", "brown"});
  d.Append(*ids);
  auto delta = d.Apply(tok_->Decode(*ids));
  ASSERT_TRUE(delta.ok());
  EXPECT_TRUE(delta->stopped);
  EXPECT_EQ(delta->stop_index, 1);
  EXPECT_EQ(delta->text, "The quick ");
}

TEST_F(Detok, HeldBackPrefixOfStopStringIsReleasedWhenItDiverges) {
  auto ids = tok_->Encode("a lazy dog");
  ASSERT_TRUE(ids.ok());
  IncrementalDetokenizer d(tok_, {"lazy cat"});
  std::string streamed;
  for (int32_t id : *ids) {
    auto delta = d.Push({id});
    ASSERT_TRUE(delta.ok());
    EXPECT_FALSE(delta->stopped);
    streamed += delta->text;
  }
  streamed += *d.Flush();
  EXPECT_EQ(streamed, "a lazy dog");
}

}  // namespace
}  // namespace sparsed
