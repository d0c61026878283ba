// A recording longer than the model takes whole, served: the VAD cuts it into speech segments
// (on a thread of its own, not an I/O thread), each segment becomes a task of the model dir's
// dynamic batcher (so a long file's segments batch with each other and with other requests),
// and the results come back in order, with times from the recording's start.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <vector>

#include "u2/engine/long_audio.h"
#include "u2/engine/transcript.h"
#include "u2/server/model_repository.h"

namespace u2::server {

struct LongAudioRequest {
  ServedModel* model = nullptr;
  const LongAudioRecognizer* segmenter = nullptr;  // its VAD and settings
  std::vector<float> samples;                      // at kWireSampleRate
  DecodingOptions options;
  std::optional<std::chrono::steady_clock::time_point> deadline;  // per segment task
  std::function<bool()> cancelled;
  // Each segment's result, in order, as soon as it and every earlier one are done (SSE).
  std::function<void(const TimedResult&)> on_segment;
  // Exactly once: every segment in order, or the first error.
  std::function<void(StatusOr<std::vector<TimedResult>>)> done;
};

// Starts the job and returns at once; `done` runs on a batcher worker or the job's thread.
void StartLongAudioJob(LongAudioRequest request);

}  // namespace u2::server
