#include "u2/frontend/streaming_fbank.h"

#include <algorithm>

namespace u2 {

StreamingFbank::StreamingFbank(const Fbank& fbank) : fbank_(fbank) {}

Status StreamingFbank::AcceptWaveform(std::span<const float> samples) {
  U2_RETURN_IF_ERROR(CheckFbankInput(samples));
  num_samples_accepted_ += static_cast<int64_t>(samples.size());
  carry_.insert(carry_.end(), samples.begin(), samples.end());
  const int64_t frames = fbank_.NumFrames(static_cast<int64_t>(carry_.size()));
  if (frames == 0) return Status::Ok();
  const int dim = fbank_.dim();
  const size_t old_size = ready_.size();
  ready_.resize(old_size + static_cast<size_t>(frames) * dim);
  fbank_.ComputeFrames(carry_, 0, frames, ready_.data() + old_size);
  num_ready_ += static_cast<int>(frames);
  // Keep what the next frame needs: everything from the start of frame `frames` on.
  carry_.erase(carry_.begin(), carry_.begin() + frames * fbank_.frame_shift());
  return Status::Ok();
}

FeatureMatrix StreamingFbank::PopFrames(int max_frames) {
  const int n = max_frames < 0 ? num_ready_ : std::min(max_frames, num_ready_);
  const int dim = fbank_.dim();
  FeatureMatrix out;
  out.num_frames = n;
  out.dim = dim;
  out.data.assign(ready_.begin(), ready_.begin() + static_cast<ptrdiff_t>(n) * dim);
  ready_.erase(ready_.begin(), ready_.begin() + static_cast<ptrdiff_t>(n) * dim);
  num_ready_ -= n;
  num_frames_popped_ += n;
  return out;
}

void StreamingFbank::Reset() {
  carry_.clear();
  ready_.clear();
  num_ready_ = 0;
  num_samples_accepted_ = 0;
  num_frames_popped_ = 0;
}

}  // namespace u2
