#include "engine/backend/device.h"

#include <dlfcn.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/plugin_path.h"

namespace sparsed {
namespace {

// dlopens libsparsed_cuda.so from the plugin directories and resolves `symbol` in it; the caller
// owns the handle. FAILED_PRECONDITION with what was tried or what went wrong.
absl::StatusOr<std::pair<void*, void*>> OpenCudaSymbol(const char* symbol) {
  std::string tried;
  for (const std::string& path : PluginCandidates("libsparsed_cuda.so")) {
    if (!std::filesystem::exists(path)) {
      absl::StrAppend(&tried, " ", path);
      continue;
    }
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cannot load ", path, ": ", dlerror()));
    }
    void* fn = dlsym(lib, symbol);
    if (fn == nullptr) {
      dlclose(lib);
      return absl::FailedPreconditionError(absl::StrCat(path, " lacks ", symbol));
    }
    return std::pair{lib, fn};
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the CUDA backend library is not installed (tried:", tried, ")"));
}

// "" when a CUDA device answers; otherwise why not. `name` receives the device name.
std::string ProbeCuda(std::string* name) {
  auto lib = OpenCudaSymbol("sparsed_cuda_probe");
  if (!lib.ok()) return std::string(lib.status().message());
  using ProbeFn = int (*)(char*, int, char*, int);
  char msg[256] = {0}, dev[128] = {0};
  const int rc = reinterpret_cast<ProbeFn>(lib->second)(msg, sizeof msg, dev, sizeof dev);
  dlclose(lib->first);
  if (rc != 0) return msg;
  *name = dev;
  return "";
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
  // Never closed: the backend's code lives in the library.
  auto lib = OpenCudaSymbol("sparsed_cuda_make_backend");
  if (!lib.ok()) return lib.status();
  using MakeFn = void* (*)(const BackendOptions*, char*, int);
  char msg[256] = {0};
  void* b = reinterpret_cast<MakeFn>(lib->second)(&options, msg, sizeof msg);
  if (b == nullptr) return absl::FailedPreconditionError(absl::StrCat("CUDA backend: ", msg));
  return std::unique_ptr<Backend>(static_cast<Backend*>(b));
}

}  // namespace sparsed
