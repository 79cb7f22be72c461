// Start-up flag checks (cli/flag_checks.h, cli/help_flags.h): the range a flag's help states is
// the range enforced.
#include "cli/flag_checks.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "cli/help_flags.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, fc_count, 5, "Things per step [1, 10].");
ABSL_FLAG(double, fc_ratio, 0.5, "Share (see [notes]; 0 = none) [0, 1].");
ABSL_FLAG(uint64_t, fc_seed, 0, "Seed [0, 18446744073709551615].");
ABSL_FLAG(int64_t, fc_signed, -1, "Seed (-1: none) [-1, 9223372036854775807].");
ABSL_FLAG(double, fc_small, 0.5, "Tiny lower end [0.000001, 1].");
ABSL_FLAG(std::string, fc_text, "5", "A string is never range-checked [1, 2].");
ABSL_FLAG(int, fc_free, 7, "No stated range.");

namespace sparsed {
namespace {

TEST(FindStatedRange, TakesTheLastNumericPair) {
  auto r = FindStatedRange("Tokens [1, 1048576].");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->lo, "1");
  EXPECT_EQ(r->hi, "1048576");
  r = FindStatedRange("Old [1, 2], then (0 = never) [0.001, 86400].");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->lo, "0.001");
  EXPECT_EQ(r->hi, "86400");
  EXPECT_EQ(r->lo_value, 0.001L);
  EXPECT_EQ(r->hi_value, 86400.0L);
  r = FindStatedRange("[-1, 9223372036854775807] and [a, b] after");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->lo, "-1");
  EXPECT_EQ(r->hi, "9223372036854775807");
}

TEST(FindStatedRange, IgnoresWhatIsNotARange) {
  EXPECT_FALSE(FindStatedRange("No range here.").has_value());
  EXPECT_FALSE(FindStatedRange("Words [a, b].").has_value());
  EXPECT_FALSE(FindStatedRange("Without the space [1,2].").has_value());
  EXPECT_FALSE(FindStatedRange("Unclosed [1, 2").has_value());
  EXPECT_FALSE(FindStatedRange("Three [1, 2, 3].").has_value());
  EXPECT_FALSE(FindStatedRange("Padded [ 1, 2].").has_value());
  EXPECT_FALSE(FindStatedRange("").has_value());
}

TEST(CheckStatedRanges, DefaultsAndBothEndsPass) {
  absl::FlagSaver restore;
  EXPECT_TRUE(CheckStatedRanges().ok());
  absl::SetFlag(&FLAGS_fc_count, 1);
  absl::SetFlag(&FLAGS_fc_ratio, 1.0);
  absl::SetFlag(&FLAGS_fc_seed, std::numeric_limits<uint64_t>::max());
  absl::SetFlag(&FLAGS_fc_signed, std::numeric_limits<int64_t>::max());
  absl::SetFlag(&FLAGS_fc_small, 0.000001);
  EXPECT_TRUE(CheckStatedRanges().ok()) << CheckStatedRanges();
  absl::SetFlag(&FLAGS_fc_count, 10);
  absl::SetFlag(&FLAGS_fc_ratio, 0.0);
  absl::SetFlag(&FLAGS_fc_signed, -1);
  EXPECT_TRUE(CheckStatedRanges().ok()) << CheckStatedRanges();
}

TEST(CheckStatedRanges, AValueOutsideItsStatedRangeIsAUsageErrorNamingFlagAndRange) {
  absl::FlagSaver restore;
  absl::SetFlag(&FLAGS_fc_count, 11);
  absl::Status s = CheckStatedRanges();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--fc_count=11 is out of range: it must be in [1, 10]");
  absl::SetFlag(&FLAGS_fc_count, 0);
  EXPECT_EQ(CheckStatedRanges().message(), "--fc_count=0 is out of range: it must be in [1, 10]");
  absl::SetFlag(&FLAGS_fc_count, 5);
  absl::SetFlag(&FLAGS_fc_signed, -2);
  EXPECT_EQ(CheckStatedRanges().message(),
            "--fc_signed=-2 is out of range: it must be in [-1, 9223372036854775807]");
  absl::SetFlag(&FLAGS_fc_signed, -1);
  absl::SetFlag(&FLAGS_fc_small, 0.0000009);
  EXPECT_FALSE(CheckStatedRanges().ok());
  absl::SetFlag(&FLAGS_fc_small, 0.5);
  absl::SetFlag(&FLAGS_fc_ratio, std::nan(""));
  s = CheckStatedRanges();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--fc_ratio="), absl::string_view::npos) << s;
  absl::SetFlag(&FLAGS_fc_ratio, 1.0000001);
  EXPECT_FALSE(CheckStatedRanges().ok());
}

TEST(CheckStatedRanges, FlagsWithoutANumericRangeAreNotChecked) {
  absl::FlagSaver restore;
  absl::SetFlag(&FLAGS_fc_text, std::string("99"));
  absl::SetFlag(&FLAGS_fc_free, -123456);
  EXPECT_TRUE(CheckStatedRanges().ok()) << CheckStatedRanges();
}

TEST(FlagChecks, KeepsTheFirstError) {
  EXPECT_TRUE(FlagChecks().OneOf(FLAGS_fc_text, {"5", "6"}).status().ok());
  EXPECT_EQ(
      FlagChecks().OneOf(FLAGS_fc_text, {"a", "b"}).Require(false, "second").status().message(),
      "--fc_text=5 is not one of: a, b");
}

TEST(ParseFlags, AValueOutsideItsStatedRangeExitsWithTheUsageStatus) {
  char prog[] = "flag_checks_test", bad[] = "--fc_count=11";
  char* argv[] = {prog, bad, nullptr};
  EXPECT_EXIT(ParseFlags(2, argv, "flag_checks_test.cc", "usage"),
              testing::ExitedWithCode(kUsageExit),
              "error: --fc_count=11 is out of range: it must be in \\[1, 10\\]");
}

TEST(ParseFlags, InRangeValuesAreParsedAndArgumentsReturned) {
  absl::FlagSaver restore;
  char prog[] = "flag_checks_test", ok[] = "--fc_count=10", arg[] = "positional";
  char* argv[] = {prog, ok, arg, nullptr};
  const std::vector<char*> args = ParseFlags(3, argv, "flag_checks_test.cc", "usage");
  ASSERT_EQ(args.size(), 2u);
  EXPECT_STREQ(args[1], "positional");
  EXPECT_EQ(absl::GetFlag(FLAGS_fc_count), 10);
}

}  // namespace
}  // namespace sparsed
