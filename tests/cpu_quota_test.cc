#include "engine/common/cpu_quota.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

TEST(CpuQuota, ParsesCgroupV2AndV1) {
  EXPECT_EQ(CpusFromCgroupV2("200000 100000\n"), 2);
  EXPECT_EQ(CpusFromCgroupV2("150000 100000"), 2);  // 1.5 CPUs round up
  EXPECT_EQ(CpusFromCgroupV2("50000 100000"), 1);
  EXPECT_EQ(CpusFromCgroupV2("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupV2("garbage"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupV2(""), std::nullopt);
  EXPECT_EQ(CpusFromCgroupV1("400000\n", "100000\n"), 4);
  EXPECT_EQ(CpusFromCgroupV1("-1", "100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupV1("x", "100000"), std::nullopt);
}

void Write(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// A pod limited to 1 CPU on a machine with more: the process's own cgroup v2 file decides.
TEST(CpuQuota, FakeCgroupFilesCapTheAffinity) {
  testing::TempDir dir;
  const std::filesystem::path root = dir.File("cgroup");
  const std::string self = dir.File("self_cgroup");
  Write(self, "0::/kubepods/pod1/ctr\n");
  Write(root / "kubepods/pod1/ctr/cpu.max", "100000 100000\n");
  EXPECT_EQ(UsableCpus({self, root.string()}), 1);
  // No limit in the process's cgroup: the affinity mask alone.
  Write(root / "kubepods/pod1/ctr/cpu.max", "max 100000\n");
  const int free = UsableCpus({self, root.string()});
  EXPECT_GE(free, 1);
  // cgroup v1 only (no cpu.max anywhere).
  std::filesystem::remove(root / "kubepods/pod1/ctr/cpu.max");
  Write(self, "4:cpu,cpuacct:/docker/abc\n");
  Write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "100000\n");
  Write(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(UsableCpus({self, root.string()}), 1);
  // Nothing readable: the affinity mask.
  EXPECT_EQ(UsableCpus({dir.File("missing"), dir.File("missing_root")}), free);
}

}  // namespace
}  // namespace sparsed
