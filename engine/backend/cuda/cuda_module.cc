// C entry points of libsparsed_cuda.so, the CUDA backend the engine loads with dlopen.
#include <algorithm>
#include <cstring>
#include <string>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_device.h"

namespace {

void Copy(const std::string& s, char* out, int cap) {
  if (out == nullptr || cap <= 0) return;
  const size_t n = std::min(s.size(), static_cast<size_t>(cap - 1));
  std::memcpy(out, s.data(), n);
  out[n] = '\0';
}

}  // namespace

extern "C" {
// 0 when a CUDA device is usable (its name in `device`); otherwise the reason in `msg`.
int sparsed_cuda_probe(char* msg, int msg_cap, char* device, int device_cap) {
  std::string name;
  if (const absl::Status s = sparsed::cuda::ProbeDevice(&name); !s.ok()) {
    Copy(std::string(s.message()), msg, msg_cap);
    return 1;
  }
  Copy(name, device, device_cap);
  return 0;
}

// A new CUDA backend (a sparsed::Backend*, owned by the caller and deleted through its virtual
// destructor), or null with the reason in `msg`.
void* sparsed_cuda_make_backend(const sparsed::BackendOptions* options, char* msg, int msg_cap) {
  auto b = sparsed::CudaBackend::Create(*options);
  if (!b.ok()) {
    Copy(std::string(b.status().message()), msg, msg_cap);
    return nullptr;
  }
  return static_cast<sparsed::Backend*>(b->release());
}
}
