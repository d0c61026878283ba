// u2recognize: offline recognition of audio files on the CPU, with optional CER scoring.
//
//   u2recognize --model-dir models/demo a.wav b.flac
//   u2recognize --model-dir models/demo --wav-scp wav.scp --text text --mode attention_rescoring
//
// stdout: "utt text" per utterance (input order); stderr: progress, CER/WER and RTF.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "u2/audio/audio.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/transcript_scorer.h"
#include "u2/util/table_file.h"

namespace {

struct Utterance {
  std::string key;
  std::string path;
  u2::AudioBuffer audio;
};

int Fail(const u2::Status& status) {
  std::fprintf(stderr, "u2recognize: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2recognize: offline WeNet U2/U2++ recognition on the CPU"};
  u2::RecognizerConfig config;
  std::vector<std::string> wav_files;
  std::string wav_scp, text_file, mode_name, result_file;
  int batch_size = 1;
  bool quiet = false;
  app.add_option("--model-dir", config.model_dir, "converted model directory (tools/convert.py)")->required();
  app.add_option("wavs", wav_files, "audio files (WAV, FLAC, OGG; any rate)");
  app.add_option("--wav-scp", wav_scp, "Kaldi-style list: 'utt path' per line");
  app.add_option("--text", text_file, "reference transcripts 'utt text' per line: print CER (and WER)");
  app.add_option("--mode", mode_name, "ctc_greedy | ctc_prefix_beam_search | attention_rescoring (default)");
  app.add_option("--beam", config.beam, "CTC prefix beam width (default: model.json)");
  app.add_option("--nbest", config.nbest, "hypotheses to print per utterance (default 1)");
  app.add_option("--ctc-weight", config.ctc_weight, "rescoring: weight of the CTC score (default: model.json)");
  app.add_option("--reverse-weight", config.reverse_weight, "rescoring: weight of the right-to-left decoder");
  app.add_option("--chunk-size", config.decoding_chunk_size, "decode with a chunk mask of this many frames (-1: full)");
  app.add_option("--left-chunks", config.num_decoding_left_chunks, "left chunks visible with --chunk-size (-1: all)");
  app.add_option("--threads", config.num_threads, "CPU threads")->check(CLI::Range(1, 256));
  app.add_option("--batch-size", batch_size, "utterances per encoder batch (sorted by length)")->check(CLI::Range(1, 1024));
  app.add_option("--result", result_file, "also write 'utt text' lines to this file");
  app.add_flag("--quiet", quiet, "no progress on stderr");
  CLI11_PARSE(app, argc, argv);

  if (!mode_name.empty()) {
    auto mode = u2::ParseDecodingMode(mode_name);
    if (!mode.ok()) return Fail(mode.status());
    config.mode = *mode;
  }
  if (wav_files.empty() && wav_scp.empty()) {
    std::fprintf(stderr, "u2recognize: give audio files or --wav-scp\n");
    return 2;
  }

  std::vector<Utterance> utts;
  for (const auto& path : wav_files) {
    utts.push_back({std::filesystem::path(path).stem().string(), path, {}});
  }
  if (!wav_scp.empty()) {
    auto entries = u2::ReadWavScp(wav_scp);
    if (!entries.ok()) return Fail(entries.status());
    for (auto& e : *entries) utts.push_back({e.key, e.value, {}});
  }
  std::optional<u2::TranscriptScorer> scorer;
  if (!text_file.empty()) {
    auto s = u2::TranscriptScorer::FromTextFile(text_file);
    if (!s.ok()) return Fail(s.status());
    scorer = std::move(*s);
  }

  const auto load_start = std::chrono::steady_clock::now();
  auto recognizer_or = u2::Recognizer::Create(config);
  if (!recognizer_or.ok()) return Fail(recognizer_or.status());
  const auto& recognizer = **recognizer_or;
  if (!quiet) {
    std::fprintf(stderr, "u2recognize: loaded %s in %.2f s; %s\n", config.model_dir.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count(),
                 recognizer.default_options().ToString().c_str());
  }

  // Read all audio first so the timing below is recognition only.
  double audio_seconds = 0;
  for (auto& u : utts) {
    auto audio = u2::ReadAudioFile(u.path);
    if (!audio.ok()) return Fail(audio.status().WithContext(u.key));
    u.audio = std::move(*audio);
    audio_seconds += u.audio.seconds();
  }

  // Batches of similar length, so padding stays small; results are printed in input order.
  std::vector<size_t> order(utts.size());
  std::iota(order.begin(), order.end(), 0);
  if (batch_size > 1) {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return utts[a].audio.seconds() < utts[b].audio.seconds();
    });
  }
  std::vector<u2::RecognitionResult> results(utts.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t begin = 0; begin < order.size(); begin += batch_size) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    std::vector<u2::Waveform> batch;
    for (size_t k = begin; k < end; ++k) {
      const auto& a = utts[order[k]].audio;
      batch.push_back({a.samples, a.sample_rate});
    }
    auto out = recognizer.Recognize(batch);
    if (!out.ok()) {
      std::string keys;
      for (size_t k = begin; k < end; ++k) keys += (keys.empty() ? "" : ",") + utts[order[k]].key;
      return Fail(out.status().WithContext("batch [" + keys + "]"));
    }
    for (size_t k = begin; k < end; ++k) results[order[k]] = std::move((*out)[k - begin]);
    if (!quiet && utts.size() >= 20) {
      std::fprintf(stderr, "\ru2recognize: %zu/%zu utterances", end, utts.size());
      if (end == utts.size()) std::fprintf(stderr, "\n");
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  FILE* result_out = nullptr;
  if (!result_file.empty()) {
    result_out = std::fopen(result_file.c_str(), "w");
    if (result_out == nullptr) return Fail(u2::InvalidArgument("cannot write " + result_file));
  }
  int unscored = 0;
  for (size_t i = 0; i < utts.size(); ++i) {
    const auto& r = results[i];
    if (r.nbest.size() == 1) {
      std::printf("%s %s\n", utts[i].key.c_str(), r.best().text.c_str());
    } else {
      for (size_t k = 0; k < r.nbest.size(); ++k) {
        std::printf("%s %zu %.4f %s\n", utts[i].key.c_str(), k + 1, r.nbest[k].score, r.nbest[k].text.c_str());
      }
    }
    if (result_out != nullptr) std::fprintf(result_out, "%s %s\n", utts[i].key.c_str(), r.best().text.c_str());
    if (scorer && !scorer->Add(utts[i].key, r.best().text)) ++unscored;
  }
  std::fflush(stdout);
  if (result_out != nullptr) std::fclose(result_out);
  if (scorer) {
    std::fprintf(stderr, "u2recognize: %s\n", scorer->Summary().c_str());
    if (unscored > 0) std::fprintf(stderr, "u2recognize: %d utterances had no reference\n", unscored);
  }
  std::fprintf(stderr, "u2recognize: RTF %.4f (%.2f s of audio in %.2f s, %.1fx real time, %d thread(s))\n",
               audio_seconds > 0 ? seconds / audio_seconds : 0.0, audio_seconds, seconds,
               seconds > 0 ? audio_seconds / seconds : 0.0, config.num_threads);
  return 0;
}
