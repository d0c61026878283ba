// Recordings of any length, offline: read block by block (audio/audio.h AudioFileReader), cut
// into speech segments by the VAD (vad/speech_segmenter.h), the segments recognised in batches,
// the results stitched with times from the recording's start (engine/transcript.h).
//
// Memory follows the segments in flight, not the recording: a 2-hour file is never held as one
// waveform or one feature matrix. Silence between segments is not recognised at all. Recordings
// the model can take whole (shorter than its position table) are recognised as one piece unless
// segmentation is asked for, so short clips give exactly what they always did.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/engine/recognizer.h"
#include "u2/engine/transcript.h"
#include "u2/util/option_registry.h"
#include "u2/vad/silero_vad.h"
#include "u2/vad/speech_segmenter.h"
#include "u2/vad/vad_segmenter.h"

namespace u2 {

struct LongAudioConfig {
  std::string vad_model_dir = "models/silero_vad";
  VadConfig vad;
  int batch_segments = 8;  // segments per Recognize call

  void Register(OptionRegistry* r);
  Status Validate() const;
};

class LongAudioRecognizer {
 public:
  // The function a batch of segments goes through (Recognizer::Recognize, or a server's batcher).
  using RecognizeBatch =
      std::function<StatusOr<std::vector<RecognitionResult>>(std::span<const Waveform> batch)>;

  static StatusOr<std::unique_ptr<LongAudioRecognizer>> Create(const LongAudioConfig& config);
  LongAudioRecognizer(std::shared_ptr<const SileroVad> vad, const LongAudioConfig& config)
      : vad_(std::move(vad)), config_(config) {}

  // The file's speech segments, recognised; `progress` (optional) hears seconds read so far.
  StatusOr<std::vector<TimedResult>> RecognizeFile(const std::string& path, const RecognizeBatch& recognize,
                                                   const std::function<void(double)>& progress = {},
                                                   double* duration_seconds = nullptr) const;
  // The same for audio already in memory (16 kHz).
  StatusOr<std::vector<TimedResult>> RecognizeSamples(std::span<const float> samples,
                                                      const RecognizeBatch& recognize) const;

  const SileroVad& vad() const { return *vad_; }
  std::shared_ptr<const SileroVad> shared_vad() const { return vad_; }
  const LongAudioConfig& config() const { return config_; }

 private:
  // Recognises `pending` segments and appends them to `out`.
  Status Flush(std::vector<AudioSegment>* pending, const RecognizeBatch& recognize,
               std::vector<TimedResult>* out) const;

  std::shared_ptr<const SileroVad> vad_;
  LongAudioConfig config_;
};

}  // namespace u2
