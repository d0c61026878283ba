// u2client: sends audio files to u2serve (or Triton serving the same model interface) and
// prints "utt text" per utterance, in input order; with --text also CER/WER, scored exactly as
// u2recognize scores.
//
//   u2client a.wav b.wav                                   # gRPC, localhost:8001
//   u2client --protocol http --url localhost:8000 a.wav
//   u2client --wav-scp wav.scp --text text --concurrency 8 --model ctc_prefix_beam_search
#include <CLI/CLI.hpp>
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
#include "u2/engine/transcript_scorer.h"
#include "u2/server/client.h"
#include "u2/util/table_file.h"

namespace {

int Fail(const u2::Status& status) {
  std::fprintf(stderr, "u2client: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2client: recognise audio files with a running u2serve"};
  std::vector<std::string> wav_files;
  std::string wav_scp, text_file, protocol_name = "grpc", url, model = "attention_rescoring";
  std::vector<std::string> params;
  int concurrency = 1;
  double wait_s = 0;
  app.add_option("wavs", wav_files, "audio files (any format/rate libsndfile reads; sent as 16 kHz float)");
  app.add_option("--wav-scp", wav_scp, "Kaldi-style list: 'utt path' per line");
  app.add_option("--text", text_file, "reference transcripts 'utt text' per line: print CER (and WER)");
  app.add_option("--protocol,-i", protocol_name, "grpc or http")->capture_default_str();
  app.add_option("--url,-u", url,
                 "server host:port (default localhost:8001 for gRPC, localhost:8000 for HTTP)");
  app.add_option("--model,-m", model, "model name")->capture_default_str();
  app.add_option("--concurrency", concurrency, "requests in flight")->check(CLI::Range(1, 1024));
  app.add_option("--param", params, "request parameter KEY=VALUE (e.g. beam=4, decoding_mode=ctc_greedy)");
  app.add_option("--wait", wait_s, "wait up to this many seconds for the model to become ready");
  CLI11_PARSE(app, argc, argv);

  auto protocol = u2::server::ParseProtocol(protocol_name);
  if (!protocol.ok()) return Fail(protocol.status());
  if (url.empty()) url = *protocol == u2::server::Protocol::kGrpc ? "localhost:8001" : "localhost:8000";
  if (wav_files.empty() && wav_scp.empty()) {
    std::fprintf(stderr, "u2client: give audio files or --wav-scp\n");
    return 2;
  }
  std::map<std::string, u2::server::Parameter> parameters;
  for (const std::string& p : params) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return Fail(u2::InvalidArgument("--param needs KEY=VALUE, got " + p));
    const std::string key = p.substr(0, eq), value = p.substr(eq + 1);
    // Numbers go as numbers (integers as int64), true/false as bools, the rest as strings.
    char* end = nullptr;
    const long long i = std::strtoll(value.c_str(), &end, 10);
    if (!value.empty() && *end == '\0') {
      parameters[key] = static_cast<int64_t>(i);
      continue;
    }
    const double d = std::strtod(value.c_str(), &end);
    if (!value.empty() && *end == '\0')
      parameters[key] = d;
    else if (value == "true" || value == "false")
      parameters[key] = value == "true";
    else
      parameters[key] = value;
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
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min<int>(concurrency, static_cast<int>(utts.size())); ++t)
    threads.emplace_back(worker);
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
  std::fprintf(stderr, "u2client: %zu utterances, %.2f s of audio in %.2f s (%.1fx real time), %d failed\n",
               utts.size(), audio_seconds.load(), elapsed, elapsed > 0 ? audio_seconds.load() / elapsed : 0.0,
               failures);
  return failures == 0 ? 0 : 1;
}
