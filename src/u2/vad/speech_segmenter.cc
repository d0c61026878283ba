#include "u2/vad/speech_segmenter.h"

#include <algorithm>

namespace u2 {

SpeechSegmenter::SpeechSegmenter(const SileroVad& vad, const VadConfig& config)
    : vad_(vad), segmenter_(config, SileroVad::kWindow, SileroVad::kSampleRate) {}

std::vector<AudioSegment> SpeechSegmenter::Accept(std::span<const float> samples) {
  buffer_.insert(buffer_.end(), samples.begin(), samples.end());
  total_ += static_cast<int64_t>(samples.size());
  pending_.insert(pending_.end(), samples.begin(), samples.end());
  const size_t whole = pending_.size() / SileroVad::kWindow * SileroVad::kWindow;
  if (whole > 0) {
    for (float p : vad_.Process(state_, std::span<const float>(pending_.data(), whole))) segmenter_.Accept(p);
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(whole));
  }
  return Collect();
}

std::vector<AudioSegment> SpeechSegmenter::Finish() {
  segmenter_.Finish(total_);
  return Collect();
}

std::vector<AudioSegment> SpeechSegmenter::Collect() {
  std::vector<AudioSegment> out;
  for (const SpeechSegment& s : segmenter_.Take()) {
    AudioSegment a;
    a.start = std::max(s.start, buffer_start_);
    a.end = std::min(s.end, total_);
    a.forced_split = s.forced_split;
    if (a.end <= a.start) continue;
    a.samples.assign(buffer_.begin() + (a.start - buffer_start_), buffer_.begin() + (a.end - buffer_start_));
    out.push_back(std::move(a));
  }
  // Release the audio no segment to come can need.
  const int64_t keep_from = std::min(segmenter_.safe_release_point(), total_);
  if (keep_from > buffer_start_) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + (keep_from - buffer_start_));
    buffer_start_ = keep_from;
  }
  return out;
}

}  // namespace u2
