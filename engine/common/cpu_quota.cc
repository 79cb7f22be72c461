#include "engine/common/cpu_quota.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sparsed {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<int> FromQuota(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return std::nullopt;
  return std::max(1, static_cast<int>(std::ceil(quota / period - 1e-9)));
}

int AffinityCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

std::optional<int> CpusFromCgroupV2(absl::string_view cpu_max) {
  const std::vector<absl::string_view> f =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  double quota = 0, period = 0;
  if (f.size() != 2 || f[0] == "max" || !absl::SimpleAtod(f[0], &quota) ||
      !absl::SimpleAtod(f[1], &period))
    return std::nullopt;
  return FromQuota(quota, period);
}

std::optional<int> CpusFromCgroupV1(absl::string_view quota_us, absl::string_view period_us) {
  double quota = 0, period = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(quota_us), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(period_us), &period))
    return std::nullopt;
  return FromQuota(quota, period);
}

int UsableCpus(const CpuQuotaFiles& files) {
  int cpus = AffinityCpus();
  // This process's cgroup paths: "0::/path" (v2) and "N:cpu,cpuacct:/path" (v1).
  std::string v2_path, v1_path;
  if (auto text = ReadFile(files.proc_self_cgroup)) {
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      const std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
      if (f.size() != 3) continue;
      if (f[0] == "0" && f[1].empty()) v2_path = std::string(f[2]);
      for (absl::string_view c : absl::StrSplit(f[1], ','))
        if (c == "cpu") v1_path = std::string(f[2]);
    }
  }
  std::optional<int> quota;
  for (const std::string& dir : {files.cgroup_root + v2_path, files.cgroup_root}) {
    if (auto t = ReadFile(dir + "/cpu.max")) {
      quota = CpusFromCgroupV2(*t);
      break;
    }
  }
  if (!quota) {
    for (const std::string& dir :
         {files.cgroup_root + "/cpu,cpuacct" + v1_path, files.cgroup_root + "/cpu" + v1_path,
          files.cgroup_root + "/cpu,cpuacct", files.cgroup_root + "/cpu"}) {
      auto q = ReadFile(dir + "/cpu.cfs_quota_us");
      auto p = ReadFile(dir + "/cpu.cfs_period_us");
      if (q && p) {
        quota = CpusFromCgroupV1(*q, *p);
        break;
      }
    }
  }
  if (quota) cpus = std::min(cpus, *quota);
  return std::max(1, cpus);
}

}  // namespace sparsed
