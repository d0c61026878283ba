// Kaldi fbank in float32, following torchaudio.compliance.kaldi.fbank's order of operations:
//   x = wav * 32768; x -= mean(x); x[j] -= 0.97 * x[j-1] (x[-1] := x[0]); x *= window;
//   P = |rfft(x, 512)|^2; E = P . W^T; log(max(E, FLT_EPSILON)).
// Every step rounds to float32 where torchaudio does (no fused multiply-adds). The frame mean
// repeats torch's vectorised float32 summation order and RealFft repeats pocketfft's, because
// the spectra of loud frames have bins 10+ orders of magnitude below their peak whose float32
// values are pure rounding noise: only the same operations reproduce the same noise. What is
// left (the mel dot products' order, sqrt/log last-bit differences) sums positive terms and
// moves a log-mel value by ~1e-6 at most.
#include "u2/frontend/fbank.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <sstream>

#include "u2/frontend/real_fft.h"

// Contracting a*b+c into an FMA changes float32 rounding and with it agreement with torchaudio.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace u2 {
namespace {

// torch.sum over a contiguous float32 row as ATen 1.13 computes it with AVX2 kernels (8 lanes):
// 4 interleaved vector accumulators over groups of 4 vectors (with a cascade of partial sums for
// long rows), the leftover vectors into accumulator 0, accumulators 1..3 folded into 0, then the
// scalar tail and the 8 lanes added in order. Verified bit-exact against torch.mean on random
// rows of 400 (tools/gen_frontend_fixtures.py makes signals where a 1-ulp difference shows).
float TorchRowSum(const float* x, int n) {
  constexpr int kLanes = 8, kIlp = 4, kLevels = 4;
  using Vec = std::array<float, kLanes>;
  auto add = [](Vec& acc, const float* v) {
    for (int l = 0; l < kLanes; ++l) acc[l] += v[l];
  };
  const int num_vecs = n / kLanes;
  float total = 0.0f;
  if (num_vecs > 0) {
    const int rows = num_vecs / kIlp;  // groups of kIlp vectors
    // CeilLog2 as ATen defines it (1 for x <= 2).
    int ceil_log2 = 1;
    if (rows > 2) {
      ceil_log2 = 0;
      while ((int64_t{1} << ceil_log2) < rows) ++ceil_log2;
    }
    const int level_power = std::max(4, ceil_log2 / kLevels);
    const int level_step = 1 << level_power;
    const int64_t level_mask = level_step - 1;
    Vec acc[kLevels][kIlp] = {};
    int i = 0;
    while (i + level_step <= rows) {
      for (int j = 0; j < level_step; ++j, ++i) {
        for (int k = 0; k < kIlp; ++k) add(acc[0][k], x + (i * kIlp + k) * kLanes);
      }
      for (int j = 1; j < kLevels; ++j) {
        for (int k = 0; k < kIlp; ++k) {
          add(acc[j][k], acc[j - 1][k].data());
          acc[j - 1][k] = Vec{};
        }
        if ((i & (level_mask << (j * level_power))) != 0) break;
      }
    }
    for (; i < rows; ++i) {
      for (int k = 0; k < kIlp; ++k) add(acc[0][k], x + (i * kIlp + k) * kLanes);
    }
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k) add(acc[0][k], acc[j][k].data());
    }
    Vec partial = acc[0][0];
    for (int v = rows * kIlp; v < num_vecs; ++v) add(partial, x + v * kLanes);
    for (int k = 1; k < kIlp; ++k) add(partial, acc[0][k].data());
    for (int t = num_vecs * kLanes; t < n; ++t) total += x[t];
    for (int l = 0; l < kLanes; ++l) total += partial[l];
  } else {
    for (int t = 0; t < n; ++t) total += x[t];
  }
  return total;
}

int SamplesOf(int sample_rate, float ms) {
  // Kaldi: static_cast<int32>(samp_freq * 0.001 * ms); the epsilon keeps 25 ms at 16 kHz at 400
  // whichever way the product rounds.
  return static_cast<int>(static_cast<double>(sample_rate) * 0.001 * ms + 1e-6);
}

float MelScale(float freq) {  // torchaudio mel_scale on a float32 tensor
  return 1127.0f * std::log(1.0f + freq / 700.0f);
}

double MelScaleDouble(double freq) { return 1127.0 * std::log(1.0 + freq / 700.0); }

}  // namespace

struct Fbank::Tables {
  FbankConfig config;
  int frame_length = 0;
  int frame_shift = 0;
  int fft_size = 0;
  std::vector<float> window;  // frame_length
  // Sparse mel weights: bin b covers FFT bins [first[b], first[b] + weights[b].size()).
  std::vector<int> first;
  std::vector<std::vector<float>> weights;
  RealFft fft;

  Tables(const FbankConfig& c, RealFft f) : config(c), fft(std::move(f)) {}
};

int FbankConfig::FrameLengthSamples() const { return SamplesOf(sample_rate, frame_length_ms); }
int FbankConfig::FrameShiftSamples() const { return SamplesOf(sample_rate, frame_shift_ms); }
int FbankConfig::FftSize() const {
  int n = 1;
  while (n < FrameLengthSamples()) n <<= 1;
  return n;
}
float FbankConfig::EffectiveHighFreq() const {
  return high_freq > 0.0f ? high_freq : 0.5f * static_cast<float>(sample_rate) + high_freq;
}

Status FbankConfig::Validate() const {
  auto bad = [this](const std::string& why) {
    return InvalidArgument("FbankConfig: " + why + " (" + ToString() + ")");
  };
  if (sample_rate < 1000 || sample_rate > 384000) return bad("sample_rate must be in 1000..384000");
  if (num_mel_bins < 4 || num_mel_bins > 1024) return bad("num_mel_bins must be in 4..1024");
  if (!(frame_length_ms > 0.0f) || !(frame_shift_ms > 0.0f)) return bad("frame length and shift must be > 0");
  const int len = FrameLengthSamples(), shift = FrameShiftSamples();
  if (len < 2 || len > 65536) return bad("frame length must be 2..65536 samples");
  if (shift < 1 || shift > len) return bad("frame shift must be 1..frame length samples");
  if (!std::isfinite(input_scale) || !(input_scale > 0.0f)) return bad("input_scale must be finite and > 0");
  if (!std::isfinite(preemph) || preemph < 0.0f || preemph > 1.0f) return bad("preemph must be in [0, 1]");
  const float nyquist = 0.5f * static_cast<float>(sample_rate);
  const float high = EffectiveHighFreq();
  if (!std::isfinite(low_freq) || !std::isfinite(high_freq)) return bad("low_freq/high_freq must be finite");
  if (!(low_freq >= 0.0f && low_freq < nyquist)) return bad("low_freq must be in [0, Nyquist)");
  if (!(high > 0.0f && high <= nyquist && low_freq < high))
    return bad("need 0 < low_freq < high_freq <= Nyquist");
  return Status::Ok();
}

std::string FbankConfig::ToString() const {
  std::ostringstream s;
  s << "FbankConfig{sample_rate=" << sample_rate << ", num_mel_bins=" << num_mel_bins
    << ", frame_length_ms=" << frame_length_ms << ", frame_shift_ms=" << frame_shift_ms
    << ", input_scale=" << input_scale << ", low_freq=" << low_freq << ", high_freq=" << high_freq
    << ", preemph=" << preemph << ", remove_dc=" << (remove_dc ? "true" : "false") << "}";
  return s.str();
}

std::vector<float> PoveyWindow(int length) {
  // torch: hann_window(M, periodic=False).pow(0.85) in float32. torch evaluates cos and pow with
  // SLEEF's vectorised 1-ulp functions, so a few of its values differ from these (correctly
  // rounded) ones in the last bit; Fbank::Create(config, window) accepts torch's exact table.
  std::vector<float> window(length);
  const float step = static_cast<float>(2.0 * std::numbers::pi / (length - 1));
  for (int j = 0; j < length; ++j) {
    const float hann =
        -0.5f * static_cast<float>(std::cos(static_cast<double>(static_cast<float>(j) * step))) + 0.5f;
    window[j] = static_cast<float>(std::pow(static_cast<double>(hann), static_cast<double>(0.85f)));
  }
  return window;
}

StatusOr<std::unique_ptr<Fbank>> Fbank::Create(const FbankConfig& config) {
  U2_RETURN_IF_ERROR(config.Validate());
  return Create(config, PoveyWindow(config.FrameLengthSamples()));
}

StatusOr<std::unique_ptr<Fbank>> Fbank::Create(const FbankConfig& config, std::span<const float> window) {
  U2_RETURN_IF_ERROR(config.Validate());
  const int m = config.FrameLengthSamples();
  if (static_cast<int>(window.size()) != m) {
    return InvalidArgument("Fbank: window has " + std::to_string(window.size()) + " values, the frame " +
                           std::to_string(m));
  }
  for (float w : window) {
    if (!(w >= 0.0f && w <= 1.0f)) return InvalidArgument("Fbank: window values must lie in [0, 1]");
  }
  U2_ASSIGN_OR_RETURN(RealFft fft, RealFft::Create(config.FftSize()));
  auto t = std::make_shared<Tables>(config, std::move(fft));
  t->frame_length = m;
  t->frame_shift = config.FrameShiftSamples();
  t->fft_size = config.FftSize();
  t->window.assign(window.begin(), window.end());

  for (MelBin& bin : MelFilterbank(config)) {
    t->first.push_back(bin.first);
    t->weights.push_back(std::move(bin.weights));
  }

  return std::unique_ptr<Fbank>(new Fbank(std::move(t)));
}

std::vector<MelBin> MelFilterbank(const FbankConfig& config) {
  const int num_bins = config.num_mel_bins;
  const int fft_size = config.FftSize();
  const int num_fft_bins = fft_size / 2;  // the Nyquist bin gets weight 0
  const double mel_low = MelScaleDouble(config.low_freq);
  const double mel_high = MelScaleDouble(config.EffectiveHighFreq());
  const auto delta = static_cast<float>((mel_high - mel_low) / (num_bins + 1));
  const auto mel_low_f = static_cast<float>(mel_low);
  const auto bin_width = static_cast<float>(static_cast<double>(config.sample_rate) / fft_size);
  std::vector<float> fft_mel(num_fft_bins);
  for (int k = 0; k < num_fft_bins; ++k) fft_mel[k] = MelScale(bin_width * static_cast<float>(k));
  std::vector<MelBin> bins(num_bins);
  for (int b = 0; b < num_bins; ++b) {
    const float left = mel_low_f + static_cast<float>(b) * delta;
    const float center = mel_low_f + static_cast<float>(b + 1) * delta;
    const float right = mel_low_f + static_cast<float>(b + 2) * delta;
    int first = -1;
    std::vector<float>& w = bins[b].weights;
    for (int k = 0; k < num_fft_bins; ++k) {
      const float up = (fft_mel[k] - left) / (center - left);
      const float down = (right - fft_mel[k]) / (right - center);
      const float weight = std::max(0.0f, std::min(up, down));
      if (weight > 0.0f) {
        if (first < 0) first = k;
        w.resize(k - first + 1, 0.0f);
        w[k - first] = weight;
      }
    }
    bins[b].first = first < 0 ? 0 : first;  // an empty triangle sums nothing: the log floor
  }
  return bins;
}

const FbankConfig& Fbank::config() const { return tables_->config; }
int Fbank::frame_length() const { return tables_->frame_length; }
int Fbank::frame_shift() const { return tables_->frame_shift; }

int64_t Fbank::NumFrames(int64_t num_samples) const {
  if (num_samples < tables_->frame_length) return 0;
  return 1 + (num_samples - tables_->frame_length) / tables_->frame_shift;
}

Status CheckFbankInput(std::span<const float> samples) {
  for (size_t i = 0; i < samples.size(); ++i) {
    const float v = samples[i];
    if (!(std::abs(v) <= Fbank::kMaxAbsSample)) {  // also catches NaN
      return InvalidArgument("fbank: sample " + std::to_string(i) + " is " + std::to_string(v) +
                             (std::isfinite(v) ? " (|x| > 1e6; expected [-1, 1))" : " (not finite)"));
    }
  }
  return Status::Ok();
}

StatusOr<FeatureMatrix> Fbank::Compute(std::span<const float> samples) const {
  U2_RETURN_IF_ERROR(CheckFbankInput(samples));
  const int64_t frames = NumFrames(static_cast<int64_t>(samples.size()));
  if (frames > (int64_t{1} << 31) / std::max(1, dim())) return ResourceExhausted("fbank: input too long");
  FeatureMatrix out;
  out.num_frames = static_cast<int>(frames);
  out.dim = dim();
  out.data.resize(static_cast<size_t>(frames) * dim());
  ComputeFrames(samples, 0, frames, out.data.data());
  return out;
}

void Fbank::ComputeFrames(std::span<const float> samples, int64_t first_frame, int64_t num_frames,
                          float* out) const {
  const Tables& t = *tables_;
  const FbankConfig& c = t.config;
  const int m = t.frame_length;
  const int n = t.fft_size;
  const int num_bins = c.num_mel_bins;
  std::vector<float> buffer(2 * n + n / 2 + 1);  // per call: Compute may run on many threads
  float* frame = buffer.data();
  float* scratch = frame + n;
  float* power = scratch + n;
  const float scale = c.input_scale;
  const float preemph = c.preemph;
  const float count = static_cast<float>(m);

  for (int64_t f = 0; f < num_frames; ++f) {
    const float* src = samples.data() + (first_frame + f) * t.frame_shift;
    for (int j = 0; j < m; ++j) frame[j] = src[j] * scale;
    if (c.remove_dc) {
      const float mean = TorchRowSum(frame, m) / count;  // torch.mean: sum, then divide
      for (int j = 0; j < m; ++j) frame[j] -= mean;
    }
    if (preemph != 0.0f) {
      for (int j = m - 1; j > 0; --j) frame[j] = frame[j] - preemph * frame[j - 1];
      frame[0] = frame[0] - preemph * frame[0];
    }
    for (int j = 0; j < m; ++j) frame[j] *= t.window[j];
    std::fill(frame + m, frame + n, 0.0f);
    t.fft.Forward(frame, scratch);  // half-complex: r0, r1, i1, ..., r(n/2)
    // torch: rfft(x).abs().pow(2): |X| = sqrt(re^2 + im^2) rounded, then squared.
    auto power_of = [](float re, float im) {
      const float mag = std::sqrt(re * re + im * im);
      return mag * mag;
    };
    power[0] = power_of(frame[0], 0.0f);
    for (int k = 1; k < n / 2; ++k) power[k] = power_of(frame[2 * k - 1], frame[2 * k]);
    power[n / 2] = power_of(frame[n - 1], 0.0f);
    float* row = out + f * num_bins;
    for (int b = 0; b < num_bins; ++b) {
      const float* w = t.weights[b].data();
      const float* p = power + t.first[b];
      const size_t len = t.weights[b].size();
      float e = 0.0f;
      for (size_t k = 0; k < len; ++k) e += w[k] * p[k];
      row[b] = std::log(std::max(e, FLT_EPSILON));
    }
  }
}

}  // namespace u2
