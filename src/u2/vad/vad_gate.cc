#include "u2/vad/vad_gate.h"

#include <algorithm>

namespace u2 {

VadGate::VadGate(const SileroVad* vad, const VadConfig& config)
    : vad_(vad),
      config_(config),
      min_speech_(int64_t{config.min_speech_ms} * SileroVad::kSampleRate / 1000),
      min_silence_(int64_t{config.min_silence_ms} * SileroVad::kSampleRate / 1000),
      pad_(int64_t{config.speech_pad_ms} * SileroVad::kSampleRate / 1000),
      neg_threshold_(config.negative_threshold()) {}

std::vector<GatedAudio> VadGate::Accept(std::span<const float> samples) {
  pending_.insert(pending_.end(), samples.begin(), samples.end());
  const size_t whole = pending_.size() / SileroVad::kWindow * SileroVad::kWindow;
  if (whole > 0 && vad_ != nullptr) {
    const std::span<const float> windows(pending_.data(), whole);
    const std::vector<float> probs = vad_->Process(vad_state_, windows);
    for (size_t w = 0; w < probs.size(); ++w) {
      AcceptWindow(windows.subspan(w * SileroVad::kWindow, SileroVad::kWindow), probs[w]);
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(whole));
  }
  return Take();
}

std::vector<GatedAudio> VadGate::Finish() {
  if (state_ == State::kOpen) {
    Pass(position_, pending_, false);
    position_ += static_cast<int64_t>(pending_.size());
    if (out_.empty()) out_.push_back({position_, {}, false, false});
    out_.back().ends = true;
    last_end_ = position_;
  }
  pending_.clear();
  held_.clear();
  state_ = State::kClosed;
  return Take();
}

std::vector<GatedAudio> VadGate::Take() {
  std::vector<GatedAudio> out = std::move(out_);
  out_.clear();
  return out;
}

void VadGate::Pass(int64_t start, std::span<const float> samples, bool starts) {
  // Consecutive windows of one run join the last piece (one piece per Accept call, mostly).
  if (!starts && !out_.empty() && !out_.back().ends &&
      out_.back().start + static_cast<int64_t>(out_.back().samples.size()) == start) {
    out_.back().samples.insert(out_.back().samples.end(), samples.begin(), samples.end());
    return;
  }
  out_.push_back({start, std::vector<float>(samples.begin(), samples.end()), starts, false});
}

void VadGate::AcceptWindow(std::span<const float> window, float p) {
  const int64_t at = position_;
  position_ += static_cast<int64_t>(window.size());
  if (state_ == State::kOpen) {
    Pass(at, window, false);
    if (p >= config_.threshold) {
      silence_start_.reset();
    } else if (p < neg_threshold_) {
      if (!silence_start_) silence_start_ = at;
      if (position_ - *silence_start_ >= min_silence_) {
        out_.back().ends = true;
        last_end_ = position_;
        state_ = State::kClosed;
        silence_start_.reset();
        held_start_ = position_;
      }
    }
    return;
  }

  held_.insert(held_.end(), window.begin(), window.end());
  if (state_ == State::kClosed && p >= config_.threshold) {
    state_ = State::kOpening;
    candidate_ = at;
  } else if (state_ == State::kOpening && p < neg_threshold_) {
    state_ = State::kClosed;  // too short to be speech
  }
  if (state_ == State::kOpening && position_ - candidate_ >= min_speech_) {
    const int64_t from = std::max({candidate_ - pad_, last_end_, held_start_});
    Pass(from,
         std::span<const float>(held_.data() + (from - held_start_), static_cast<size_t>(position_ - from)),
         true);
    state_ = State::kOpen;
    silence_start_.reset();
    held_.clear();
    held_start_ = position_;
    return;
  }
  // Keep only what a run opening later could reach back to: its padding before the candidate
  // start (or before the next window, when closed).
  const int64_t keep_from =
      std::max(state_ == State::kOpening ? candidate_ - pad_ : position_ - pad_, held_start_);
  if (keep_from > held_start_) {
    held_.erase(held_.begin(), held_.begin() + static_cast<ptrdiff_t>(keep_from - held_start_));
    held_start_ = keep_from;
  }
}

}  // namespace u2
