// How many CPUs this process may really use: the CPUs its affinity mask allows, capped by the CPU
// quota of its cgroup (a Kubernetes pod's `limits.cpu`, `docker run --cpus`). The number of CPUs
// the node has (std::thread::hardware_concurrency) oversubscribes a pod whose quota is smaller:
// its threads then stall on throttling and its probes time out under load.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace sparsed {

// CPUs a cgroup quota allows: cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"); nullopt for
// no limit or unreadable text. A fraction rounds up (1.5 CPUs: 2 threads).
std::optional<int> CpusFromCgroupV2(absl::string_view cpu_max);
// The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: no limit).
std::optional<int> CpusFromCgroupV1(absl::string_view quota_us, absl::string_view period_us);

// Where to look; the defaults are the live system's files.
struct CpuQuotaFiles {
  std::string proc_self_cgroup = "/proc/self/cgroup";
  std::string cgroup_root = "/sys/fs/cgroup";
};

// min(affinity CPUs, cgroup quota), at least 1. The cgroup is this process's own (from
// /proc/self/cgroup), v2 first, then v1's cpu controller; a missing file means no limit.
int UsableCpus(const CpuQuotaFiles& files = {});

}  // namespace sparsed
