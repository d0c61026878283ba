// Speech segments from per-window speech probabilities, with hysteresis (as silero's own
// get_speech_timestamps, sherpa-onnx and faster-whisper cut): speech starts when P(speech) reaches
// `threshold`, and ends once it has stayed below `neg_threshold` for `min_silence_ms`; segments
// shorter than `min_speech_ms` are dropped; each keeps `speech_pad_ms` of audio around it (never
// overlapping its neighbours); a segment longer than `max_segment_s` is split at its quietest
// window in the second half, so that no segment passes what the recognizer batches well.
// Streaming: probabilities go in one window at a time, segments come out as soon as they are sure.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "u2/util/option_registry.h"
#include "u2/util/status.h"

namespace u2 {

struct VadConfig {
  float threshold = 0.5f;
  std::optional<float> neg_threshold;  // unset: max(threshold - 0.15, 0.01)
  int min_speech_ms = 250;
  int min_silence_ms = 500;
  int speech_pad_ms = 200;
  double max_segment_s = 20.0;

  void Register(OptionRegistry* r);
  Status Validate() const;
  std::string ToString() const;
  float negative_threshold() const;
};

struct SpeechSegment {
  int64_t start = 0;  // samples (16 kHz) from the start of the audio, padding included
  int64_t end = 0;
  bool forced_split = false;  // ended by max_segment_s, not by silence
};

class VadSegmenter {
 public:
  // window: samples per probability (512 at 16 kHz); sample_rate: of those samples.
  VadSegmenter(const VadConfig& config, int window = 512, int sample_rate = 16000);

  // The next window's P(speech).
  void Accept(float probability);
  // No more audio (total_samples in all): an open segment ends there.
  void Finish(int64_t total_samples);
  // The segments decided since the last call, oldest first.
  std::vector<SpeechSegment> Take();
  // Samples before this position can no longer be part of a segment to come (the caller may
  // release them).
  int64_t safe_release_point() const;
  bool in_speech() const { return triggered_; }

 private:
  void Emit(int64_t start, int64_t end, bool forced);

  VadConfig config_;
  int window_;
  int64_t min_speech_, min_silence_, pad_, max_segment_;
  float neg_threshold_;
  int64_t position_ = 0;  // start sample of the next window
  bool triggered_ = false;
  int64_t start_ = 0;
  std::optional<int64_t> silence_start_;
  std::deque<std::pair<int64_t, float>> history_;  // (window start, probability) of the open segment
  int64_t last_end_ = 0;                           // padded end of the last segment emitted
  std::vector<SpeechSegment> ready_;
};

}  // namespace u2
