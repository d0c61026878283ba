#include "u2/vad/vad_segmenter.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace u2 {

void VadConfig::Register(OptionRegistry* r) {
  r->Add("vad-threshold", &threshold, "speech starts when the VAD's P(speech) reaches this");
  r->Add("vad-neg-threshold", &neg_threshold, "speech ends below this (unset: threshold - 0.15)");
  r->Add("vad-min-speech-ms", &min_speech_ms, "shorter speech is dropped");
  r->Add("vad-min-silence-ms", &min_silence_ms, "silence this long ends a segment");
  r->Add("vad-speech-pad-ms", &speech_pad_ms, "audio kept around each segment");
  r->Add("vad-max-segment-s", &max_segment_s, "longer segments are split at their quietest point");
}

float VadConfig::negative_threshold() const {
  return neg_threshold.value_or(std::max(threshold - 0.15f, 0.01f));
}

Status VadConfig::Validate() const {
  if (!(threshold > 0.0f && threshold < 1.0f)) {
    return InvalidArgument("vad threshold must be in (0, 1), got " + std::to_string(threshold));
  }
  const float neg = negative_threshold();
  if (!(neg > 0.0f && neg <= threshold)) {
    return InvalidArgument("vad neg_threshold must be in (0, threshold], got " + std::to_string(neg));
  }
  if (min_speech_ms < 0 || min_speech_ms > 60000)
    return InvalidArgument("vad min_speech_ms must be in [0, 60000]");
  if (min_silence_ms < 0 || min_silence_ms > 60000)
    return InvalidArgument("vad min_silence_ms must be in [0, 60000]");
  if (speech_pad_ms < 0 || speech_pad_ms > 10000)
    return InvalidArgument("vad speech_pad_ms must be in [0, 10000]");
  if (!(max_segment_s >= 1.0 && max_segment_s <= 3600.0)) {
    return InvalidArgument("vad max_segment_s must be in [1, 3600], got " + std::to_string(max_segment_s));
  }
  return Status::Ok();
}

std::string VadConfig::ToString() const {
  std::ostringstream os;
  os << "VadConfig(threshold=" << threshold << ", neg_threshold=" << negative_threshold()
     << ", min_speech_ms=" << min_speech_ms << ", min_silence_ms=" << min_silence_ms
     << ", speech_pad_ms=" << speech_pad_ms << ", max_segment_s=" << max_segment_s << ")";
  return os.str();
}

VadSegmenter::VadSegmenter(const VadConfig& config, int window, int sample_rate)
    : config_(config),
      window_(window),
      min_speech_(int64_t{config.min_speech_ms} * sample_rate / 1000),
      min_silence_(int64_t{config.min_silence_ms} * sample_rate / 1000),
      pad_(int64_t{config.speech_pad_ms} * sample_rate / 1000),
      max_segment_(static_cast<int64_t>(config.max_segment_s * sample_rate)),
      neg_threshold_(config.negative_threshold()) {}

void VadSegmenter::Emit(int64_t start, int64_t end, bool forced) {
  if (end - start < min_speech_) return;
  SpeechSegment s;
  // Padding reaches into the silence around the speech, but never into the previous segment, and a
  // forced split keeps the two halves touching (no audio lost or repeated).
  s.start = forced || start == last_end_ ? start : std::max(start - pad_, last_end_);
  s.end = forced ? end : std::min(end + pad_, position_);  // no later than the audio seen
  s.forced_split = forced;
  if (!ready_.empty() && s.start < ready_.back().end) s.start = ready_.back().end;
  last_end_ = s.end;
  ready_.push_back(s);
}

void VadSegmenter::Accept(float p) {
  const int64_t at = position_;
  position_ += window_;
  if (p >= config_.threshold) {
    silence_start_.reset();
    if (!triggered_) {
      triggered_ = true;
      start_ = at;
      history_.clear();
    }
  } else if (triggered_ && p < neg_threshold_) {
    if (!silence_start_) silence_start_ = at;
    if (position_ - *silence_start_ >= min_silence_) {
      Emit(start_, *silence_start_, false);
      triggered_ = false;
      silence_start_.reset();
      history_.clear();
      return;
    }
  }
  if (!triggered_) return;
  history_.emplace_back(at, p);
  if (position_ - start_ > max_segment_) {
    // Split at the quietest window of the segment's second half (the last such window on ties).
    const int64_t from = start_ + max_segment_ / 2;
    auto best = history_.end();
    for (auto it = history_.begin(); it != history_.end(); ++it) {
      if (it->first >= from && (best == history_.end() || it->second <= best->second)) best = it;
    }
    const int64_t cut = best == history_.end() ? at : best->first;
    Emit(start_, cut, true);
    start_ = cut;
    while (!history_.empty() && history_.front().first < cut) history_.pop_front();
    if (silence_start_ && *silence_start_ < cut) silence_start_ = cut;
  }
}

void VadSegmenter::Finish(int64_t total_samples) {
  if (triggered_) {
    const int64_t end = silence_start_ ? *silence_start_ : total_samples;
    Emit(start_, std::min(end, total_samples), false);
    triggered_ = false;
    silence_start_.reset();
    history_.clear();
  }
  for (SpeechSegment& s : ready_) s.end = std::min(s.end, total_samples);
}

std::vector<SpeechSegment> VadSegmenter::Take() {
  std::vector<SpeechSegment> out = std::move(ready_);
  ready_.clear();
  return out;
}

int64_t VadSegmenter::safe_release_point() const {
  // A segment still to come starts at the open segment's start (or later), minus its padding,
  // and never before the end of the last one emitted.
  const int64_t earliest = triggered_ ? start_ : position_;
  return std::max<int64_t>(0, std::max(earliest - pad_, last_end_));
}

}  // namespace u2
