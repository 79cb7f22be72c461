#include "engine/backend/device.h"

#include <dlfcn.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/common/plugin_path.h"

namespace sparsed {
namespace {

// "" when a CUDA device answers; otherwise why not. `name` receives the device name.
std::string ProbeCuda(std::string* name) {
  std::string tried;
  for (const std::string& path : PluginCandidates("libsparsed_cuda.so")) {
    if (!std::filesystem::exists(path)) {
      absl::StrAppend(&tried, " ", path);
      continue;
    }
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return absl::StrCat("cannot load ", path, ": ", dlerror());
    using ProbeFn = int (*)(char*, int, char*, int);
    auto probe = reinterpret_cast<ProbeFn>(dlsym(lib, "sparsed_cuda_probe"));
    if (probe == nullptr) {
      dlclose(lib);
      return absl::StrCat(path, " lacks sparsed_cuda_probe");
    }
    char msg[256] = {0}, dev[128] = {0};
    const int rc = probe(msg, sizeof msg, dev, sizeof dev);
    dlclose(lib);
    if (rc != 0) return msg;
    *name = dev;
    return "";
  }
  return absl::StrCat("the CUDA backend library is not installed (tried:", tried, ")");
}

}  // namespace

absl::StatusOr<DeviceChoice> ResolveDevice(const std::string& flag) {
  if (flag == "cpu") return DeviceChoice{"cpu", "requested"};
  if (flag != "auto" && flag != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device is '", flag, "'; allowed: auto, cpu, cuda"));
  }
  std::string name;
  const std::string why = ProbeCuda(&name);
  if (!why.empty()) {
    if (flag == "cuda") return absl::FailedPreconditionError(absl::StrCat("--device=cuda: ", why));
    return DeviceChoice{"cpu", absl::StrCat("no CUDA device (", why, ")")};
  }
  const std::string not_built =
      absl::StrCat("found ", name, ", but the CUDA forward pass is not built yet");
  if (flag == "cuda") return absl::UnimplementedError(absl::StrCat("--device=cuda: ", not_built));
  return DeviceChoice{"cpu", not_built};
}

}  // namespace sparsed
