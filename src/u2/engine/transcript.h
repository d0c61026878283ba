// A timed transcript of a recording: the recognised stretches (one for a short clip, one per VAD
// segment of a long one) as segments with words, times and confidences, and the caption formats
// (SRT, WebVTT) and plain JSON that u2recognize and the server write.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "u2/engine/recognizer.h"

namespace u2 {

// One recognised stretch of a recording: where it is, and its result with word times counted
// from the recording's start.
struct TimedResult {
  double start = 0, end = 0;  // seconds
  RecognitionResult result;
};

struct TranscriptWord {
  std::string word;
  double start = 0, end = 0;  // seconds from the recording's start
  float confidence = 1.0f;
};
struct TranscriptSegment {
  int id = 0;
  double start = 0, end = 0;
  std::string text;
  std::vector<int> tokens;  // the model's unit ids
  float confidence = 1.0f;  // the mean of its words' (1 for no words)
  double avg_logprob = 0;   // CTC log-probability per token of the best path
  std::vector<TranscriptWord> words;
};
struct Transcript {
  std::string text;
  double duration = 0;  // seconds of audio
  std::vector<TranscriptSegment> segments;
  std::vector<TranscriptWord> words;  // all segments' words, in order
};

// Caption segments: within each stretch, a new segment starts at a pause of at least `pause_s`
// between words and before a segment would pass `max_segment_s`.
struct CaptionRules {
  double pause_s = 0.6;
  double max_segment_s = 8.0;
};

Transcript MakeTranscript(std::span<const TimedResult> stretches, double duration_seconds,
                          const CaptionRules& rules = {});
// A clip recognised as one piece.
Transcript MakeTranscript(const RecognitionResult& result, const CaptionRules& rules = {});

std::string SrtTime(double seconds);  // 00:01:02,345
std::string VttTime(double seconds);  // 00:01:02.345
std::string FormatSrt(const Transcript& t);
std::string FormatVtt(const Transcript& t);
// {"text", "duration", "segments": [{"id", "start", "end", "text", "confidence", "words": [{"word",
// "start", "end", "confidence"}]}]}, one line.
std::string FormatTranscriptJson(const Transcript& t, const std::string& key = "");

// Moves a stretch's word times by offset_ms (its start in the recording).
void ShiftTimes(RecognitionResult* result, int64_t offset_ms);

}  // namespace u2
