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

// Whether this machine has a usable CUDA device and library (what ResolveDevice("cuda") says).
bool HaveCuda() { return ResolveDevice("cuda").ok(); }

TEST(Device, AutoPicksCudaOrFallsBackToCpuAndSaysWhy) {
  auto d = ResolveDevice("auto");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->device, HaveCuda() ? "cuda" : "cpu");
  EXPECT_FALSE(d->reason.empty());
  if (d->device == "cpu") {
    EXPECT_THAT(d->reason, HasSubstr("no CUDA device"));
  }
}

TEST(Device, CudaFailsClearlyWithoutADevice) {
  if (HaveCuda()) GTEST_SKIP() << "a CUDA device is present";
  auto d = ResolveDevice("cuda");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("--device=cuda"));
  auto b = MakeBackend("cuda", BackendOptions{});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
}

TEST(Device, MakesTheCpuBackend) {
  auto b = MakeBackend("cpu", BackendOptions{});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "cpu");
  EXPECT_EQ(MakeBackend("tpu", BackendOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Device, UnknownIsInvalid) {
  auto d = ResolveDevice("tpu");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("auto, cpu, cuda"));
}

}  // namespace
}  // namespace sparsed
