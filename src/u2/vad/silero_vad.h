// Silero VAD v6 (16 kHz), run by u2serve itself: the speech probability of every 32 ms window.
//
// The network (converted from silero's ONNX by tools/convert_silero_vad.py; docs/vad.md):
//   576 samples (the previous window's last 64 + 512 new), reflect-padded on the right by 64
//   -> STFT as a convolution: 258 filters of 256 taps every 128 samples (4 frames), magnitude of
//      the 129 complex bins
//   -> 4 Conv1d (kernel 3, padding 1, strides 1, 2, 2, 1; 129 -> 128 -> 64 -> 64 -> 128) + ReLU,
//      leaving one frame of 128
//   -> LSTMCell(128, 128) carrying (h, c) from window to window
//   -> ReLU -> Linear(128 -> 1) -> sigmoid = P(speech)
// Everything before the LSTM is independent per window, so a run of windows goes through it as
// a few matrix products (the backend's GEMM); only the small LSTM step is sequential.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/util/status.h"

namespace u2 {

class SileroVad {
 public:
  static constexpr int kSampleRate = 16000;
  static constexpr int kWindow = 512;  // new samples per probability (32 ms)
  static constexpr int kContext = 64;  // samples of the previous window each window also sees
  static constexpr int kHidden = 128;

  // Loads DIR/vad.json and DIR/vad.safetensors. `backend`: where the products run (CPU).
  static StatusOr<std::unique_ptr<SileroVad>> Load(const std::string& dir,
                                                   std::shared_ptr<const Backend> backend = nullptr);

  // One audio stream's state: the LSTM's (h, c) and the last kContext samples.
  struct State {
    std::vector<float> h = std::vector<float>(kHidden, 0.0f);
    std::vector<float> c = std::vector<float>(kHidden, 0.0f);
    std::vector<float> context = std::vector<float>(kContext, 0.0f);
  };

  // P(speech) of each whole window of `samples` (16 kHz, [-1, 1)), in order, carrying `state`:
  // samples.size() / kWindow probabilities; a trailing part of a window is the caller's to keep.
  // Thread-safe (const); one State per stream.
  std::vector<float> Process(State& state, std::span<const float> samples) const;

 private:
  SileroVad() = default;
  std::shared_ptr<const Backend> backend_;
  // Weights as GEMM operands (rows = outputs): the STFT basis (258 x 256), each conv as
  // (out x 3·in) with columns [tap][in], the LSTM input weights (512 x 128) and biases summed.
  std::vector<float> basis_, conv_w_[4], conv_b_[4], w_ih_, w_hh_, b_gates_, out_w_;
  float out_b_ = 0;
};

}  // namespace u2
