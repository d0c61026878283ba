// A VAD gate for live streams: audio goes through while someone speaks and is held back while
// nobody does. Unlike VadSegmenter (which may look back over a whole segment before deciding it,
// right for files), the gate decides window by window with the smallest delay a live client can
// accept, and never takes back audio it has let through:
//   closed  -> P(speech) reaches `threshold`: opening (the candidate start is remembered)
//   opening -> P(speech) falls below `neg_threshold` before `min_speech_ms`: closed (a click, a
//              cough); speech for `min_speech_ms`: open, and the audio from `speech_pad_ms` before
//              the candidate start (never before the last run's end) is let through at once
//   open    -> every window is let through; P(speech) below `neg_threshold` for `min_silence_ms`
//              ends the run (its last piece carries `ends`); the silence before that point is
//              already through, which gives the recognizer the trailing context it needs
// `max_segment_s` is not used: a live run is not split by the gate (the recognizer ends a segment
// at its position table or at a CTC endpoint, streaming_recognizer.h).
// Memory is bounded: while closed, only the last speech_pad_ms + min_speech_ms of audio is kept.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "u2/vad/silero_vad.h"
#include "u2/vad/vad_segmenter.h"

namespace u2 {

// A piece of audio the gate let through. Pieces of one run are contiguous; a run's first piece has
// `starts` (its audio follows skipped audio), its last one `ends` (possibly with no samples).
struct GatedAudio {
  int64_t start = 0;  // samples (16 kHz) from the start of the stream
  std::vector<float> samples;
  bool starts = false;
  bool ends = false;
};

class VadGate {
 public:
  // `vad` (not owned) computes the probabilities in Accept(); it may be null when the caller
  // gives probabilities itself (AcceptWindow).
  VadGate(const SileroVad* vad, const VadConfig& config);

  // Appends 16 kHz audio; returns what the gate lets through, oldest first.
  std::vector<GatedAudio> Accept(std::span<const float> samples);
  // The stream ended: an open run is let through to the last sample and ended.
  std::vector<GatedAudio> Finish();
  // One window of SileroVad::kWindow samples with its P(speech) (what Accept does per window).
  void AcceptWindow(std::span<const float> window, float probability);
  // What AcceptWindow let through since the last call.
  std::vector<GatedAudio> Take();

  bool is_open() const { return state_ == State::kOpen; }
  // Samples held back now (the audio a run about to open may still need).
  size_t held_samples() const { return held_.size() + pending_.size(); }

 private:
  enum class State { kClosed, kOpening, kOpen };
  void Pass(int64_t start, std::span<const float> samples, bool starts);

  const SileroVad* vad_;
  SileroVad::State vad_state_;
  VadConfig config_;
  int64_t min_speech_, min_silence_, pad_;
  float neg_threshold_;
  State state_ = State::kClosed;
  int64_t position_ = 0;   // samples of whole windows seen
  int64_t candidate_ = 0;  // where the opening run's speech began
  int64_t last_end_ = 0;   // end of the last run let through
  std::optional<int64_t> silence_start_;
  std::vector<float> pending_;  // the start of a window not yet complete
  std::vector<float> held_;     // samples [held_start_, position_) kept while closed or opening
  int64_t held_start_ = 0;
  std::vector<GatedAudio> out_;
};

}  // namespace u2
