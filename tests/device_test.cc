// Device selection at start-up: CPU fallback with a reason, clear failures.
#include "engine/backend/device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sparsed {
namespace {

using ::testing::HasSubstr;

TEST(Device, CpuOnRequest) {
  auto d = ResolveDevice("cpu");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->device, "cpu");
}

TEST(Device, AutoFallsBackToCpuAndSaysWhy) {
  auto d = ResolveDevice("auto");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->device, "cpu");  // the CUDA forward pass is not built yet, GPU or not
  EXPECT_FALSE(d->reason.empty());
}

TEST(Device, CudaFailsClearly) {
  auto d = ResolveDevice("cuda");
  ASSERT_FALSE(d.ok());
  // No GPU (or no CUDA library): FAILED_PRECONDITION; a GPU: UNIMPLEMENTED until the forward
  // pass exists. Either way the message names the flag.
  EXPECT_TRUE(d.status().code() == absl::StatusCode::kFailedPrecondition ||
              d.status().code() == absl::StatusCode::kUnimplemented)
      << d.status();
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("--device=cuda"));
}

TEST(Device, UnknownIsInvalid) {
  auto d = ResolveDevice("tpu");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("auto, cpu, cuda"));
}

}  // namespace
}  // namespace sparsed
