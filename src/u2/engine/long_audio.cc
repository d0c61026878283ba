#include "u2/engine/long_audio.h"

#include <cmath>

#include "u2/audio/audio.h"
#include "u2/vad/speech_segmenter.h"

namespace u2 {

void LongAudioConfig::Register(OptionRegistry* r) {
  r->Add("vad-model-dir", &vad_model_dir,
         "the VAD that segments long recordings (tools/convert_silero_vad.py)");
  r->Add("long-audio-batch", &batch_segments, "speech segments of a long recording recognised per batch");
  vad.Register(r);
}

Status LongAudioConfig::Validate() const {
  if (batch_segments < 1 || batch_segments > 1024)
    return InvalidArgument("long_audio_batch must be in [1, 1024]");
  return vad.Validate();
}

StatusOr<std::unique_ptr<LongAudioRecognizer>> LongAudioRecognizer::Create(const LongAudioConfig& config) {
  U2_RETURN_IF_ERROR(config.Validate());
  U2_ASSIGN_OR_RETURN(std::unique_ptr<SileroVad> vad, SileroVad::Load(config.vad_model_dir));
  return std::make_unique<LongAudioRecognizer>(std::shared_ptr<const SileroVad>(std::move(vad)), config);
}

Status LongAudioRecognizer::Flush(std::vector<AudioSegment>* pending, const RecognizeBatch& recognize,
                                  std::vector<TimedResult>* out) const {
  if (pending->empty()) return Status::Ok();
  std::vector<Waveform> batch;
  for (const AudioSegment& s : *pending) batch.push_back({s.samples, SileroVad::kSampleRate});
  U2_ASSIGN_OR_RETURN(std::vector<RecognitionResult> results, recognize(batch));
  if (results.size() != pending->size()) return Internal("recognition returned a result per segment too few");
  for (size_t i = 0; i < results.size(); ++i) {
    const AudioSegment& s = (*pending)[i];
    ShiftTimes(&results[i], static_cast<int64_t>(std::llround(s.start_seconds() * 1000.0)));
    out->push_back({s.start_seconds(), s.end_seconds(), std::move(results[i])});
  }
  pending->clear();
  return Status::Ok();
}

StatusOr<std::vector<TimedResult>> LongAudioRecognizer::RecognizeFile(
    const std::string& path, const RecognizeBatch& recognize, const std::function<void(double)>& progress,
    double* duration_seconds) const {
  U2_ASSIGN_OR_RETURN(std::unique_ptr<AudioFileReader> reader,
                      AudioFileReader::Open(path, SileroVad::kSampleRate));
  SpeechSegmenter segmenter(*vad_, config_.vad);
  std::vector<TimedResult> out;
  std::vector<AudioSegment> pending;
  while (true) {
    U2_ASSIGN_OR_RETURN(std::vector<float> block, reader->Read(1 << 16));
    std::vector<AudioSegment> done = block.empty() ? segmenter.Finish() : segmenter.Accept(block);
    for (AudioSegment& s : done) {
      pending.push_back(std::move(s));
      if (static_cast<int>(pending.size()) >= config_.batch_segments)
        U2_RETURN_IF_ERROR(Flush(&pending, recognize, &out));
    }
    if (progress) progress(static_cast<double>(segmenter.samples_seen()) / SileroVad::kSampleRate);
    if (block.empty()) break;
  }
  U2_RETURN_IF_ERROR(Flush(&pending, recognize, &out));
  if (duration_seconds)
    *duration_seconds = static_cast<double>(segmenter.samples_seen()) / SileroVad::kSampleRate;
  return out;
}

StatusOr<std::vector<TimedResult>> LongAudioRecognizer::RecognizeSamples(
    std::span<const float> samples, const RecognizeBatch& recognize) const {
  SpeechSegmenter segmenter(*vad_, config_.vad);
  std::vector<TimedResult> out;
  std::vector<AudioSegment> pending;
  constexpr size_t kBlock = 1 << 16;
  for (size_t at = 0; at <= samples.size(); at += kBlock) {
    const bool last = at + kBlock >= samples.size();
    std::vector<AudioSegment> done =
        segmenter.Accept(samples.subspan(at, std::min(kBlock, samples.size() - at)));
    if (last) {
      for (AudioSegment& s : segmenter.Finish()) done.push_back(std::move(s));
    }
    for (AudioSegment& s : done) {
      pending.push_back(std::move(s));
      if (static_cast<int>(pending.size()) >= config_.batch_segments)
        U2_RETURN_IF_ERROR(Flush(&pending, recognize, &out));
    }
    if (last) break;
  }
  U2_RETURN_IF_ERROR(Flush(&pending, recognize, &out));
  return out;
}

}  // namespace u2
