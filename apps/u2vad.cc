// u2vad: voice activity detection with u2serve's Silero VAD, on files of any length.
//
//   u2vad a.wav b.flac                         # "file start end" (seconds) of each speech segment
//   u2vad --probabilities a.wav                # P(speech) of every 32 ms window, one per line
//   u2vad --vad-threshold 0.6 --vad-min-silence-ms 300 long.wav
//
// Files are read and segmented a block at a time (memory does not grow with their length) and
// resampled to 16 kHz as they are read.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/util/option_registry.h"
#include "u2/vad/speech_segmenter.h"

int main(int argc, char** argv) {
  CLI::App app{"u2vad: speech segments (Silero VAD v6) of audio files"};
  std::string model_dir = "models/silero_vad";
  std::vector<std::string> files;
  bool probabilities = false;
  u2::VadConfig config;
  u2::OptionRegistry options;
  config.Register(&options);
  app.add_option("--vad-model-dir", model_dir, "the converted VAD (tools/convert_silero_vad.py)")
      ->capture_default_str();
  app.add_flag("--probabilities", probabilities,
               "print P(speech) of each 512-sample window instead of segments");
  app.add_option("files", files, "audio files")->required();
  options.AddTo(&app);
  CLI11_PARSE(app, argc, argv);
  if (u2::Status s = config.Validate(); !s.ok()) {
    std::fprintf(stderr, "u2vad: %s\n", s.ToString().c_str());
    return 2;
  }
  auto vad = u2::SileroVad::Load(model_dir);
  if (!vad.ok()) {
    std::fprintf(stderr, "u2vad: %s\n", vad.status().ToString().c_str());
    return 1;
  }
  int failures = 0;
  for (const std::string& path : files) {
    auto reader = u2::AudioFileReader::Open(path, u2::SileroVad::kSampleRate);
    if (!reader.ok()) {
      std::fprintf(stderr, "u2vad: %s\n", reader.status().ToString().c_str());
      ++failures;
      continue;
    }
    u2::SpeechSegmenter segmenter(**vad, config);
    u2::SileroVad::State state;
    std::vector<float> pending;
    auto print = [&](const std::vector<u2::AudioSegment>& segments) {
      for (const auto& s : segments)
        std::printf("%s %.3f %.3f\n", path.c_str(), s.start_seconds(), s.end_seconds());
    };
    while (true) {
      auto block = (*reader)->Read();
      if (!block.ok()) {
        std::fprintf(stderr, "u2vad: %s\n", block.status().ToString().c_str());
        ++failures;
        break;
      }
      if (block->empty()) {
        if (!probabilities) print(segmenter.Finish());
        break;
      }
      if (probabilities) {
        pending.insert(pending.end(), block->begin(), block->end());
        const size_t whole = pending.size() / u2::SileroVad::kWindow * u2::SileroVad::kWindow;
        for (float p : (*vad)->Process(state, std::span<const float>(pending.data(), whole)))
          std::printf("%.7f\n", p);
        pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(whole));
      } else {
        print(segmenter.Accept(*block));
      }
    }
  }
  return failures == 0 ? 0 : 1;
}
