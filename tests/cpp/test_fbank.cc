// Fbank against torchaudio's kaldi.fbank and an independent float64 implementation
// (tests/fixtures/frontend/fbank.safetensors, written by tools/gen_frontend_fixtures.py), plus
// framing, streaming, validation and thread-safety checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <complex>
#include <random>
#include <sstream>
#include <thread>

#include "support/fixtures.h"
#include "u2/frontend/fbank.h"
#include "u2/frontend/real_fft.h"
#include "u2/frontend/streaming_fbank.h"

namespace u2 {
namespace {

struct Signal {
  std::string name;
  std::vector<float> wav;
  std::vector<float> torch_fbank;  // torchaudio.compliance.kaldi.fbank
  std::vector<float> f64_fbank;    // float64 NumPy, rounded to float32
};

class FbankFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto file = SafeTensorsFile::Open(std::string(U2_FIXTURES_DIR) + "/frontend/fbank.safetensors");
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    file_ = *file;
    std::stringstream names((*file)->metadata().at("signals"));
    std::string name;
    while (std::getline(names, name, ',')) {
      Signal s{name, *(*file)->ReadFloat32(name + ".wav"), *(*file)->ReadFloat32(name + ".fbank"),
               *(*file)->ReadFloat32(name + ".fbank64")};
      signals_.push_back(std::move(s));
    }
  }
  static void TearDownTestSuite() {
    signals_.clear();
    file_.reset();
  }
  static std::shared_ptr<SafeTensorsFile> file_;
  static std::vector<Signal> signals_;
};
std::shared_ptr<SafeTensorsFile> FbankFixture::file_;
std::vector<Signal> FbankFixture::signals_;

std::unique_ptr<Fbank> MakeFbank(const FbankConfig& config = {}) {
  auto fbank = Fbank::Create(config);
  EXPECT_TRUE(fbank.ok()) << fbank.status().ToString();
  return fbank.ok() ? std::move(fbank).value() : nullptr;
}

// Max |a - b| over the values whose reference lies within `range` nats of its frame's largest
// value (range = inf: all values).
double MaxAbsErrorNearPeak(const std::vector<float>& a, const std::vector<float>& ref, int dim,
                           double range) {
  double err = 0;
  for (size_t row = 0; row * dim < ref.size(); ++row) {
    const float* r = ref.data() + row * dim;
    const double peak = *std::max_element(r, r + dim);
    for (int b = 0; b < dim; ++b) {
      if (r[b] >= peak - range) err = std::max(err, std::abs(double(a[row * dim + b]) - r[b]));
    }
  }
  return err;
}

// torchaudio computes in float32. Where a log-mel value's energy sits 10+ orders of magnitude
// below its frame's peak (pure synthetic tones: pre-emphasis and the window's side lobes push
// far-off bins down), float32 rounding noise decides its value, and torchaudio itself is off
// from the float64 truth by up to ~0.8 there. Such signals are recognised by that disagreement.
bool AtFloat32NoiseFloor(const Signal& s) { return testing::MaxAbsError(s.torch_fbank, s.f64_fbank) > 1e-3; }

// The requirement: within 1e-4 of torchaudio. It holds for every value of every signal
// whose reference is not at float32's noise floor, and for the others on every value within
// 18 nats (78 dB of energy) of its frame's peak.
TEST_F(FbankFixture, MatchesTorchaudio) {
  auto fbank = MakeFbank();
  ASSERT_TRUE(fbank);
  ASSERT_GE(signals_.size(), 13u);
  for (const Signal& s : signals_) {
    auto feats = fbank->Compute(s.wav);
    ASSERT_TRUE(feats.ok()) << s.name << ": " << feats.status().ToString();
    ASSERT_EQ(feats->dim, 80);
    ASSERT_EQ(size_t(feats->num_frames) * 80, s.torch_fbank.size()) << s.name;
    const double all = testing::MaxAbsError(feats->data, s.torch_fbank);
    const double near_peak = MaxAbsErrorNearPeak(feats->data, s.torch_fbank, 80, 18.0);
    std::printf("  %-14s frames %4d  max|ours - torchaudio| %.3g (within 18 nats of peak: %.3g)%s\n",
                s.name.c_str(), feats->num_frames, all, near_peak,
                AtFloat32NoiseFloor(s) ? "  [reference at float32 noise floor]" : "");
    EXPECT_LE(near_peak, 1e-4) << s.name;
    if (AtFloat32NoiseFloor(s)) {
      EXPECT_LE(all, 0.5) << s.name;
    } else {
      EXPECT_LE(all, 1e-4) << s.name;
    }
  }
}

// With torch's own window table (the only input that differs in the last bit), the rest of the
// pipeline reproduces torchaudio to float32 rounding on every value, noise floor included.
TEST_F(FbankFixture, MatchesTorchaudioEverywhereWithTorchWindow) {
  auto window = file_->ReadFloat32("povey_window_torch");
  ASSERT_TRUE(window.ok());
  auto fbank = Fbank::Create(FbankConfig{}, *window);
  ASSERT_TRUE(fbank.ok()) << fbank.status().ToString();
  for (const Signal& s : signals_) {
    auto feats = (*fbank)->Compute(s.wav);
    ASSERT_TRUE(feats.ok());
    const double err = testing::MaxAbsError(feats->data, s.torch_fbank);
    std::printf("  %-14s max|ours(torch window) - torchaudio| %.3g\n", s.name.c_str(), err);
    EXPECT_LE(err, 2e-5) << s.name;
  }
}

// The float64 reference: our float32 result is as close to it as torchaudio is.
TEST_F(FbankFixture, MatchesFloat64Reference) {
  auto fbank = MakeFbank();
  ASSERT_TRUE(fbank);
  for (const Signal& s : signals_) {
    auto feats = fbank->Compute(s.wav);
    ASSERT_TRUE(feats.ok());
    const double err = testing::MaxAbsError(feats->data, s.f64_fbank);
    const double near_peak = MaxAbsErrorNearPeak(feats->data, s.f64_fbank, 80, 18.0);
    const double torch_err = testing::MaxAbsError(s.torch_fbank, s.f64_fbank);
    std::printf("  %-14s max|ours - float64| %.3g (near peak %.3g), torchaudio's: %.3g\n", s.name.c_str(),
                err, near_peak, torch_err);
    EXPECT_LE(near_peak, 3e-4) << s.name;
    EXPECT_LE(err, std::max(3e-4, 1.5 * torch_err)) << s.name;
  }
}

TEST_F(FbankFixture, SilenceIsTheLogFloor) {
  auto fbank = MakeFbank();
  std::vector<float> zeros(1600, 0.0f);
  auto feats = fbank->Compute(zeros);
  ASSERT_TRUE(feats.ok());
  ASSERT_EQ(feats->num_frames, 8);
  for (float v : feats->data) EXPECT_EQ(v, std::log(FLT_EPSILON));  // -15.942385
}

TEST(Fbank, NumFramesFollowsSnipEdges) {
  auto fbank = MakeFbank();
  ASSERT_TRUE(fbank);
  EXPECT_EQ(fbank->frame_length(), 400);
  EXPECT_EQ(fbank->frame_shift(), 160);
  for (int64_t n : {0, 1, 399}) EXPECT_EQ(fbank->NumFrames(n), 0) << n;
  EXPECT_EQ(fbank->NumFrames(400), 1);
  EXPECT_EQ(fbank->NumFrames(559), 1);
  EXPECT_EQ(fbank->NumFrames(560), 2);
  EXPECT_EQ(fbank->NumFrames(16000), 98);
  for (int64_t n = 0; n < 5000; n += 37) {
    int64_t expected = 0;  // count frame starts s with s + 400 <= n
    for (int64_t start = 0; start + 400 <= n; start += 160) ++expected;
    EXPECT_EQ(fbank->NumFrames(n), expected) << n;
    std::vector<float> x(n, 0.01f);
    EXPECT_EQ(fbank->Compute(x)->num_frames, expected) << n;
  }
}

TEST(Fbank, OtherRatesAndSizes) {
  FbankConfig c;
  c.sample_rate = 8000;
  c.num_mel_bins = 40;
  auto fbank = MakeFbank(c);
  ASSERT_TRUE(fbank);
  EXPECT_EQ(fbank->frame_length(), 200);
  EXPECT_EQ(fbank->frame_shift(), 80);
  EXPECT_EQ(c.FftSize(), 256);
  std::vector<float> x(8000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.2f * float(i));
  auto feats = fbank->Compute(x);
  ASSERT_TRUE(feats.ok());
  EXPECT_EQ(feats->num_frames, 98);
  EXPECT_EQ(feats->dim, 40);
  for (float v : feats->data) EXPECT_TRUE(std::isfinite(v));
}

TEST(Fbank, ValidateRejectsBadConfigs) {
  EXPECT_TRUE(FbankConfig{}.Validate().ok());
  std::vector<std::pair<std::string, FbankConfig>> bad;
  auto with = [&](std::string what, auto edit) {
    FbankConfig c;
    edit(c);
    bad.emplace_back(std::move(what), c);
  };
  with("zero rate", [](FbankConfig& c) { c.sample_rate = 0; });
  with("negative rate", [](FbankConfig& c) { c.sample_rate = -16000; });
  with("3 mel bins", [](FbankConfig& c) { c.num_mel_bins = 3; });
  with("zero frame length", [](FbankConfig& c) { c.frame_length_ms = 0; });
  with("NaN frame shift", [](FbankConfig& c) { c.frame_shift_ms = NAN; });
  with("shift longer than frame", [](FbankConfig& c) { c.frame_shift_ms = 30; });
  with("zero input scale", [](FbankConfig& c) { c.input_scale = 0; });
  with("infinite input scale", [](FbankConfig& c) { c.input_scale = INFINITY; });
  with("high_freq above Nyquist", [](FbankConfig& c) { c.high_freq = 9000; });
  with("low_freq >= high_freq", [](FbankConfig& c) {
    c.low_freq = 4000;
    c.high_freq = 3000;
  });
  with("negative effective high_freq", [](FbankConfig& c) { c.high_freq = -9000; });
  with("negative low_freq", [](FbankConfig& c) { c.low_freq = -1; });
  with("preemph > 1", [](FbankConfig& c) { c.preemph = 1.5f; });
  for (const auto& [what, c] : bad) {
    Status s = c.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what;
    EXPECT_FALSE(Fbank::Create(c).ok()) << what;
  }
  EXPECT_NE(FbankConfig{}.ToString().find("num_mel_bins=80"), std::string::npos);
  // A window of the wrong size or with values outside [0, 1].
  EXPECT_FALSE(Fbank::Create(FbankConfig{}, std::vector<float>(399, 0.5f)).ok());
  std::vector<float> window(400, 0.5f);
  window[7] = NAN;
  EXPECT_FALSE(Fbank::Create(FbankConfig{}, window).ok());
}

TEST(Fbank, RejectsNonFiniteAndAbsurdSamples) {
  auto fbank = MakeFbank();
  for (float bad : {NAN, INFINITY, -INFINITY, 2e6f}) {
    std::vector<float> x(1000, 0.1f);
    x[517] = bad;
    auto feats = fbank->Compute(x);
    EXPECT_EQ(feats.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(feats.status().message().find("517"), std::string::npos) << feats.status().message();
  }
  // Out of [-1, 1) but plausible (e.g. int16-valued floats): computed, finite.
  std::vector<float> loud(1000);
  for (size_t i = 0; i < loud.size(); ++i) loud[i] = 32767.0f * std::sin(0.05f * float(i));
  auto feats = fbank->Compute(loud);
  ASSERT_TRUE(feats.ok());
  for (float v : feats->data) EXPECT_TRUE(std::isfinite(v));
}

TEST_F(FbankFixture, StreamingEqualsOfflineForAnyChunking) {
  auto fbank = MakeFbank();
  ASSERT_TRUE(fbank);
  std::mt19937 rng(1234);
  for (const Signal& s : signals_) {
    auto offline = fbank->Compute(s.wav);
    ASSERT_TRUE(offline.ok());
    for (int trial = 0; trial < 4; ++trial) {
      StreamingFbank stream(*fbank);
      std::vector<float> got;
      std::uniform_int_distribution<int> chunk_len(1, trial == 0 ? 7 : 3000);
      std::uniform_int_distribution<int> pop_len(0, 5);
      size_t pos = 0;
      while (pos < s.wav.size()) {
        const size_t n = std::min<size_t>(chunk_len(rng), s.wav.size() - pos);
        ASSERT_TRUE(stream.AcceptWaveform(std::span<const float>(s.wav).subspan(pos, n)).ok());
        pos += n;
        // Pop a few frames at a time (sometimes none) to exercise the ready queue.
        FeatureMatrix part = stream.PopFrames(pop_len(rng));
        EXPECT_EQ(part.dim, 80);
        got.insert(got.end(), part.data.begin(), part.data.end());
      }
      EXPECT_EQ(stream.num_samples_accepted(), int64_t(s.wav.size()));
      FeatureMatrix rest = stream.PopFrames();
      got.insert(got.end(), rest.data.begin(), rest.data.end());
      EXPECT_EQ(stream.NumFramesReady(), 0);
      EXPECT_EQ(stream.num_frames_popped(), offline->num_frames);
      // Bit-identical: streaming runs the same per-frame code on the same samples.
      ASSERT_EQ(got, offline->data) << s.name << " trial " << trial;
    }
  }
}

TEST(StreamingFbank, ResetStartsANewUtterance) {
  auto fbank = MakeFbank();
  std::vector<float> a(3000), b(2500);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.2f * std::sin(0.01f * float(i * i % 977));
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.1f * std::cos(0.3f * float(i));
  StreamingFbank stream(*fbank);
  ASSERT_TRUE(stream.AcceptWaveform(a).ok());
  EXPECT_EQ(stream.NumFramesReady(), fbank->NumFrames(3000));
  stream.Reset();
  EXPECT_EQ(stream.NumFramesReady(), 0);
  EXPECT_EQ(stream.num_samples_accepted(), 0);
  ASSERT_TRUE(stream.AcceptWaveform(b).ok());
  FeatureMatrix got = stream.PopFrames();
  EXPECT_EQ(got.data, fbank->Compute(b)->data);
}

TEST(StreamingFbank, RejectsBadChunkAndKeepsState) {
  auto fbank = MakeFbank();
  std::vector<float> x(2000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f * std::sin(0.07f * float(i));
  StreamingFbank stream(*fbank);
  ASSERT_TRUE(stream.AcceptWaveform(std::span<const float>(x).first(1000)).ok());
  std::vector<float> bad = {0.1f, NAN, 0.2f};
  EXPECT_EQ(stream.AcceptWaveform(bad).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(stream.AcceptWaveform(std::span<const float>(x).subspan(1000)).ok());
  EXPECT_EQ(stream.PopFrames().data, fbank->Compute(x)->data);
  // Too few samples for a frame: nothing ready, nothing lost.
  StreamingFbank short_stream(*fbank);
  ASSERT_TRUE(short_stream.AcceptWaveform(std::span<const float>(x).first(399)).ok());
  EXPECT_EQ(short_stream.NumFramesReady(), 0);
  EXPECT_EQ(short_stream.PopFrames(10).num_frames, 0);
  ASSERT_TRUE(short_stream.AcceptWaveform(std::span<const float>(x).subspan(399, 1)).ok());
  EXPECT_EQ(short_stream.NumFramesReady(), 1);
}

TEST_F(FbankFixture, ConcurrentComputeOnOneFbank) {
  auto fbank = MakeFbank();
  const Signal& s = signals_.back();
  auto expected = fbank->Compute(s.wav);
  ASSERT_TRUE(expected.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto got = fbank->Compute(s.wav);
        if (!got.ok() || got->data != expected->data) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// RealFft against a float64 DFT: float32 accuracy relative to the signal's norm.
TEST(RealFft, MatchesFloat64Dft) {
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 1000.0f);
  for (int n : {2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}) {
    auto fft = RealFft::Create(n);
    ASSERT_TRUE(fft.ok()) << n;
    std::vector<float> x(n), scratch(n);
    for (float& v : x) v = noise(rng);
    std::vector<float> y = x;
    fft->Forward(y.data(), scratch.data());
    double norm = 0, max_err = 0;
    for (float v : x) norm += double(v) * v;
    norm = std::sqrt(norm * n);  // bound on |X[k]|
    for (int k = 0; k <= n / 2; ++k) {
      std::complex<double> ref = 0;
      for (int j = 0; j < n; ++j) ref += double(x[j]) * std::polar(1.0, -2.0 * M_PI * double(j) * k / n);
      const double re = k == 0 ? y[0] : (k == n / 2 ? y[n - 1] : y[2 * k - 1]);
      const double im = (k == 0 || k == n / 2) ? 0.0 : y[2 * k];
      max_err = std::max(max_err, std::abs(std::complex<double>(re, im) - ref));
    }
    EXPECT_LE(max_err / norm, 1e-6) << "n=" << n;
  }
  for (int bad : {0, 1, 3, 400, 1000, -8}) EXPECT_FALSE(RealFft::Create(bad).ok()) << bad;
}

}  // namespace
}  // namespace u2
