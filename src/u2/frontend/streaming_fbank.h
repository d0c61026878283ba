// Streaming fbank: audio arrives in chunks of any size and the frames come out exactly as the
// offline Fbank::Compute would give them for the concatenated audio (runtime/core style: the
// samples after the last complete frame's start are carried over to the next chunk).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "u2/frontend/fbank.h"
#include "u2/util/status.h"

namespace u2 {

// Not thread-safe (one per stream); the Fbank it copies shares its tables with the original.
class StreamingFbank {
 public:
  explicit StreamingFbank(const Fbank& fbank);

  // Appends samples and computes every frame they complete. NaN/Inf or |x| > 1e6 is
  // InvalidArgument, and then nothing of this chunk is accepted.
  Status AcceptWaveform(std::span<const float> samples);
  // Frames computed and not yet popped.
  int NumFramesReady() const { return num_ready_; }
  // Removes and returns up to max_frames of the oldest ready frames (max_frames < 0: all).
  FeatureMatrix PopFrames(int max_frames = -1);
  // Forgets all samples and frames: the next sample starts a new utterance.
  void Reset();

  int dim() const { return fbank_.dim(); }
  int frame_shift() const { return fbank_.frame_shift(); }  // samples
  int64_t num_samples_accepted() const { return num_samples_accepted_; }
  int64_t num_frames_popped() const { return num_frames_popped_; }

 private:
  Fbank fbank_;
  std::vector<float> carry_;  // samples from the start of the next (incomplete) frame on
  std::vector<float> ready_;  // num_ready_ x dim, oldest first
  int num_ready_ = 0;
  int64_t num_samples_accepted_ = 0;
  int64_t num_frames_popped_ = 0;
};

}  // namespace u2
