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
  return DeviceChoice{"cuda", absl::StrCat(flag == "cuda" ? "requested, " : "", "found ", name)};
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& device,
                                                     const BackendOptions& options) {
  if (device == "cpu") return MakeCpuBackend(options);
  if (device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", device, "'"));
  }
  for (const std::string& path : PluginCandidates("libsparsed_cuda.so")) {
    if (!std::filesystem::exists(path)) continue;
    // Never closed: the backend's code lives in the library.
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot load ", path, ": ", dlerror()));
    }
    using MakeFn = void* (*)(const BackendOptions*, char*, int);
    auto make = reinterpret_cast<MakeFn>(dlsym(lib, "sparsed_cuda_make_backend"));
    if (make == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(path, " lacks sparsed_cuda_make_backend"));
    }
    char msg[256] = {0};
    void* b = make(&options, msg, sizeof msg);
    if (b == nullptr) return absl::FailedPreconditionError(absl::StrCat("CUDA backend: ", msg));
    return std::unique_ptr<Backend>(static_cast<Backend*>(b));
  }
  return absl::FailedPreconditionError("the CUDA backend library is not installed");
}

}  // namespace sparsed
