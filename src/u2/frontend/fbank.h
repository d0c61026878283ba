// Kaldi-compatible log-mel filterbank features, matching WeNet's
//   torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins=80, frame_length=25,
//                                     frame_shift=10, dither=0.0, energy_floor=0.0)
// i.e. Povey window, pre-emphasis 0.97, per-frame DC removal, 512-point FFT, power spectrum,
// HTK-mel triangles from low_freq to Nyquist (the Nyquist bin has zero weight),
// log(max(E, FLT_EPSILON)), snip_edges framing, no dither, no energy column.
//
// Arithmetic is float32 in torchaudio's order of operations (see fbank.cc) so that results
// agree with torchaudio to float32 rounding wherever the signal is above float32's noise floor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

struct FbankConfig {
  int sample_rate = 16000;
  int num_mel_bins = 80;
  float frame_length_ms = 25.0f;
  float frame_shift_ms = 10.0f;
  // Waveforms arrive in [-1, 1); WeNet scales them to the int16 range before Kaldi fbank.
  float input_scale = 32768.0f;
  float low_freq = 20.0f;
  // Upper edge of the mel bank; <= 0 means Nyquist + high_freq (Kaldi's convention), so 0 = Nyquist.
  float high_freq = 0.0f;
  float preemph = 0.97f;  // 0 disables pre-emphasis
  bool remove_dc = true;

  // Derived sizes (Kaldi's rules): frame length/shift in samples, FFT size = next power of two.
  int FrameLengthSamples() const;
  int FrameShiftSamples() const;
  int FftSize() const;
  float EffectiveHighFreq() const;

  Status Validate() const;
  std::string ToString() const;
};

// Row-major num_frames x dim.
struct FeatureMatrix {
  int num_frames = 0;
  int dim = 0;
  std::vector<float> data;

  std::span<const float> Row(int t) const { return {data.data() + int64_t{t} * dim, size_t(dim)}; }
};

// Immutable after Create: the window, the sparse mel weights and the FFT twiddles are computed once.
// Compute() is const and safe to call from many threads at once on one shared Fbank.
// Copies are cheap and share the precomputed tables.
class Fbank {
 public:
  static StatusOr<std::unique_ptr<Fbank>> Create(const FbankConfig& config);
  // Same, with an explicit analysis window of FrameLengthSamples() values in [0, 1] instead of
  // the computed Povey window: e.g. torch's own float32 table (torch.hann_window(400,
  // periodic=False).pow(0.85)), which makes the output match torchaudio to ~1e-5 even in bins at
  // float32's noise floor (see fbank.cc).
  static StatusOr<std::unique_ptr<Fbank>> Create(const FbankConfig& config, std::span<const float> window);

  const FbankConfig& config() const;
  int dim() const { return config().num_mel_bins; }
  int frame_length() const;  // samples
  int frame_shift() const;   // samples

  // snip_edges framing: 0 if num_samples < frame_length, else 1 + (num_samples - frame_length) / shift.
  int64_t NumFrames(int64_t num_samples) const;

  // Features of a whole utterance. Samples must be finite with |x| <= kMaxAbsSample
  // (InvalidArgument otherwise). Fewer samples than one frame give a 0 x dim matrix.
  StatusOr<FeatureMatrix> Compute(std::span<const float> samples) const;

  // Computes frames [first_frame, first_frame + num_frames) of `samples` (frame t starts at
  // sample t * shift) into out (num_frames * dim floats). The caller guarantees that the
  // samples are finite and that the frames lie inside `samples`; Compute and StreamingFbank
  // check this before calling.
  void ComputeFrames(std::span<const float> samples, int64_t first_frame, int64_t num_frames,
                     float* out) const;

  // Larger magnitudes are surely not [-1, 1) audio and could overflow the power spectrum.
  static constexpr float kMaxAbsSample = 1.0e6f;

  struct Tables;  // window, mel weights, FFT (fbank.cc)

 private:
  explicit Fbank(std::shared_ptr<const Tables> tables) : tables_(std::move(tables)) {}
  std::shared_ptr<const Tables> tables_;
};

// The Povey window (0.5 - 0.5 cos(2 pi j / (length - 1)))^0.85 in float32, correctly rounded.
std::vector<float> PoveyWindow(int length);

// One mel triangle: weights for the FFT bins [first, first + weights.size()).
struct MelBin {
  int first = 0;
  std::vector<float> weights;  // empty for a triangle that covers no FFT bin (tiny FFT sizes)
};
// The mel filterbank exactly as torchaudio's get_mel_banks computes it (scalars in double,
// tensors in float32); the Nyquist bin gets weight 0. Shared by Fbank and the GPU fbank.
std::vector<MelBin> MelFilterbank(const FbankConfig& config);

// Returns InvalidArgument naming the first sample that is NaN, infinite or beyond
// Fbank::kMaxAbsSample.
Status CheckFbankInput(std::span<const float> samples);

}  // namespace u2
