// GPU fbank (CudaFbank) against the CPU Fbank (which matches torchaudio): batched over utterances
// of different lengths. Tolerance: max |gpu − cpu| ≤ 1e-3 on log-mel values (the GPU sums in
// another order and uses cuFFT; on speech-level signals the difference is ~1e-5).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "gpu_test_util.h"
#include "u2/backend/cuda/cuda_fbank.h"
#include "u2/frontend/fbank.h"

namespace u2 {
namespace {

std::vector<float> Signal(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.02f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / 16000.0;
    const double f = 200.0 + 3000.0 * t / (1.0 + t);                                               // a sweep
    x[i] = static_cast<float>(0.3 * std::sin(2 * std::numbers::pi * f * t)) + noise(rng) + 0.01f;  // + DC
  }
  return x;
}

TEST(GpuFbank, MatchesCpuFbankBatched) {
  FbankConfig config;
  auto cpu = Fbank::Create(config);
  ASSERT_TRUE(cpu.ok());
  auto gpu = CudaFbank::Create(config, 0, 1024);  // small passes so a long clip takes several
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  std::vector<std::vector<float>> waves;
  for (size_t n : {size_t{160000}, size_t{399}, size_t{400}, size_t{16000 * 3 + 77}, size_t{16000 * 25}}) {
    waves.push_back(Signal(n, static_cast<uint32_t>(n)));
  }
  std::vector<std::span<const float>> spans(waves.begin(), waves.end());
  auto feats = (*gpu)->Compute(spans);
  ASSERT_TRUE(feats.ok()) << feats.status().ToString();
  ASSERT_EQ(feats->size(), waves.size());
  double worst = 0;
  for (size_t b = 0; b < waves.size(); ++b) {
    auto want = (*cpu)->Compute(waves[b]);
    ASSERT_TRUE(want.ok());
    const FeatureMatrix& got = (*feats)[b];
    ASSERT_EQ(got.num_frames, want->num_frames) << b;
    ASSERT_EQ(got.dim, 80);
    double e = 0;
    for (size_t i = 0; i < got.data.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got.data[i]));
      e = std::max(e, std::abs(double(got.data[i]) - want->data[i]));
    }
    EXPECT_LE(e, 1e-3) << "utterance " << b;
    worst = std::max(worst, e);
  }
  std::printf("GPU fbank vs CPU fbank: max abs log-mel diff %.3g\n", worst);

  // The device variant packs utterances row after row.
  std::vector<int> offsets;
  int64_t total = 0;
  for (const auto& w : waves) total += (*gpu)->NumFrames(static_cast<int64_t>(w.size()));
  Tensor dev;
  {
    auto be = gpu_testing::MakeGpu();
    ASSERT_TRUE(be);
    dev = be->NewTensor({total, 80});
    ASSERT_TRUE((*gpu)->ComputeToDevice(spans, dev.mutable_f32(), &offsets).ok());
    ASSERT_EQ(offsets.size(), waves.size());
    const auto rows =
        be->DownloadRows(dev.f32() + static_cast<size_t>(offsets[3]) * 80, (*feats)[3].num_frames, 80, 80);
    EXPECT_EQ(rows, (*feats)[3].data);
    dev = Tensor();
  }
}

TEST(GpuFbank, RejectsBadSamples) {
  auto gpu = CudaFbank::Create(FbankConfig{});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  std::vector<float> bad(1000, 0.1f);
  bad[500] = std::nanf("");
  std::vector<std::span<const float>> spans = {bad};
  auto r = (*gpu)->Compute(spans);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  FbankConfig c;
  c.num_mel_bins = 1;
  EXPECT_FALSE(CudaFbank::Create(c).ok());
}

}  // namespace
}  // namespace u2
