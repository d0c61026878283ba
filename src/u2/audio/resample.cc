// Resampling with libsoxr's one-shot API at high quality (linear phase, 20-bit precision,
// 91.3% passband): transparent for speech features, and deterministic.
#include <soxr.h>

#include <cmath>
#include <string>

#include "u2/audio/audio.h"

namespace u2 {
namespace {

// round(n * to / from), halves up, in integers: through the ratio as a double an exact half sample
// can land just below it (300 samples from 1000 to 209545 Hz are 62863.5, computed 62863.4999...).
int64_t ResampledLength(int64_t n, int from, int to) {
  const int64_t whole = n / from, rest = n % from;
  return whole * to + (2 * rest * to + from) / (2 * int64_t{from});
}

}  // namespace

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
  const auto out_len =
      static_cast<size_t>(ResampledLength(static_cast<int64_t>(in.size()), from_rate, to_rate));
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

StatusOr<std::unique_ptr<StreamingResampler>> StreamingResampler::Create(int from_rate, int to_rate) {
  for (int rate : {from_rate, to_rate}) {
    if (rate < kMinSampleRate || rate > kMaxSampleRate) {
      return InvalidArgument("resample: sample rate " + std::to_string(rate) + " Hz outside " +
                             std::to_string(kMinSampleRate) + ".." + std::to_string(kMaxSampleRate));
    }
  }
  std::unique_ptr<StreamingResampler> r(new StreamingResampler());
  r->ratio_ = static_cast<double>(to_rate) / from_rate;
  r->from_rate_ = from_rate;
  r->to_rate_ = to_rate;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
  soxr_error_t err = nullptr;
  r->soxr_ = soxr_create(from_rate, to_rate, 1, &err, &io, &quality, &runtime);
  if (err || r->soxr_ == nullptr)
    return Internal(std::string("resample: libsoxr failed: ") + (err ? err : "?"));
  return r;
}

StreamingResampler::~StreamingResampler() {
  if (soxr_) soxr_delete(static_cast<soxr_t>(soxr_));
}

StatusOr<std::vector<float>> StreamingResampler::Process(std::span<const float> in, bool last) {
  if (flushed_) return FailedPrecondition("resample: input after the last piece");
  for (size_t i = 0; i < in.size(); ++i) {
    if (!std::isfinite(in[i]))
      return InvalidArgument("resample: sample " + std::to_string(i) + " is NaN or infinite");
  }
  auto* s = static_cast<soxr_t>(soxr_);
  std::vector<float> out;
  // Room for this piece's share plus the filter's delay line.
  std::vector<float> buffer(static_cast<size_t>(std::ceil(static_cast<double>(in.size()) * ratio_)) + 1024);
  size_t offset = 0;
  while (offset < in.size()) {
    size_t in_done = 0, out_done = 0;
    soxr_error_t err = soxr_process(s, in.data() + offset, in.size() - offset, &in_done, buffer.data(),
                                    buffer.size(), &out_done);
    if (err) return Internal(std::string("resample: libsoxr failed: ") + err);
    offset += in_done;
    out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(out_done));
  }
  // Without `last`, what soxr holds back (its filter's delay) comes with the next piece. With it,
  // soxr is told the input has ended (no input pointer) and drained.
  while (last) {
    size_t out_done = 0;
    soxr_error_t err = soxr_process(s, nullptr, 0, nullptr, buffer.data(), buffer.size(), &out_done);
    if (err) return Internal(std::string("resample: libsoxr failed: ") + err);
    if (out_done == 0) break;
    out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(out_done));
  }
  samples_in_ += static_cast<int64_t>(in.size());
  if (last) {
    flushed_ = true;
    // The whole stream has Resample's length: round(n · to / from).
    const int64_t total = ResampledLength(samples_in_, from_rate_, to_rate_);
    const int64_t have = samples_out_ + static_cast<int64_t>(out.size());
    if (have > total) out.resize(out.size() - static_cast<size_t>(have - total));
    if (have < total) out.resize(out.size() + static_cast<size_t>(total - have), 0.0f);
  }
  samples_out_ += static_cast<int64_t>(out.size());
  return out;
}

}  // namespace u2
