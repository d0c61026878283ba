// u2recognize: recognition of audio files on the CPU, with optional CER scoring.
//
//   u2recognize --model-dir models/demo a.wav b.flac
//   u2recognize --model-dir models/demo --wav-scp wav.scp --text text --mode attention_rescoring
//   u2recognize --model-dir models/demo --wav-scp wav.scp --streaming --chunk-size 8 --left-chunks 4
//   u2recognize --model-dir models/demo --lm lm.arpa --lm-weight 0.5 --hotwords names.txt a.wav
//   u2recognize --model-dir models/demo --tlg graph_dir --lm-weight 0.5 a.wav
//
// --streaming decodes each file as a live stream would be (pieces of --piece-ms, chunk by chunk,
// --batch-size streams batched together) and prints the final result of each; with --vad-gate the
// streams skip silence and end a segment at each pause the VAD hears (the segments' results are
// stitched, with their times, as a long recording's are).
//
// Recordings longer than the model takes whole (about 200 s for the demo model) are read block by
// block and cut into speech segments by the VAD (--segment auto; `always` segments every file,
// `never` refuses them), and the segments are recognised --long-audio-batch at a time.
//
// stdout: "utt text" per utterance (input order), or --format json (one object per line: text,
// segments with times, words with times and confidence), srt or vtt (captions; with several
// files, one KEY.srt / KEY.vtt each in --output-dir); stderr: progress, CER/WER and RTF.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/backend/cpu/cpu_backend.h"
#include "u2/engine/long_audio.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/engine/transcript.h"
#include "u2/engine/transcript_scorer.h"
#include "u2/util/option_registry.h"
#include "u2/util/table_file.h"
#include "u2/vad/silero_vad.h"

namespace {

struct Utterance {
  std::string key;
  std::string path;
  u2::AudioBuffer audio;  // empty for a long recording (read block by block instead)
  bool segmented = false;
  double seconds = 0;
};

int Fail(const u2::Status& status) {
  std::fprintf(stderr, "u2recognize: %s\n", status.ToString().c_str());
  return 1;
}

// Streams utts[members] side by side: each gets its audio in pieces of piece_ms, and after every
// round of pieces all streams with a ready chunk are decoded in one batched step. Each stream's
// final results (one per segment), with their times.
u2::Status DecodeAsStreams(const u2::StreamingRecognizer& sr, const u2::StreamOptions& options,
                           const std::vector<Utterance>& utts, const std::vector<size_t>& members,
                           int piece_ms, std::vector<std::vector<u2::TimedResult>>* finals) {
  const int rate = sr.sample_rate();
  std::vector<std::vector<float>> audio(members.size());
  std::vector<std::unique_ptr<u2::RecognitionStream>> streams;
  for (size_t k = 0; k < members.size(); ++k) {
    const u2::AudioBuffer& a = utts[members[k]].audio;
    if (a.sample_rate != rate) {
      U2_ASSIGN_OR_RETURN(audio[k], u2::Resample(a.samples, a.sample_rate, rate));
    } else {
      audio[k] = a.samples;
    }
    U2_ASSIGN_OR_RETURN(auto s, sr.NewStream(options));
    streams.push_back(std::move(s));
  }
  const size_t piece = std::max<size_t>(1, static_cast<size_t>(rate) * piece_ms / 1000);
  finals->assign(members.size(), {});
  for (size_t pos = 0;; pos += piece) {
    bool any_left = false;
    for (size_t k = 0; k < members.size(); ++k) {
      if (pos >= audio[k].size()) continue;
      const size_t n = std::min(piece, audio[k].size() - pos);
      U2_RETURN_IF_ERROR(streams[k]
                             ->AcceptWaveform(std::span<const float>(audio[k]).subspan(pos, n))
                             .WithContext(utts[members[k]].key));
      if (pos + n == audio[k].size()) streams[k]->InputFinished();
      any_left = true;
    }
    while (true) {
      std::vector<u2::RecognitionStream*> ready;
      for (auto& s : streams)
        if (s->IsReady()) ready.push_back(s.get());
      if (ready.empty()) break;
      std::vector<u2::Status> errors;
      U2_RETURN_IF_ERROR(sr.DecodeStreams(ready, &errors));
      for (size_t i = 0; i < errors.size(); ++i) U2_RETURN_IF_ERROR(errors[i]);
    }
    for (size_t k = 0; k < members.size(); ++k) {
      for (u2::StreamResult& r : streams[k]->TakeResults()) {
        if (!r.is_final) continue;
        u2::TimedResult timed{r.start_ms / 1000.0, r.end_ms / 1000.0, {}};
        timed.result.nbest = std::move(r.nbest);
        timed.result.audio_seconds = static_cast<double>(audio[k].size()) / rate;
        (*finals)[k].push_back(std::move(timed));
      }
    }
    if (!any_left) break;
  }
  return u2::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2recognize: WeNet U2/U2++ recognition of audio files (offline or as streams), CPU or CUDA"};
  u2::RecognizerConfig config;
  std::vector<std::string> wav_files;
  std::string wav_scp, text_file, mode_name, result_file;
  int batch_size = 1;
  bool quiet = false;
  bool streaming = false;
  bool vad_gate = false;
  int piece_ms = 640;
  app.add_option("--model-dir", config.model_dir, "converted model directory (tools/convert.py)")->required();
  app.add_option("wavs", wav_files, "audio files (WAV, FLAC, OGG; any rate)");
  app.add_option("--wav-scp", wav_scp, "Kaldi-style list: 'utt path' per line");
  app.add_option("--text", text_file, "reference transcripts 'utt text' per line: print CER (and WER)");
  app.add_option("--mode", mode_name, "ctc_greedy | ctc_prefix_beam_search | attention_rescoring (default)");
  app.add_option("--beam", config.beam, "CTC prefix beam width (default: model.json)");
  app.add_option("--nbest", config.nbest, "hypotheses to print per utterance (default 1)");
  app.add_option("--ctc-weight", config.ctc_weight,
                 "rescoring: weight of the CTC score (default: model.json)");
  app.add_option("--reverse-weight", config.reverse_weight, "rescoring: weight of the right-to-left decoder");
  app.add_option("--chunk-size", config.decoding_chunk_size,
                 "decode with a chunk mask of this many frames (-1: full)");
  app.add_option("--left-chunks", config.num_decoding_left_chunks,
                 "left chunks visible with --chunk-size (-1: all)");
  app.add_option("--threads", config.num_threads, "CPU threads")->check(CLI::Range(1, 256));
  app.add_option("--lm", config.lm,
                 "ARPA n-gram LM fused into the search (default: the model dir's lm.arpa; none)");
  app.add_option("--lm-weight", config.lm_weight, "LM weight alpha: alpha * ln P(word) per word");
  app.add_option("--word-bonus", config.word_bonus, "bonus beta per word with an LM");
  app.add_option("--tlg", config.tlg,
                 "TLG decoding graph folder (tools/build_tlg.py; default: the model dir's tlg/; none)");
  u2::OptionRegistry wfst_options;
  config.wfst.Register(&wfst_options);
  wfst_options.AddTo(&app);
  app.add_option("--hotwords", config.hotwords.file, "hotword list: one 'phrase[:boost]' per line");
  app.add_option("--hotwords-boost", config.hotwords.boost, "bonus per token for phrases without their own")
      ->capture_default_str();
  std::string device_name = "cpu";
  app.add_option("--device", device_name, "cpu | cuda | cuda:N (where the model runs; N: which GPU)")
      ->capture_default_str();
  std::string precision_name = "fp32";
  app.add_option("--precision", precision_name,
                 "GEMM operands: fp32 | fp16 | bf16 (fp16/bf16 need --device cuda) | int8 (CPU only)")
      ->capture_default_str();
  app.add_option("--batch-size", batch_size, "utterances per encoder batch (sorted by length)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--result", result_file, "also write 'utt text' lines to this file");
  app.add_flag("--quiet", quiet, "no progress on stderr");
  app.add_flag("--streaming", streaming,
               "decode as streams, chunk by chunk (--chunk-size, default 16; --left-chunks); "
               "--batch-size streams run batched");
  app.add_option("--piece-ms", piece_ms, "--streaming: audio arrives in pieces of this many ms")
      ->check(CLI::Range(1, 600000));
  app.add_flag("--vad-gate", vad_gate,
               "--streaming: the VAD (--vad-model-dir, --vad-* settings) skips silence and ends a "
               "segment at each pause");
  std::string segment_mode = "auto", format = "text", output_dir;
  app.add_option("--segment", segment_mode,
                 "VAD segmentation: auto (recordings longer than the model takes), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.add_option("--format", format, "text | json | srt | vtt")
      ->check(CLI::IsMember({"text", "json", "srt", "vtt"}))
      ->capture_default_str();
  app.add_option("--output-dir", output_dir, "srt/vtt with several files: write KEY.srt / KEY.vtt here");
  u2::LongAudioConfig long_audio_config;
  u2::OptionRegistry long_audio_options;
  long_audio_config.Register(&long_audio_options);
  long_audio_options.AddTo(&app);
  CLI11_PARSE(app, argc, argv);

  {
    auto device = u2::ParseDevice(device_name);
    if (!device.ok()) return Fail(device.status());
    config.device = device->type;
    config.device_index = device->index;
    auto precision = u2::ParsePrecision(precision_name);
    if (!precision.ok()) return Fail(precision.status());
    config.precision = *precision;
  }
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
  const std::shared_ptr<const u2::Recognizer> recognizer_ptr = std::move(*recognizer_or);
  const auto& recognizer = *recognizer_ptr;
  for (const std::string& w : recognizer.warnings())
    std::fprintf(stderr, "u2recognize: warning: %s\n", w.c_str());
  std::unique_ptr<u2::StreamingRecognizer> streaming_recognizer;
  u2::StreamOptions stream_options;
  if (streaming) {
    std::shared_ptr<const u2::SileroVad> vad;
    if (vad_gate) {
      auto loaded = u2::SileroVad::Load(long_audio_config.vad_model_dir);
      if (!loaded.ok()) return Fail(loaded.status().WithContext("--vad-gate"));
      vad = std::move(*loaded);
    }
    auto made = u2::StreamingRecognizer::Create(recognizer_ptr, vad);
    if (!made.ok()) return Fail(made.status());
    streaming_recognizer = std::move(*made);
    const u2::DecodingOptions& d = recognizer.default_options();
    stream_options = streaming_recognizer->default_options();
    if (d.mode == u2::DecodingMode::kCtcGreedy) {
      return Fail(
          u2::InvalidArgument("--streaming decodes with the CTC prefix beam search; use --mode "
                              "ctc_prefix_beam_search or attention_rescoring"));
    }
    stream_options.rescoring = d.mode == u2::DecodingMode::kAttentionRescoring;
    if (config.decoding_chunk_size) stream_options.decoding_chunk_size = *config.decoding_chunk_size;
    if (config.num_decoding_left_chunks)
      stream_options.num_decoding_left_chunks = *config.num_decoding_left_chunks;
    stream_options.nbest = d.nbest;
    stream_options.vad_gate = vad_gate;
    stream_options.vad = long_audio_config.vad;
    if (auto st = stream_options.Validate(recognizer.model_config()); !st.ok()) return Fail(st);
    if (!quiet) std::fprintf(stderr, "u2recognize: streaming, %s\n", stream_options.ToString().c_str());
  }
  if (!quiet) {
    std::fprintf(stderr, "u2recognize: loaded %s in %.2f s; %s\n", config.model_dir.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count(),
                 recognizer.default_options().ToString().c_str());
    if (config.device == u2::DeviceType::kCpu) {
      if (const std::string w = u2::cpu::OpenBlasCoreWarning(); !w.empty()) {
        std::fprintf(stderr, "u2recognize: warning: %s\n", w.c_str());
      }
    }
  }

  if ((format == "srt" || format == "vtt") && utts.size() > 1 && output_dir.empty()) {
    return Fail(u2::InvalidArgument("--format " + format + " with several files needs --output-dir"));
  }
  // Read the audio first so the timing below is recognition only, except recordings too long for
  // the model (or all, with --segment always): those are segmented as they are read.
  const double model_max_seconds = static_cast<double>(recognizer.max_samples()) / recognizer.sample_rate();
  std::unique_ptr<u2::LongAudioRecognizer> long_audio;
  double audio_seconds = 0;
  for (auto& u : utts) {
    if (segment_mode != "never") {
      auto reader = u2::AudioFileReader::Open(u.path, recognizer.sample_rate());
      if (!reader.ok()) return Fail(reader.status().WithContext(u.key));
      u.segmented = segment_mode == "always" || (*reader)->declared_seconds() > model_max_seconds;
    }
    if (u.segmented) {
      if (streaming)
        return Fail(u2::InvalidArgument(u.key + ": --streaming decodes whole files; use --segment never"));
      if (!long_audio) {
        auto made = u2::LongAudioRecognizer::Create(long_audio_config);
        if (!made.ok()) return Fail(made.status().WithContext("segmenting " + u.key));
        long_audio = std::move(*made);
      }
      continue;
    }
    auto audio = u2::ReadAudioFile(u.path);
    if (!audio.ok()) return Fail(audio.status().WithContext(u.key));
    u.audio = std::move(*audio);
    u.seconds = u.audio.seconds();
    audio_seconds += u.seconds;
  }

  // Batches of similar length, so padding stays small; results are printed in input order.
  std::vector<size_t> order(utts.size());
  std::iota(order.begin(), order.end(), 0);
  if (batch_size > 1) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return utts[a].audio.seconds() < utts[b].audio.seconds(); });
  }
  std::erase_if(order, [&](size_t i) { return utts[i].segmented; });
  std::vector<std::vector<u2::TimedResult>> stretches(utts.size());
  std::vector<u2::RecognitionResult> results(utts.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < utts.size(); ++i) {
    if (!utts[i].segmented) continue;
    const auto recognize = [&](std::span<const u2::Waveform> batch) { return recognizer.Recognize(batch); };
    double shown = 0;
    const auto progress = [&](double seconds) {
      if (quiet || seconds - shown < 60) return;
      shown = seconds;
      std::fprintf(stderr, "\ru2recognize: %s: %.0f s read", utts[i].key.c_str(), seconds);
    };
    auto timed = long_audio->RecognizeFile(utts[i].path, recognize, progress, &utts[i].seconds);
    if (!quiet) std::fprintf(stderr, "\n");
    if (!timed.ok()) return Fail(timed.status().WithContext(utts[i].key));
    stretches[i] = std::move(*timed);
    audio_seconds += utts[i].seconds;
  }
  for (size_t begin = 0; begin < order.size(); begin += batch_size) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    if (streaming) {
      std::vector<size_t> members(order.begin() + begin, order.begin() + end);
      std::vector<std::vector<u2::TimedResult>> out;
      if (auto st = DecodeAsStreams(*streaming_recognizer, stream_options, utts, members, piece_ms, &out);
          !st.ok()) {
        return Fail(st);
      }
      for (size_t k = 0; k < members.size(); ++k) {
        // One segment is the whole file's result; several are stitched as a long recording's.
        if (out[k].size() == 1) {
          results[members[k]] = std::move(out[k][0].result);
        } else {
          stretches[members[k]] = std::move(out[k]);
        }
      }
      if (!quiet && utts.size() >= 20) {
        std::fprintf(stderr, "\ru2recognize: %zu/%zu utterances", end, utts.size());
        if (end == utts.size()) std::fprintf(stderr, "\n");
      }
      continue;
    }
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
    const bool stitched = utts[i].segmented || !stretches[i].empty();
    if (!stitched) stretches[i].push_back({0.0, utts[i].seconds, results[i]});
    const u2::Transcript transcript = u2::MakeTranscript(stretches[i], utts[i].seconds);
    if (stitched) {  // the stitched text stands for the whole recording below
      results[i].nbest.assign(1, u2::Hypothesis{});
      results[i].nbest[0].text = transcript.text;
    }
    const auto& r = results[i];
    if (format != "text") {
      std::string body = format == "json"  ? u2::FormatTranscriptJson(transcript, utts[i].key) + "\n"
                         : format == "srt" ? u2::FormatSrt(transcript)
                                           : u2::FormatVtt(transcript);
      if (output_dir.empty()) {
        std::fputs(body.c_str(), stdout);
      } else {
        const std::string path = output_dir + "/" + utts[i].key + "." + format;
        FILE* f = std::fopen(path.c_str(), "w");
        if (f == nullptr) return Fail(u2::InvalidArgument("cannot write " + path));
        std::fputs(body.c_str(), f);
        std::fclose(f);
      }
    } else if (r.nbest.size() == 1) {
      std::printf("%s %s\n", utts[i].key.c_str(), r.best().text.c_str());
    } else {
      for (size_t k = 0; k < r.nbest.size(); ++k) {
        std::printf("%s %zu %.4f %s\n", utts[i].key.c_str(), k + 1, r.nbest[k].score,
                    r.nbest[k].text.c_str());
      }
    }
    if (result_out != nullptr)
      std::fprintf(result_out, "%s %s\n", utts[i].key.c_str(), r.best().text.c_str());
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
