// u2client: sends audio files to u2serve (or Triton serving the same model interface) and
// prints "utt text" per utterance, in input order; with --text also CER/WER, scored exactly as
// u2recognize scores.
//
//   u2client a.wav b.wav                                   # gRPC, localhost:8001
//   u2client --protocol http --url localhost:8000 a.wav
//   u2client --wav-scp wav.scp --text text --concurrency 8 --model ctc_prefix_beam_search
//
// --streaming: each file is one Triton sequence on the streaming model (streaming_wenet), sent
// chunk by chunk as WeNet's runtime/gpu speech_client.py sends it (first chunk 690 ms, then
// 640 ms for decoding chunk 16, each zero-padded with WAV_LENS = its real length; sequence_start
// on the first, sequence_end on the last), over one gRPC ModelStreamInfer call per concurrent
// file (or --unary ModelInfer / HTTP requests, each with the header `x-u2-sequence-id` that keeps
// a sequence on one replica behind a load balancer such as deploy/envoy), one chunk in flight.
// Each chunk's response (the partial transcript) is printed as "partial <utt> <audio seconds
// sent> <text>" (stderr, or stdout with --partials stdout); the final transcripts are printed as
// "utt text" like offline.
// --realtime sends each chunk when its audio would have been spoken (a live talker).
//
//   u2client --streaming --wav-scp wav.scp --text text --concurrency 4 --realtime
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/client/client.h"
#include "u2/engine/transcript_scorer.h"
#include "u2/util/table_file.h"

namespace {

using Clock = std::chrono::steady_clock;

int Fail(const u2::Status& status) {
  std::fprintf(stderr, "u2client: %s\n", status.ToString().c_str());
  return 1;
}

// Per-chunk timings of the streamed utterances (for the summary line).
struct ChunkTimes {
  std::vector<double> chunk_ms;  // send -> response, every chunk
  std::vector<double> final_ms;  // send -> response of the sequence_end chunks
};

double PercentileOf(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2client: recognise audio files with a running u2serve"};
  std::vector<std::string> wav_files;
  std::string wav_scp, text_file, protocol_name = "grpc", url, model = "attention_rescoring";
  std::vector<std::string> params;
  int concurrency = 1;
  double wait_s = 0;
  bool streaming = false, realtime = false, unary = false;
  u2::server::ChunkingOptions chunking;
  int first_chunk_ms = 0;
  int64_t sequence_id_start = 0;
  std::string partials = "stderr";
  app.add_option("wavs", wav_files, "audio files (any format/rate libsndfile reads; sent as 16 kHz float)");
  app.add_option("--wav-scp", wav_scp, "Kaldi-style list: 'utt path' per line");
  app.add_option("--text", text_file, "reference transcripts 'utt text' per line: print CER (and WER)");
  app.add_option("--protocol,-i", protocol_name, "grpc or http")->capture_default_str();
  app.add_option("--url,-u", url,
                 "server host:port (default localhost:8001 for gRPC, localhost:8000 for HTTP)");
  app.add_option("--model,-m", model, "model name")->capture_default_str();
  app.add_option("--concurrency", concurrency, "requests in flight")->check(CLI::Range(1, 1024));
  // One value per --param, so that the audio files after it stay positional.
  app.add_option("--param", params, "request parameter KEY=VALUE (e.g. beam=4, decoding_mode=ctc_greedy)")
      ->allow_extra_args(false);
  app.add_option("--wait", wait_s, "wait up to this many seconds for the model to become ready");
  auto* streaming_flag = app.add_flag(
      "--streaming", streaming, "stream each file chunk by chunk as a sequence (model streaming_wenet)");
  app.add_option("--chunk-ms", chunking.chunk_ms,
                 "streaming: chunk length after the first, ms (640 = chunk 16)")
      ->capture_default_str()
      ->needs(streaming_flag);
  app.add_option("--first-chunk-ms", first_chunk_ms,
                 "streaming: first chunk length, ms (default chunk-ms + 50)")
      ->needs(streaming_flag);
  app.add_flag("--realtime", realtime, "streaming: send each chunk when its audio has been spoken")
      ->needs(streaming_flag);
  app.add_option("--partials", partials, "streaming: where partial results go: stderr, stdout or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"stderr", "stdout", "none"}))
      ->needs(streaming_flag);
  app.add_flag("--unary", unary,
               "streaming over gRPC: one ModelInfer call per chunk instead of ModelStreamInfer")
      ->needs(streaming_flag);
  app.add_option("--sequence-id-start", sequence_id_start,
                 "streaming: sequence_id of the first file (the next files count up; default derived from "
                 "the process id so that clients running at once do not collide)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 62))
      ->needs(streaming_flag);
  CLI11_PARSE(app, argc, argv);
  if (streaming) {
    if (app.count("--model") == 0) model = "streaming_wenet";
    chunking.first_chunk_ms = app.count("--first-chunk-ms") > 0
                                  ? first_chunk_ms
                                  : u2::server::ChunkingOptions::DefaultFirstChunkMs(chunking.chunk_ms);
    if (auto s = chunking.Validate(); !s.ok()) return Fail(s);
    if (sequence_id_start == 0) sequence_id_start = int64_t{getpid()} * 1000000 + 1;
  }

  auto protocol = u2::server::ParseProtocol(protocol_name);
  if (!protocol.ok()) return Fail(protocol.status());
  if (url.empty()) url = *protocol == u2::server::Protocol::kGrpc ? "localhost:8001" : "localhost:8000";
  if (wav_files.empty() && wav_scp.empty()) {
    std::fprintf(stderr, "u2client: give audio files or --wav-scp\n");
    return 2;
  }
  std::map<std::string, u2::server::Parameter> parameters;
  for (const std::string& p : params) {
    auto kv = u2::server::ParseParameterArg(p);
    if (!kv.ok()) return Fail(kv.status());
    parameters[kv->first] = kv->second;
  }

  struct Utterance {
    std::string key, path, text;
    u2::Status status;
  };
  std::vector<Utterance> utts;
  for (const auto& path : wav_files)
    utts.push_back({std::filesystem::path(path).stem().string(), path, "", {}});
  if (!wav_scp.empty()) {
    auto entries = u2::ReadWavScp(wav_scp);
    if (!entries.ok()) return Fail(entries.status());
    for (auto& e : *entries) utts.push_back({e.key, e.value, "", {}});
  }
  std::optional<u2::TranscriptScorer> scorer;
  if (!text_file.empty()) {
    auto s = u2::TranscriptScorer::FromTextFile(text_file);
    if (!s.ok()) return Fail(s.status());
    scorer = std::move(*s);
  }

  if (wait_s > 0) {
    auto c = u2::server::AsrClient::Create(*protocol, url, model);
    if (!c.ok()) return Fail(c.status());
    if (auto s = (*c)->WaitUntilReady(wait_s); !s.ok()) return Fail(s);
  }

  std::atomic<size_t> next{0};
  std::atomic<double> audio_seconds{0};
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    auto client = u2::server::AsrClient::Create(*protocol, url, model);
    for (size_t i = next++; i < utts.size(); i = next++) {
      Utterance& u = utts[i];
      if (!client.ok()) {
        u.status = client.status();
        continue;
      }
      auto audio = u2::ReadAudioFileAs(u.path, 16000);
      if (!audio.ok()) {
        u.status = audio.status();
        continue;
      }
      double seen = audio_seconds.load();
      while (!audio_seconds.compare_exchange_weak(seen, seen + audio->seconds())) {
      }
      auto text = (*client)->Recognize(audio->samples, parameters, u.key);
      if (text.ok())
        u.text = std::move(*text);
      else
        u.status = text.status();
    }
  };
  // Streaming: one sequence per file, its chunks in order, each waiting for its response.
  const auto transport = unary || *protocol == u2::server::Protocol::kHttp
                             ? u2::server::SequenceTransport::kUnary
                             : u2::server::SequenceTransport::kStream;
  std::mutex print_mu;
  ChunkTimes times;
  auto stream_worker = [&] {
    auto client = u2::server::AsrClient::Create(*protocol, url, model);
    u2::StatusOr<std::unique_ptr<u2::server::SequenceChannel>> channel =
        client.ok() ? (*client)->OpenSequenceChannel(transport) : client.status();
    ChunkTimes mine;
    for (size_t i = next++; i < utts.size(); i = next++) {
      Utterance& u = utts[i];
      if (!channel.ok()) {
        u.status = channel.status();
        continue;
      }
      auto audio = u2::ReadAudioFileAs(u.path, chunking.sample_rate);
      if (!audio.ok()) {
        u.status = audio.status();
        continue;
      }
      double seen = audio_seconds.load();
      while (!audio_seconds.compare_exchange_weak(seen, seen + audio->seconds())) {
      }
      const std::span<const float> samples(audio->samples);
      const int64_t sequence_id = sequence_id_start + static_cast<int64_t>(i);
      const auto utterance_start = Clock::now();
      const std::vector<u2::server::AudioChunk> chunks = u2::server::PlanChunks(samples.size(), chunking);
      for (size_t k = 0; k < chunks.size(); ++k) {
        const u2::server::AudioChunk& chunk = chunks[k];
        const double sent_s = static_cast<double>(chunk.offset + chunk.length) / chunking.sample_rate;
        if (realtime) {
          // A live talker's chunk exists once its last sample has been spoken.
          std::this_thread::sleep_until(utterance_start + std::chrono::duration_cast<Clock::duration>(
                                                              std::chrono::duration<double>(sent_s)));
        }
        u2::server::SequenceRequest request;
        request.sequence_id = sequence_id;
        request.start = chunk.first;
        request.end = chunk.last;
        request.samples = samples.subspan(chunk.offset, chunk.length);
        request.padded_length = chunk.padded_length;
        request.request_id = u.key + "-" + std::to_string(k);
        request.parameters = parameters;
        const auto sent = Clock::now();
        auto text = (*channel)->Send(request);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
        if (!text.ok()) {
          u.status = text.status().WithContext("chunk at " + std::to_string(sent_s) + " s");
          break;
        }
        mine.chunk_ms.push_back(ms);
        if (chunk.last) {
          mine.final_ms.push_back(ms);
          u.text = std::move(*text);
        } else if (partials != "none") {
          std::lock_guard<std::mutex> lock(print_mu);
          std::fprintf(partials == "stdout" ? stdout : stderr, "partial %s %.2f %s\n", u.key.c_str(), sent_s,
                       text->c_str());
          std::fflush(partials == "stdout" ? stdout : stderr);
        }
      }
    }
    std::lock_guard<std::mutex> lock(print_mu);
    times.chunk_ms.insert(times.chunk_ms.end(), mine.chunk_ms.begin(), mine.chunk_ms.end());
    times.final_ms.insert(times.final_ms.end(), mine.final_ms.begin(), mine.final_ms.end());
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min<int>(concurrency, static_cast<int>(utts.size())); ++t) {
    if (streaming)
      threads.emplace_back(stream_worker);
    else
      threads.emplace_back(worker);
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  int failures = 0, unscored = 0;
  for (const Utterance& u : utts) {
    if (!u.status.ok()) {
      ++failures;
      std::fprintf(stderr, "u2client: %s: %s\n", u.key.c_str(), u.status.ToString().c_str());
      continue;
    }
    std::printf("%s %s\n", u.key.c_str(), u.text.c_str());
    if (scorer && !scorer->Add(u.key, u.text)) ++unscored;
  }
  std::fflush(stdout);
  if (scorer) {
    std::fprintf(stderr, "u2client: %s\n", scorer->Summary().c_str());
    if (unscored > 0) std::fprintf(stderr, "u2client: %d utterances had no reference\n", unscored);
  }
  if (streaming && !times.chunk_ms.empty()) {
    std::fprintf(
        stderr,
        "u2client: %zu chunks (%d ms, first %d ms), latency send->response p50 %.1f ms, p99 %.1f ms, "
        "max %.1f ms; final (sequence_end) p50 %.1f ms, max %.1f ms\n",
        times.chunk_ms.size(), chunking.chunk_ms, chunking.first_chunk_ms, PercentileOf(times.chunk_ms, 50),
        PercentileOf(times.chunk_ms, 99), PercentileOf(times.chunk_ms, 100), PercentileOf(times.final_ms, 50),
        PercentileOf(times.final_ms, 100));
  }
  std::fprintf(stderr, "u2client: %zu utterances, %.2f s of audio in %.2f s (%.1fx real time), %d failed\n",
               utts.size(), audio_seconds.load(), elapsed, elapsed > 0 ? audio_seconds.load() / elapsed : 0.0,
               failures);
  return failures == 0 ? 0 : 1;
}
