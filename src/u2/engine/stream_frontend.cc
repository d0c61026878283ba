#include "u2/engine/stream_frontend.h"

namespace u2 {

StreamFrontend::StreamFrontend(const Fbank& fbank, std::shared_ptr<const SileroVad> vad,
                               const VadConfig& gate)
    : fbank_(fbank), vad_(std::move(vad)) {
  if (vad_) gate_ = std::make_unique<VadGate>(vad_.get(), gate);
}

StatusOr<std::vector<FeaturePiece>> StreamFrontend::Accept(std::span<const float> samples) {
  // Checked before the gate sees them: the gate may hold samples back, and bad input must be
  // refused whole, whatever the gate's state.
  U2_RETURN_IF_ERROR(CheckFbankInput(samples));
  std::vector<FeaturePiece> out;
  if (!gate_) {
    FeaturePiece piece;
    piece.first_frame = fbank_.num_frames_popped();
    U2_RETURN_IF_ERROR(fbank_.AcceptWaveform(samples));
    piece.frames = fbank_.PopFrames();
    out.push_back(std::move(piece));
    return out;
  }
  for (const GatedAudio& audio : gate_->Accept(samples)) Featurize(audio, &out);
  return out;
}

std::vector<FeaturePiece> StreamFrontend::Finish() {
  std::vector<FeaturePiece> out;
  if (gate_) {
    for (const GatedAudio& audio : gate_->Finish()) Featurize(audio, &out);
  }
  return out;
}

void StreamFrontend::Featurize(const GatedAudio& audio, std::vector<FeaturePiece>* out) {
  if (audio.starts) {
    fbank_.Reset();
    run_first_frame_ = audio.start / fbank_.frame_shift();
  }
  FeaturePiece piece;
  piece.first_frame = run_first_frame_ + fbank_.num_frames_popped();
  piece.starts_run = audio.starts;
  piece.ends_run = audio.ends;
  // The samples were checked in Accept(); the gate only passes them on.
  (void)fbank_.AcceptWaveform(audio.samples);
  piece.frames = fbank_.PopFrames();
  out->push_back(std::move(piece));
}

}  // namespace u2
