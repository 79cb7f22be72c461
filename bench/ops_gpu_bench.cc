// GPU benchmark of the forward pass's dense operations (cuda_ops.h): our batch-invariant matrix
// products (both kernel layouts) against cuBLAS (bf16 tensor cores, bf16 activations) at the
// LLaMA-2-7B attention, FFN-row and LM-head shapes, and paged decode attention at several
// context lengths. Reports µs and GB/s of the weight (or KV) bytes read.
// Usage: ops_gpu_bench [--quick]
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_ffn.h"
#include "engine/backend/cuda/cuda_ops.h"
#include "tests/gpu/gpu_ffn_util.h"

namespace sparsed::gpu {
namespace {

// A device buffer of n normal-distributed fp32 or bf16 elements.
struct Dev {
  void* p = nullptr;
  Dev(size_t n, bool bf16, uint64_t seed, float scale = 1.f) {
    if (bf16) {
      const std::vector<uint16_t> h = RandomBf16(n, scale, seed);
      Check(cuda::DeviceAlloc(n * 2, &p));
      Check(cuda::CopyToDevice(p, h.data(), n * 2));
      return;
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> h(n);
    for (auto& v : h) v = nd(rng);
    Check(cuda::DeviceAlloc(n * 4, &p));
    Check(cuda::CopyToDevice(p, h.data(), n * 4));
  }
  ~Dev() { cuda::DeviceFree(p); }
  float* f() const { return static_cast<float*>(p); }
  uint16_t* h() const { return static_cast<uint16_t*>(p); }
};

void MatMulTable(bool quick, double peak) {
  struct Shape {
    const char* name;
    int64_t n, cols;
  };
  const std::vector<Shape> shapes = {{"q/k/v/o 4096×4096", 4096, 4096},
                                     {"ffn row 11008×4096", 11008, 4096},
                                     {"lm head 32000×4096", 32000, 4096}};
  const std::vector<int> batches =
      quick ? std::vector<int>{1, 16} : std::vector<int>{1, 2, 4, 8, 16, 64};
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) Check(absl::InternalError("cublasCreate failed"));
  std::printf(
      "Dense products (weights bf16): ours fp32 activations, batch-invariant; cuBLAS bf16 "
      "activations, tensor cores\n");
  std::printf(
      "| shape | batch | ours 4×8 µs | ours 2×4 µs | cuBLAS µs | best ours / cuBLAS | ours GB/s | "
      "of "
      "peak |\n|---|---|---|---|---|---|---|---|\n");
  for (const Shape& s : shapes) {
    Dev w(s.n * s.cols, true, 1, 0.02f);
    for (int T : batches) {
      Dev x(T * s.cols, false, 2), y(T * s.n, false, 3), xb(T * s.cols, true, 4),
          yb(T * s.n, true, 5);
      double us[2];
      for (int layout = 1; layout <= 2; ++layout) {
        us[layout - 1] = 1e3 * cuda::TimeMs(
                                   [&] {
                                     Check(cuda::MatMul(x.f(), T, w.h(), s.cols, nullptr, s.n,
                                                        y.f(), layout, /*stream=*/nullptr));
                                   },
                                   5, 30);
      }
      const float one = 1.f, zero = 0.f;
      const double cublas_us =
          1e3 * cuda::TimeMs(
                    [&] {
                      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), T,
                                   static_cast<int>(s.cols), &one, w.p, CUDA_R_16BF,
                                   static_cast<int>(s.cols), xb.p, CUDA_R_16BF,
                                   static_cast<int>(s.cols), &zero, yb.p, CUDA_R_16BF,
                                   static_cast<int>(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                    },
                    5, 30);
      const double best = std::min(us[0], us[1]);
      const double gbs = 2.0 * s.n * s.cols / (best * 1e3);
      std::printf("| %s | %d | %.1f | %.1f | %.1f | %.2f× | %.0f | %.0f%% |\n", s.name, T, us[0],
                  us[1], cublas_us, cublas_us / best, gbs, 100 * gbs / peak);
    }
  }
  cublasDestroy(h);
}

void AttentionTable(bool quick) {
  const int heads = 32, kvh = 32, hd = 128, bs = 16;
  const std::vector<int> contexts =
      quick ? std::vector<int>{1024} : std::vector<int>{128, 1024, 4096};
  const std::vector<int> batches = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 16, 64};
  std::printf(
      "\nPaged decode attention (32 heads × 128, fp32 KV, one token per sequence):\n| context | "
      "batch | µs | KV GB/s |\n|---|---|---|---|\n");
  for (int L : contexts) {
    for (int B : batches) {
      const int blocks_per_seq = (L + bs - 1) / bs, blocks = B * blocks_per_seq;
      Dev kc(static_cast<size_t>(blocks) * bs * kvh * hd, false, 6),
          vc(static_cast<size_t>(blocks) * bs * kvh * hd, false, 7), q(B * heads * hd, false, 8),
          out(B * heads * hd, false, 9);
      std::vector<int32_t> ints(3 * B);
      for (int s = 0; s < B; ++s) {
        ints[s] = L - 1;
        ints[2 * B + s] = s * blocks_per_seq;
      }
      for (int b = 0; b < blocks; ++b) ints.push_back(b);
      void* di = nullptr;
      Check(cuda::DeviceAlloc(ints.size() * 4, &di));
      Check(cuda::CopyToDevice(di, ints.data(), ints.size() * 4));
      auto* dp = static_cast<int32_t*>(di);
      const cuda::PagedLayer layer{kc.f(), vc.f(), bs, kvh, hd};
      Dev part(std::max<size_t>(1, cuda::AttentionScratchFloats(B, heads, hd, L)), false, 10);
      const double us =
          1e3 * cuda::TimeMs(
                    [&] {
                      Check(cuda::Attention(layer, q.f(), dp, dp + 2 * B, dp + 3 * B, B, heads, L,
                                            part.f(), out.f(), /*stream=*/nullptr));
                    },
                    3, 20);
      const double bytes = 2.0 * B * L * kvh * hd * 4;
      std::printf("| %d | %d | %.1f | %.0f |\n", L, B, us, bytes / (us * 1e3));
      cuda::DeviceFree(di);
    }
  }
}

}  // namespace
}  // namespace sparsed::gpu

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  std::string device;
  if (const absl::Status s = sparsed::cuda::ProbeDevice(&device); !s.ok()) {
    std::printf("SKIPPED: %s\n", std::string(s.message()).c_str());
    return 77;
  }
  const double peak = sparsed::cuda::MeasureCopyBandwidthGBs(size_t(1) << 31);
  std::printf("device: %s; measured copy bandwidth %.0f GB/s (read + write)\n\n", device.c_str(),
              peak);
  sparsed::gpu::MatMulTable(quick, peak);
  sparsed::gpu::AttentionTable(quick);
  return 0;
}
