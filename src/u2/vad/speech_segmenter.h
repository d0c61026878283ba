// Audio in, speech segments (with their samples) out: SileroVad's probabilities through a
// VadSegmenter, over a stream of 16 kHz samples of any length. It keeps only the audio a segment
// still to come may need (the open segment and its padding), so memory does not grow with the
// length of the recording.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "u2/vad/silero_vad.h"
#include "u2/vad/vad_segmenter.h"

namespace u2 {

struct AudioSegment {
  int64_t start = 0;  // samples from the start of the stream (16 kHz)
  int64_t end = 0;
  bool forced_split = false;
  std::vector<float> samples;  // [start, end)
  double start_seconds() const { return start / 16000.0; }
  double end_seconds() const { return end / 16000.0; }
};

class SpeechSegmenter {
 public:
  SpeechSegmenter(const SileroVad& vad, const VadConfig& config);

  // Appends audio; returns the segments it completes, oldest first.
  std::vector<AudioSegment> Accept(std::span<const float> samples);
  // The stream ended: the last segment, if one is open.
  std::vector<AudioSegment> Finish();
  int64_t samples_seen() const { return total_; }
  // Samples held now (the buffer the open segment needs).
  size_t buffered_samples() const { return buffer_.size(); }

 private:
  std::vector<AudioSegment> Collect();

  const SileroVad& vad_;
  VadSegmenter segmenter_;
  SileroVad::State state_;
  std::vector<float> pending_;  // the start of a window not yet complete
  std::vector<float> buffer_;   // samples [buffer_start_, total_)
  int64_t buffer_start_ = 0;
  int64_t total_ = 0;
};

}  // namespace u2
