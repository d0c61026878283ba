// Helpers shared by the GPU tests: a CPU and a CUDA backend side by side, uploads/downloads, and
// the error measure behind the stated tolerances.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "u2/backend/cuda/cuda_backend.h"
#include "u2/backend/ops.h"

namespace u2::gpu_testing {

inline std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// max |a − b| / max(max |b|, floor). NaN anywhere (e.g. an output element never written over the
// NaN poison) gives infinity.
inline double RelErr(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-6) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(a[i])) continue;
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

inline std::vector<float> Nans(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// Fails the test (no GPU tests are skipped: they run only where a GPU is promised).
inline std::shared_ptr<const Backend> MakeGpu(CudaGemmMath math = CudaGemmMath::kFp32) {
  CudaBackendOptions o;
  o.gemm_math = math;
  auto b = CreateCudaBackend(o);
  EXPECT_TRUE(b.ok()) << b.status().ToString() << " (visible CUDA devices: " << CudaDeviceCount() << ")";
  if (!b.ok()) return nullptr;
  return std::shared_ptr<const Backend>(std::move(*b));
}

// A host vector mirrored on a device: `dev` is the device copy, Download() reads it back.
struct Mirror {
  const Backend* be = nullptr;
  std::vector<float> host;
  Tensor dev;
  Mirror(const Backend& b, std::vector<float> h) : be(&b), host(std::move(h)) {
    dev = b.Upload(host, {static_cast<int64_t>(std::max<size_t>(host.size(), 1))});
  }
  float* d() const { return dev.mutable_f32(); }
  float* h() { return host.data(); }
  std::vector<float> Download() const {
    std::vector<float> out(host.size());
    if (!out.empty()) be->CopyToHost(out.data(), dev.f32(), out.size() * sizeof(float));
    return out;
  }
};

}  // namespace u2::gpu_testing
