// Shared by the request-conversion tests (convert_test.cc, vllm_convert_test.cc,
// oip_convert_test.cc): the bundled sparsed-tiny model loaded once per suite, and the check that a
// status is INVALID_ARGUMENT naming what it must name.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "absl/status/status.h"
#include "engine/engine.h"
#include "tests/reference/test_models.h"

namespace sparsed::testing {

class BundledEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine_ = LoadEngine(std::string(SPARSED_SOURCE_DIR) + "/models/sparsed-tiny", "").release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static inline Engine* engine_ = nullptr;
};

// `st` is INVALID_ARGUMENT and its message contains `needle` (a field name, a value).
inline void ExpectInvalidNaming(const absl::Status& st, const std::string& needle) {
  ASSERT_FALSE(st.ok()) << needle;
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find(needle), std::string::npos) << "'" << needle << "' not in: " << st;
}

}  // namespace sparsed::testing
