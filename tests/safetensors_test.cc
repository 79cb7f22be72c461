#include "engine/model/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "engine/model/safetensors_writer.h"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string WithHeader(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

std::string Message(const absl::StatusOr<std::map<std::string, SafetensorsEntry>>& r) {
  EXPECT_FALSE(r.ok());
  return std::string(r.status().message());
}

TEST(Safetensors, ParsesValidHeader) {
  const std::string f = WithHeader(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})",
      std::string(22, '\0'));
  auto r = ParseSafetensorsHeader(f, "m.safetensors");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at("a").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r->at("b").end, 22u);
}

TEST(Safetensors, RejectsTruncatedLength) {
  EXPECT_THAT(Message(ParseSafetensorsHeader("abc", "m.safetensors")),
              AllOf(HasSubstr("m.safetensors"), HasSubstr("truncated")));
}

TEST(Safetensors, RejectsHeaderLongerThanFile) {
  std::string f = WithHeader("{}", "");
  f[0] = 100;
  EXPECT_THAT(Message(ParseSafetensorsHeader(f, "m.safetensors")),
              HasSubstr("exceeds the file size"));
}

TEST(Safetensors, RejectsBadJson) {
  EXPECT_THAT(Message(ParseSafetensorsHeader(WithHeader("{not json", ""), "x.safetensors")),
              AllOf(HasSubstr("x.safetensors"), HasSubstr("not valid JSON")));
  EXPECT_THAT(Message(ParseSafetensorsHeader(WithHeader("[1,2]", ""), "x.safetensors")),
              HasSubstr("not a JSON object"));
}

TEST(Safetensors, RejectsOffsetsOutsideFile) {
  const std::string f = WithHeader(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                   std::string(8, '\0'));
  EXPECT_THAT(
      Message(ParseSafetensorsHeader(f, "m.safetensors")),
      AllOf(HasSubstr("m.safetensors"), HasSubstr("'w'"), HasSubstr("outside the data section")));
}

TEST(Safetensors, RejectsSizeShapeMismatch) {
  const std::string f = WithHeader(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
                                   std::string(16, '\0'));
  EXPECT_THAT(Message(ParseSafetensorsHeader(f, "m.safetensors")),
              AllOf(HasSubstr("'w'"), HasSubstr("does not match")));
}

TEST(Safetensors, RejectsUnknownDtypeAndBadFields) {
  EXPECT_THAT(
      Message(ParseSafetensorsHeader(
          WithHeader(R"({"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "x"), "m")),
      AllOf(HasSubstr("'w'"), HasSubstr("unknown dtype 'Q4'")));
  EXPECT_THAT(
      Message(ParseSafetensorsHeader(
          WithHeader(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "xxxx"), "m")),
      HasSubstr("negative"));
  EXPECT_THAT(Message(ParseSafetensorsHeader(
                  WithHeader(R"({"w":{"dtype":"F32","shape":[1]}})", "xxxx"), "m")),
              HasSubstr("data_offsets"));
  EXPECT_THAT(
      Message(ParseSafetensorsHeader(
          WithHeader(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "xxxx"), "m")),
      HasSubstr("begin > end"));
  EXPECT_THAT(Message(ParseSafetensorsHeader(WithHeader(R"({"w":5})", ""), "m")),
              HasSubstr("not an object"));
}

TEST(Safetensors, FileRoundTripAndUnsupportedDtypeOnGet) {
  testing::TempDir dir;
  const std::string path = dir.File("t.safetensors");
  std::vector<TensorToWrite> ts;
  ts.push_back({"x", DType::kBF16, {2, 3}, EncodeTensor({1, 2, 3, 4, 5, 6}, DType::kBF16)});
  ts.push_back({"y", DType::kF16, {2}, EncodeTensor({-1.5f, 0.25f}, DType::kF16)});
  ASSERT_TRUE(WriteSafetensors(path, ts).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto x = (*f)->Get("x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(LoadAsF32(x->data, x->dtype, 5), 6.f);
  auto y = (*f)->Get("y");
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(LoadAsF32(y->data, y->dtype, 0), -1.5f);
  auto missing = (*f)->Get("z");
  EXPECT_THAT(std::string(missing.status().message()), AllOf(HasSubstr(path), HasSubstr("'z'")));

  // An integer tensor parses but is refused when the engine asks for it.
  ts.push_back({"i", DType::kF32, {1}, EncodeTensor({0}, DType::kF32)});
  ASSERT_TRUE(WriteSafetensors(path, ts).ok());
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(io)), {});
  const size_t pos = all.find("\"dtype\":\"F32\"");
  ASSERT_NE(pos, std::string::npos);
  all.replace(pos, 13, "\"dtype\":\"I32\"");
  io.seekp(0);
  io.write(all.data(), static_cast<std::streamsize>(all.size()));
  io.close();
  auto g = SafetensorsFile::Open(path);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_THAT(std::string((*g)->Get("i").status().message()),
              AllOf(HasSubstr("'i'"), HasSubstr("I32")));
}

TEST(Safetensors, MissingFileNamesPath) {
  auto f = SafetensorsFile::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("/nonexistent/model.safetensors"));
}

}  // namespace
}  // namespace sparsed
