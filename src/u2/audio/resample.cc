// Resampling with libsoxr's one-shot API at high quality (linear phase, 20-bit precision,
// 91.3% passband): transparent for speech features, and deterministic.
#include <soxr.h>

#include <cmath>
#include <string>

#include "u2/audio/audio.h"

namespace u2 {

StatusOr<std::vector<float>> Resample(std::span<const float> in, int from_rate, int to_rate) {
  for (int rate : {from_rate, to_rate}) {
    if (rate < kMinSampleRate || rate > kMaxSampleRate) {
      return InvalidArgument("resample: sample rate " + std::to_string(rate) + " Hz outside " +
                             std::to_string(kMinSampleRate) + ".." + std::to_string(kMaxSampleRate));
    }
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if (!std::isfinite(in[i])) {
      return InvalidArgument("resample: sample " + std::to_string(i) + " is NaN or infinite");
    }
  }
  if (from_rate == to_rate) return std::vector<float>(in.begin(), in.end());
  const double ratio = static_cast<double>(to_rate) / from_rate;
  const auto out_len = static_cast<size_t>(std::llround(static_cast<double>(in.size()) * ratio));
  std::vector<float> out(out_len);
  if (in.empty() || out_len == 0) return out;

  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);  // one thread: callers parallelise
  size_t in_done = 0, out_done = 0;
  soxr_error_t err = soxr_oneshot(from_rate, to_rate, 1, in.data(), in.size(), &in_done, out.data(), out_len,
                                  &out_done, &io, &quality, &runtime);
  if (err) return Internal(std::string("resample: libsoxr failed: ") + err);
  // soxr flushes its filter tail, so it delivers the full length; pad defensively if one
  // sample short (e.g. rounding of a fractional output length).
  out.resize(out_done);
  out.resize(out_len, 0.0f);
  return out;
}

}  // namespace u2
