// A stream's audio as feature pieces: the one place where a live stream's samples become fbank
// frames, with or without the VAD gate (vad/vad_gate.h). RecognitionStream uses one directly
// (AcceptWaveform); the stream scheduler runs one per stream outside its lock and hands the
// pieces to RecognitionStream::AcceptFeatures.
//
// Without the gate the stream is one run: every Accept gives one piece, its frames exactly the
// offline fbank's over the concatenated audio. With the gate, only the audio it lets through is
// featurized, each run from a fresh fbank (the runs are not contiguous), and the pieces carry the
// run's place in the stream (`first_frame`) so that times stay those of the whole stream.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "u2/frontend/fbank.h"
#include "u2/frontend/streaming_fbank.h"
#include "u2/util/status.h"
#include "u2/vad/vad_gate.h"

namespace u2 {

struct FeaturePiece {
  FeatureMatrix frames;
  int64_t first_frame = 0;  // the stream-time frame (frame shift steps) of frames' first row
  bool starts_run = false;  // skipped audio comes before it: a new run (and segment) begins
  bool ends_run = false;    // the gate closed after it: the run's segment ends once decoded
};

class StreamFrontend {
 public:
  // `vad`: the gate's network, or null for no gate (the audio must be 16 kHz with a gate).
  StreamFrontend(const Fbank& fbank, std::shared_ptr<const SileroVad> vad, const VadConfig& gate);

  // Features of the next samples. InvalidArgument for NaN/Inf or absurd samples, and then nothing
  // of them is accepted (the frontend stays usable).
  StatusOr<std::vector<FeaturePiece>> Accept(std::span<const float> samples);
  // The input ended: what the gate still held (an open run's last samples).
  std::vector<FeaturePiece> Finish();

  bool gated() const { return gate_ != nullptr; }

 private:
  void Featurize(const GatedAudio& audio, std::vector<FeaturePiece>* out);

  StreamingFbank fbank_;
  std::shared_ptr<const SileroVad> vad_;  // keeps the gate's network alive
  std::unique_ptr<VadGate> gate_;
  int64_t run_first_frame_ = 0;  // stream-time frame of the current run's first sample
};

}  // namespace u2
