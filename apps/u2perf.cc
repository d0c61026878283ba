// u2perf: offline load generator for u2serve, in the manner of Triton's perf_analyzer.
//
//   u2perf --concurrency-range 1:32:8 --measurement-interval 5000 clip1.wav clip2.wav
//
// For each concurrency level C, C client threads each keep one request in flight (batch 1,
// cycling over the given utterances). Time is cut into windows of --measurement-interval ms; a
// request belongs to the window in which its response arrives. A level is stable when the last
// three windows all have throughput > 0 and, for both throughput and mean latency, max/min <=
// 1 + --stability-percentage/100 (perf_analyzer's rule); after --max-windows windows it is
// reported as unstable. The result merges the last three windows: throughput = requests /
// seconds, audio s/s = audio seconds / seconds, RTF = seconds / audio seconds (wall time per
// second of audio, the whole server), percentiles = element round(p/100 (n-1)) of the sorted
// latencies. Server columns come from ModelStatistics deltas over the same windows.
//
// --streaming (perf_analyzer's sequence mode, for streaming_wenet): each of C concurrent streams
// is a talker that streams utterance after utterance as Triton sequences, chunk by chunk (the
// chunking u2client --streaming uses: first chunk --chunk-ms + 50 ms, then --chunk-ms, each
// zero-padded), one chunk in flight, over its own gRPC ModelStreamInfer call (or --unary, each
// chunk with the sticky header x-u2-sequence-id, as u2client sends it). With
// real-time pacing (the default; --no-realtime sends each chunk as soon as the previous answer
// is back) a chunk is sent when its audio has been spoken; the streams start spread evenly over
// one chunk period, as independent talkers would. After a warm-up, --windows windows of
// --measurement-interval ms are measured; a chunk belongs to the window in which its response
// arrives. Reported per level: chunk latency (send -> response) percentiles, the latency of
// final (sequence_end) chunks, chunks/s, audio s/s, RTF = sum of chunk latencies / audio they
// carried (the fraction of real time a stream waits for the server), lag = how late chunks
// were sent behind the talker's schedule (a server that cannot keep up makes it grow), errors.
// A level "holds" its streams in real time when it has no errors and both the p99 latency and
// the p99 lag are within --p99-budget-ms; --search looks for the largest such concurrency above
// (doubling) and between (bisection) the tested ones.
//
//   u2perf --streaming --concurrency 1,2,4,8 --p99-budget-ms 300 --search --output streaming.csv a.wav
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/client/client.h"
#include "u2/util/table_file.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Utterance {
  std::string key;
  std::vector<float> samples;
  double seconds = 0;
};

struct Completion {
  Clock::time_point end;
  double latency_ms = 0;
  double audio_seconds = 0;
  bool ok = true;
};

struct LevelResult {
  int concurrency = 0;
  int64_t requests = 0, errors = 0;
  double duration_s = 0, audio_seconds = 0;
  double throughput = 0, audio_per_s = 0, rtf = 0;
  double avg_ms = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0;
  bool stable = false;
  int windows = 0;
  // Server side (per request averages over the windows), -1 when unavailable.
  double server_queue_us = -1, server_infer_us = -1, server_avg_batch = -1;
  std::string first_error;
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = static_cast<size_t>(std::floor(p / 100.0 * (sorted.size() - 1) + 0.5));
  return sorted[std::min(i, sorted.size() - 1)];
}

struct StatsPoint {
  bool ok = false;
  uint64_t queue_count = 0, queue_ns = 0, infer_count = 0, infer_ns = 0, inferences = 0, executions = 0;
};

StatsPoint ReadStats(u2::server::AsrClient& client) {
  StatsPoint p;
  auto s = client.Statistics();
  if (!s.ok() || s->model_stats_size() < 1) return p;
  const auto& m = s->model_stats(0);
  p.ok = true;
  p.queue_count = m.inference_stats().queue().count();
  p.queue_ns = m.inference_stats().queue().ns();
  p.infer_count = m.inference_stats().compute_infer().count();
  p.infer_ns = m.inference_stats().compute_infer().ns();
  p.inferences = m.inference_count();
  p.executions = m.execution_count();
  return p;
}

// ---- Streaming mode -----------------------------------------------------------------------------

struct StreamingSetup {
  u2::server::Protocol protocol = u2::server::Protocol::kGrpc;
  std::string url, model;
  u2::server::SequenceTransport transport = u2::server::SequenceTransport::kStream;
  u2::server::ChunkingOptions chunking;
  std::map<std::string, u2::server::Parameter> parameters;
  bool realtime = true;
  int interval_ms = 5000;
  int windows = 3;
  int warmup_ms = 0;
  double p99_budget_ms = 300;
};

// One chunk's round trip.
struct ChunkRecord {
  Clock::time_point done;
  double latency_ms = 0;  // send -> response
  double lag_ms = 0;      // send time - when its audio was complete (real-time pacing only)
  double audio_seconds = 0;
  bool last = false;  // carried sequence_end (its response is the final transcript)
  bool ok = true;
};

struct StreamLevelResult {
  int concurrency = 0;
  int64_t chunks = 0, errors = 0, sequences = 0;
  double duration_s = 0, audio_seconds = 0;
  double chunks_per_s = 0, audio_per_s = 0, rtf = 0;
  double avg_ms = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max_ms = 0;
  double final_p50 = 0, final_p99 = 0;
  double lag_p99 = 0, lag_max = 0;
  bool meets_budget = false;
  std::string first_error;
};

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

StreamLevelResult RunStreamingLevel(int concurrency, const StreamingSetup& setup,
                                    const std::vector<Utterance>& utts,
                                    std::atomic<int64_t>& next_sequence_id) {
  const int sample_rate = setup.chunking.sample_rate;
  const double chunk_s = setup.chunking.chunk_ms / 1000.0;
  std::mutex mu;
  std::condition_variable stop_cv;
  bool stop = false;  // guarded by mu
  std::vector<ChunkRecord> records;
  std::string first_error;
  const Clock::time_point level_start = Clock::now();

  // Waits until `t` or until the level stops; true if it stopped.
  auto wait_until = [&](Clock::time_point t) {
    std::unique_lock<std::mutex> lock(mu);
    return stop_cv.wait_until(lock, t, [&] { return stop; });
  };
  auto stopping = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return stop;
  };

  auto talker = [&](int index) {
    auto client = u2::server::AsrClient::Create(setup.protocol, setup.url, setup.model);
    u2::StatusOr<std::unique_ptr<u2::server::SequenceChannel>> channel =
        client.ok() ? (*client)->OpenSequenceChannel(setup.transport) : client.status();
    // Independent talkers: spread the streams' phases over one chunk period.
    Clock::time_point talk_start = level_start + Seconds(chunk_s * index / concurrency);
    if (setup.realtime && wait_until(talk_start)) return;
    talk_start = Clock::now();
    size_t next_utt = static_cast<size_t>(index) % utts.size();
    while (!stopping()) {
      const Utterance& utt = utts[next_utt];
      next_utt = (next_utt + 1) % utts.size();
      const int64_t sequence_id = next_sequence_id++;
      const std::span<const float> samples(utt.samples);
      const std::vector<u2::server::AudioChunk> chunks =
          u2::server::PlanChunks(samples.size(), setup.chunking);
      bool failed = false;
      for (size_t k = 0; k < chunks.size(); ++k) {
        const u2::server::AudioChunk& chunk = chunks[k];
        const Clock::time_point ready =
            talk_start + Seconds(static_cast<double>(chunk.offset + chunk.length) / sample_rate);
        // When the level stops, the sequence is closed with the chunk at hand (as perf_analyzer
        // ends unfinished sequences), sent at once.
        bool end = chunk.last;
        if (setup.realtime ? wait_until(ready) : stopping()) end = true;
        u2::server::SequenceRequest request;
        request.sequence_id = sequence_id;
        request.start = chunk.first;
        request.end = end;
        request.samples = samples.subspan(chunk.offset, chunk.length);
        request.padded_length = chunk.padded_length;
        request.request_id = std::to_string(sequence_id) + "-" + std::to_string(k);
        request.parameters = setup.parameters;
        const Clock::time_point sent = Clock::now();
        u2::StatusOr<std::string> text = channel.ok() ? (*channel)->Send(request) : channel.status();
        ChunkRecord r;
        r.done = Clock::now();
        r.latency_ms = std::chrono::duration<double, std::milli>(r.done - sent).count();
        r.lag_ms = setup.realtime ? std::chrono::duration<double, std::milli>(sent - ready).count() : 0;
        r.audio_seconds = static_cast<double>(chunk.length) / sample_rate;
        r.last = end;
        r.ok = text.ok();
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!text.ok() && first_error.empty()) first_error = text.status().ToString();
          records.push_back(r);
        }
        if (!text.ok()) {
          failed = true;
          break;
        }
        if (end) break;
      }
      if (failed) {
        // Do not spin against a server that refuses everything: pause one chunk, then start
        // a fresh talker schedule.
        if (wait_until(Clock::now() + Seconds(chunk_s))) return;
        talk_start = Clock::now();
      } else {
        // The talker goes straight on with the next utterance; if the server made it fall
        // behind, its audio is already waiting (the lag carries over).
        talk_start += Seconds(utt.seconds);
        if (!setup.realtime) talk_start = Clock::now();
      }
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) threads.emplace_back(talker, t);

  // Warm-up, then the measured windows with a progress line each.
  const Clock::time_point measure_begin = level_start + std::chrono::milliseconds(setup.warmup_ms);
  std::this_thread::sleep_until(measure_begin);
  Clock::time_point window_begin = measure_begin;
  for (int w = 0; w < setup.windows; ++w) {
    const Clock::time_point window_end = window_begin + std::chrono::milliseconds(setup.interval_ms);
    std::this_thread::sleep_until(window_end);
    std::vector<double> lat;
    int64_t errors = 0;
    double lag_max = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const ChunkRecord& r : records) {
        if (r.done < window_begin || r.done >= window_end) continue;
        if (!r.ok) {
          ++errors;
          continue;
        }
        lat.push_back(r.latency_ms);
        lag_max = std::max(lag_max, r.lag_ms);
      }
    }
    std::sort(lat.begin(), lat.end());
    const double secs = std::chrono::duration<double>(window_end - window_begin).count();
    std::fprintf(stderr,
                 "u2perf: %d streams, window %d/%d: %.2f chunks/s, latency p50 %.1f ms, p99 %.1f ms, max lag "
                 "%.1f ms, %lld errors\n",
                 concurrency, w + 1, setup.windows, static_cast<double>(lat.size()) / secs,
                 Percentile(lat, 50), Percentile(lat, 99), lag_max, static_cast<long long>(errors));
    window_begin = window_end;
  }
  const Clock::time_point measure_end = window_begin;
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
  }
  stop_cv.notify_all();
  for (auto& t : threads) t.join();

  StreamLevelResult r;
  r.concurrency = concurrency;
  r.first_error = first_error;
  std::vector<double> lat, finals, lags;
  double latency_sum = 0;
  for (const ChunkRecord& c : records) {
    if (c.done < measure_begin || c.done >= measure_end) continue;
    if (!c.ok) {
      ++r.errors;
      continue;
    }
    lat.push_back(c.latency_ms);
    latency_sum += c.latency_ms;
    lags.push_back(c.lag_ms);
    r.audio_seconds += c.audio_seconds;
    if (c.last) {
      ++r.sequences;
      finals.push_back(c.latency_ms);
    }
  }
  std::sort(lat.begin(), lat.end());
  std::sort(finals.begin(), finals.end());
  std::sort(lags.begin(), lags.end());
  r.chunks = static_cast<int64_t>(lat.size());
  r.duration_s = std::chrono::duration<double>(measure_end - measure_begin).count();
  r.chunks_per_s = r.chunks / r.duration_s;
  r.audio_per_s = r.audio_seconds / r.duration_s;
  r.rtf = r.audio_seconds > 0 ? latency_sum / 1000.0 / r.audio_seconds : 0;
  r.avg_ms = lat.empty() ? 0 : latency_sum / lat.size();
  r.p50 = Percentile(lat, 50);
  r.p90 = Percentile(lat, 90);
  r.p95 = Percentile(lat, 95);
  r.p99 = Percentile(lat, 99);
  r.max_ms = lat.empty() ? 0 : lat.back();
  r.final_p50 = Percentile(finals, 50);
  r.final_p99 = Percentile(finals, 99);
  r.lag_p99 = Percentile(lags, 99);
  r.lag_max = lags.empty() ? 0 : lags.back();
  r.meets_budget =
      r.chunks > 0 && r.errors == 0 && r.p99 <= setup.p99_budget_ms && r.lag_p99 <= setup.p99_budget_ms;
  std::fprintf(
      stderr,
      "u2perf: %d streams: %.2f chunks/s, %.2f audio s/s, latency p50 %.1f ms, p99 %.1f ms, lag p99 %.1f "
      "ms, %lld errors: %s the %.0f ms p99 budget\n",
      concurrency, r.chunks_per_s, r.audio_per_s, r.p50, r.p99, r.lag_p99, static_cast<long long>(r.errors),
      r.meets_budget ? "within" : "NOT within", setup.p99_budget_ms);
  if (!r.first_error.empty()) std::fprintf(stderr, "u2perf: first error: %s\n", r.first_error.c_str());
  return r;
}

// The levels to run: the listed ones, then (with search) upward by doubling while they hold
// and by bisection between the largest holding and the smallest failing level.
std::vector<StreamLevelResult> RunStreaming(const std::vector<int>& levels, bool search, int max_concurrency,
                                            const StreamingSetup& setup, const std::vector<Utterance>& utts,
                                            int64_t first_sequence_id) {
  std::atomic<int64_t> next_sequence_id{first_sequence_id};
  std::vector<StreamLevelResult> results;
  std::map<int, bool> holds;
  auto run = [&](int c) {
    results.push_back(RunStreamingLevel(c, setup, utts, next_sequence_id));
    holds[c] = results.back().meets_budget;
  };
  for (int c : levels) run(c);
  if (!search) return results;
  auto bounds = [&] {
    int best = 0;  // largest holding level (0: none)
    for (const auto& [c, ok] : holds)
      if (ok) best = c;
    int fail = 0;  // smallest failing level above it (0: none)
    for (const auto& [c, ok] : holds) {
      if (!ok && c > best) {
        fail = c;
        break;
      }
    }
    return std::pair{best, fail};
  };
  for (;;) {
    auto [best, fail] = bounds();
    int next = 0;
    if (fail == 0) {
      if (best >= max_concurrency) break;
      next = std::min(max_concurrency, std::max(1, best * 2));
    } else if (fail - best > 1) {
      next = best + (fail - best) / 2;
    } else {
      break;
    }
    if (holds.count(next)) break;  // nothing new to learn
    std::fprintf(stderr, "u2perf: search: trying %d streams (holding: %d, failing: %s)\n", next, best,
                 fail ? std::to_string(fail).c_str() : "none yet");
    run(next);
  }
  return results;
}

int LargestHolding(const std::vector<StreamLevelResult>& results) {
  int best = 0;
  for (const StreamLevelResult& r : results)
    if (r.meets_budget) best = std::max(best, r.concurrency);
  return best;
}

void PrintStreamingTable(const std::vector<StreamLevelResult>& results, const StreamingSetup& setup) {
  std::printf("%-8s %9s %10s %8s %8s %8s %8s %8s %8s %9s %9s %9s %7s %6s %s\n", "Streams", "chunks/s",
              "audio s/s", "RTF", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms", "final p99", "lag p99",
              "sequences", "errors", "holds", "");
  for (const StreamLevelResult& r : results) {
    std::printf("%-8d %9.2f %10.2f %8.4f %8.1f %8.1f %8.1f %8.1f %8.1f %9.1f %9.1f %9lld %7lld %6s\n",
                r.concurrency, r.chunks_per_s, r.audio_per_s, r.rtf, r.p50, r.p90, r.p95, r.p99, r.max_ms,
                r.final_p99, r.lag_p99, static_cast<long long>(r.sequences), static_cast<long long>(r.errors),
                r.meets_budget ? "yes" : "no");
  }
  std::printf(
      "(chunks of %d ms, first %d ms, %s; latency = chunk send -> response; RTF = chunk latency per second "
      "of "
      "audio; lag = how late chunks left behind the talker's schedule; holds = no errors and p99 latency and "
      "p99 lag "
      "<= %.0f ms)\n",
      setup.chunking.chunk_ms, setup.chunking.first_chunk_ms,
      setup.realtime ? "real-time pacing" : "no pacing", setup.p99_budget_ms);
  std::printf("Real-time streams held at p99 <= %.0f ms: %d (largest tested concurrency within the budget)\n",
              setup.p99_budget_ms, LargestHolding(results));
}

const char* const kStreamingCsvHeader =
    "concurrency,chunks,errors,sequences,duration_s,chunks_per_s,audio_seconds_per_s,rtf,avg_ms,p50_ms,p90_"
    "ms,"
    "p95_ms,p99_ms,max_ms,final_p50_ms,final_p99_ms,lag_p99_ms,lag_max_ms,meets_budget";

bool WriteStreamingCsv(const std::string& path, const std::vector<StreamLevelResult>& results) {
  std::ofstream f(path);
  f << kStreamingCsvHeader << "\n";
  for (const StreamLevelResult& r : results) {
    f << r.concurrency << "," << r.chunks << "," << r.errors << "," << r.sequences << "," << r.duration_s
      << "," << r.chunks_per_s << "," << r.audio_per_s << "," << r.rtf << "," << r.avg_ms << "," << r.p50
      << "," << r.p90 << "," << r.p95 << "," << r.p99 << "," << r.max_ms << "," << r.final_p50 << ","
      << r.final_p99 << "," << r.lag_p99 << "," << r.lag_max << "," << (r.meets_budget ? 1 : 0) << "\n";
  }
  return static_cast<bool>(f);
}

bool WriteStreamingJson(const std::string& path, const std::vector<StreamLevelResult>& results,
                        const StreamingSetup& setup, const std::string& protocol_name, size_t num_utts) {
  nlohmann::json j = {
      {"mode", "streaming"},
      {"model", setup.model},
      {"protocol", protocol_name},
      {"transport", setup.transport == u2::server::SequenceTransport::kStream ? "stream" : "unary"},
      {"url", setup.url},
      {"chunk_ms", setup.chunking.chunk_ms},
      {"first_chunk_ms", setup.chunking.first_chunk_ms},
      {"realtime", setup.realtime},
      {"measurement_interval_ms", setup.interval_ms},
      {"windows", setup.windows},
      {"warmup_ms", setup.warmup_ms},
      {"p99_budget_ms", setup.p99_budget_ms},
      {"utterances", num_utts},
      {"held_streams", LargestHolding(results)},
      {"results", nlohmann::json::array()}};
  for (const StreamLevelResult& r : results) {
    j["results"].push_back({{"concurrency", r.concurrency},
                            {"chunks", r.chunks},
                            {"errors", r.errors},
                            {"sequences", r.sequences},
                            {"duration_s", r.duration_s},
                            {"chunks_per_s", r.chunks_per_s},
                            {"audio_seconds_per_s", r.audio_per_s},
                            {"rtf", r.rtf},
                            {"latency_ms",
                             {{"avg", r.avg_ms},
                              {"p50", r.p50},
                              {"p90", r.p90},
                              {"p95", r.p95},
                              {"p99", r.p99},
                              {"max", r.max_ms}}},
                            {"final_latency_ms", {{"p50", r.final_p50}, {"p99", r.final_p99}}},
                            {"lag_ms", {{"p99", r.lag_p99}, {"max", r.lag_max}}},
                            {"meets_budget", r.meets_budget},
                            {"first_error", r.first_error}});
  }
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  return static_cast<bool>(f);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "1,2,4,8" -> {1, 2, 4, 8}; empty on a malformed list.
std::vector<int> ParseConcurrencyList(const std::string& list) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int c = std::stoi(item, &used);
      if (used != item.size() || c < 1 || c > 4096) return {};
      out.push_back(c);
    } catch (...) {
      return {};
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2perf: load generator for u2serve, offline or streaming (perf_analyzer-style)"};
  std::vector<std::string> wav_files;
  std::string wav_scp, protocol_name = "grpc", url, model = "attention_rescoring", range = "1";
  std::string csv_path, json_path;
  int interval_ms = 5000, max_windows = 10;
  double stability = 10;
  app.add_option("wavs", wav_files, "utterances to send (cycled)");
  app.add_option("--wav-scp", wav_scp, "Kaldi-style list of utterances");
  app.add_option("--protocol,-i", protocol_name, "grpc or http")->capture_default_str();
  app.add_option("--url,-u", url, "server host:port");
  app.add_option("--model,-m", model, "model name")->capture_default_str();
  app.add_option("--concurrency-range", range, "start[:end[:step]]")->capture_default_str();
  app.add_option("--measurement-interval,-p", interval_ms, "window length in ms")->capture_default_str();
  app.add_option("--stability-percentage,-s", stability, "allowed spread of the last 3 windows, %")
      ->capture_default_str();
  app.add_option("--max-windows,-r", max_windows, "windows before giving up on stability")
      ->capture_default_str();
  app.add_option("--csv,-f", csv_path, "write the results as CSV");
  app.add_option("--json", json_path, "write the results as JSON");
  std::string concurrency_list, output_path;
  std::vector<std::string> params;
  app.add_option("--concurrency", concurrency_list,
                 "concurrency levels as a list, e.g. 1,2,4,8 (instead of a range)");
  app.add_option("--output,-o", output_path, "write the results: JSON if the name ends in .json, else CSV");
  // Streaming (sequence) mode.
  bool streaming = false, realtime = true, unary = false, search = false;
  StreamingSetup setup;
  int first_chunk_ms = 0, windows = 3, warmup_ms = -1, max_concurrency = 256;
  int64_t sequence_id_start = 0;
  auto* streaming_flag = app.add_flag("--streaming", streaming,
                                      "stream chunked sequences to a streaming model (streaming_wenet)");
  app.add_option("--chunk-ms", setup.chunking.chunk_ms,
                 "streaming: chunk length after the first, ms (640 = chunk 16)")
      ->capture_default_str()
      ->needs(streaming_flag);
  app.add_option("--first-chunk-ms", first_chunk_ms,
                 "streaming: first chunk length, ms (default chunk-ms + 50)")
      ->needs(streaming_flag);
  app.add_flag("--realtime,!--no-realtime", realtime,
               "streaming: send each chunk when its audio has been spoken (default), or as soon as the last "
               "response is back")
      ->needs(streaming_flag);
  app.add_flag("--unary", unary, "streaming over gRPC: one ModelInfer per chunk instead of ModelStreamInfer")
      ->needs(streaming_flag);
  app.add_option("--windows", windows, "streaming: measured windows per level")
      ->capture_default_str()
      ->needs(streaming_flag);
  app.add_option("--warmup-ms", warmup_ms,
                 "streaming: warm-up before measuring (default first chunk + 2 chunks)")
      ->needs(streaming_flag);
  app.add_option("--p99-budget-ms", setup.p99_budget_ms,
                 "streaming: p99 chunk latency a level must stay within")
      ->capture_default_str()
      ->needs(streaming_flag);
  app.add_flag("--search", search,
               "streaming: after the listed levels, search for the largest concurrency within the budget "
               "(doubling, "
               "then bisection)")
      ->needs(streaming_flag);
  app.add_option("--max-concurrency", max_concurrency, "streaming: upper bound of --search")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096))
      ->needs(streaming_flag);
  app.add_option("--param", params, "streaming: request parameter KEY=VALUE sent with every chunk")
      ->allow_extra_args(false)
      ->needs(streaming_flag);
  app.add_option("--sequence-id-start", sequence_id_start,
                 "streaming: first sequence_id (default derived from the process id)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 62))
      ->needs(streaming_flag);
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "u2perf: %s\n", m.c_str());
    return 1;
  };
  auto protocol = u2::server::ParseProtocol(protocol_name);
  if (!protocol.ok()) return fail(protocol.status().message());
  if (url.empty()) url = *protocol == u2::server::Protocol::kGrpc ? "localhost:8001" : "localhost:8000";
  std::vector<int> levels;
  if (!concurrency_list.empty()) {
    levels = ParseConcurrencyList(concurrency_list);
    if (levels.empty()) return fail("bad --concurrency '" + concurrency_list + "' (e.g. 1,2,4,8)");
  } else {
    int c_start = 1, c_end = -1, c_step = 1;
    {
      std::vector<int> parts;
      size_t pos = 0;
      try {
        while (pos <= range.size()) {
          size_t colon = range.find(':', pos);
          if (colon == std::string::npos) colon = range.size();
          parts.push_back(std::stoi(range.substr(pos, colon - pos)));
          pos = colon + 1;
        }
      } catch (...) {
        return fail("bad --concurrency-range '" + range + "' (start[:end[:step]])");
      }
      if (parts.empty() || parts.size() > 3) return fail("bad --concurrency-range '" + range + "'");
      c_start = parts[0];
      c_end = parts.size() > 1 ? parts[1] : c_start;
      c_step = parts.size() > 2 ? parts[2] : 1;
      if (c_start < 1 || c_end < c_start || c_step < 1 || c_end > 4096) {
        return fail("bad --concurrency-range '" + range + "'");
      }
    }
    for (int c = c_start; c <= c_end; c += c_step) levels.push_back(c);
  }
  if (interval_ms < 50 || max_windows < 3)
    return fail("--measurement-interval must be >= 50, --max-windows >= 3");
  if (streaming) {
    if (app.count("--model") == 0) model = "streaming_wenet";
    setup.chunking.first_chunk_ms =
        app.count("--first-chunk-ms") > 0
            ? first_chunk_ms
            : u2::server::ChunkingOptions::DefaultFirstChunkMs(setup.chunking.chunk_ms);
    if (auto s = setup.chunking.Validate(); !s.ok()) return fail(s.ToString());
    if (windows < 1 || windows > 1000) return fail("--windows must be 1..1000");
    setup.warmup_ms =
        warmup_ms >= 0 ? warmup_ms : setup.chunking.first_chunk_ms + 2 * setup.chunking.chunk_ms;
    if (!(setup.p99_budget_ms > 0)) return fail("--p99-budget-ms must be > 0");
  }

  std::vector<Utterance> utts;
  std::vector<std::pair<std::string, std::string>> sources;
  for (const auto& p : wav_files) sources.emplace_back(std::filesystem::path(p).stem().string(), p);
  if (!wav_scp.empty()) {
    auto entries = u2::ReadWavScp(wav_scp);
    if (!entries.ok()) return fail(entries.status().ToString());
    for (auto& e : *entries) sources.emplace_back(e.key, e.value);
  }
  if (sources.empty()) return fail("give audio files or --wav-scp");
  for (auto& [key, path] : sources) {
    auto audio = u2::ReadAudioFileAs(path, 16000);
    if (!audio.ok()) return fail(key + ": " + audio.status().ToString());
    const double seconds = audio->seconds();  // before the samples are moved out
    utts.push_back({key, std::move(audio->samples), seconds});
  }

  auto control = u2::server::AsrClient::Create(*protocol, url, model);
  if (!control.ok()) return fail(control.status().ToString());
  if (auto s = (*control)->WaitUntilReady(10); !s.ok()) return fail(s.ToString());

  if (streaming) {
    setup.protocol = *protocol;
    setup.url = url;
    setup.model = model;
    setup.transport = unary || *protocol == u2::server::Protocol::kHttp
                          ? u2::server::SequenceTransport::kUnary
                          : u2::server::SequenceTransport::kStream;
    setup.realtime = realtime;
    setup.interval_ms = interval_ms;
    setup.windows = windows;
    for (const std::string& p : params) {
      auto kv = u2::server::ParseParameterArg(p);
      if (!kv.ok()) return fail(kv.status().ToString());
      setup.parameters[kv->first] = kv->second;
    }
    if (sequence_id_start == 0) sequence_id_start = int64_t{getpid()} * 1000000 + 1;
    const std::vector<StreamLevelResult> results =
        RunStreaming(levels, search, max_concurrency, setup, utts, sequence_id_start);
    PrintStreamingTable(results, setup);
    std::vector<std::pair<std::string, bool>> outputs;  // path, as JSON
    if (!output_path.empty()) outputs.emplace_back(output_path, EndsWith(output_path, ".json"));
    if (!csv_path.empty()) outputs.emplace_back(csv_path, false);
    if (!json_path.empty()) outputs.emplace_back(json_path, true);
    for (const auto& [path, as_json] : outputs) {
      const bool written = as_json ? WriteStreamingJson(path, results, setup, protocol_name, utts.size())
                                   : WriteStreamingCsv(path, results);
      if (!written) return fail("cannot write " + path);
    }
    for (const StreamLevelResult& r : results) {
      if (r.chunks == 0)
        return fail("no successful chunk with " + std::to_string(r.concurrency) + " streams");
    }
    return 0;
  }

  std::vector<LevelResult> results;
  for (int c : levels) {
    std::mutex mu;
    std::vector<Completion> done;
    std::string first_error;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> counter{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < c; ++t) {
      threads.emplace_back([&, t] {
        auto client = u2::server::AsrClient::Create(*protocol, url, model);
        size_t i = t % utts.size();
        while (!stop) {
          const Utterance& u = utts[i];
          i = (i + 1) % utts.size();
          const auto start = Clock::now();
          auto text = client.ok() ? (*client)->Recognize(u.samples, {}, "perf-" + std::to_string(counter++))
                                  : u2::StatusOr<std::string>(client.status());
          Completion comp;
          comp.end = Clock::now();
          comp.latency_ms = std::chrono::duration<double, std::milli>(comp.end - start).count();
          comp.audio_seconds = u.seconds;
          comp.ok = text.ok();
          std::lock_guard<std::mutex> lock(mu);
          if (!text.ok() && first_error.empty()) first_error = text.status().ToString();
          done.push_back(comp);
        }
      });
    }
    // Windows.
    struct Window {
      Clock::time_point begin, end;
      StatsPoint stats_begin, stats_end;
      double throughput = 0, avg_ms = 0;
    };
    std::vector<Window> windows;
    LevelResult r;
    r.concurrency = c;
    // Let every client get its first request in before measuring.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(interval_ms, 1000)));
    Window w;
    w.begin = Clock::now();
    w.stats_begin = ReadStats(**control);
    for (int k = 0; k < max_windows; ++k) {
      std::this_thread::sleep_until(w.begin + std::chrono::milliseconds(interval_ms));
      w.end = Clock::now();
      w.stats_end = ReadStats(**control);
      int64_t n = 0;
      double sum_ms = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const Completion& comp : done) {
          if (comp.end >= w.begin && comp.end < w.end && comp.ok) {
            ++n;
            sum_ms += comp.latency_ms;
          }
        }
      }
      const double secs = std::chrono::duration<double>(w.end - w.begin).count();
      w.throughput = n / secs;
      w.avg_ms = n ? sum_ms / n : 0;
      windows.push_back(w);
      std::fprintf(stderr, "u2perf: concurrency %d, window %d: %.2f infer/s, mean latency %.1f ms\n", c,
                   k + 1, w.throughput, w.avg_ms);
      if (windows.size() >= 3) {
        double tmin = 1e300, tmax = 0, lmin = 1e300, lmax = 0;
        for (size_t j = windows.size() - 3; j < windows.size(); ++j) {
          tmin = std::min(tmin, windows[j].throughput);
          tmax = std::max(tmax, windows[j].throughput);
          lmin = std::min(lmin, windows[j].avg_ms);
          lmax = std::max(lmax, windows[j].avg_ms);
        }
        const double f = 1 + stability / 100;
        if (tmin > 0 && tmax / tmin <= f && lmin > 0 && lmax / lmin <= f) {
          r.stable = true;
          break;
        }
      }
      Window next;
      next.begin = w.end;
      next.stats_begin = w.stats_end;
      w = next;
    }
    stop = true;
    for (auto& t : threads) t.join();

    // Merge the last three windows.
    const Window& first = windows[windows.size() - 3];
    const Window& last = windows.back();
    std::vector<double> lat;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const Completion& comp : done) {
        if (comp.end < first.begin || comp.end >= last.end) continue;
        if (!comp.ok) {
          ++r.errors;
          continue;
        }
        lat.push_back(comp.latency_ms);
        r.audio_seconds += comp.audio_seconds;
      }
      r.first_error = first_error;
    }
    std::sort(lat.begin(), lat.end());
    r.windows = static_cast<int>(windows.size());
    r.requests = static_cast<int64_t>(lat.size());
    r.duration_s = std::chrono::duration<double>(last.end - first.begin).count();
    r.throughput = r.requests / r.duration_s;
    r.audio_per_s = r.audio_seconds / r.duration_s;
    r.rtf = r.audio_seconds > 0 ? r.duration_s / r.audio_seconds : 0;
    double sum = 0;
    for (double x : lat) sum += x;
    r.avg_ms = lat.empty() ? 0 : sum / lat.size();
    r.p50 = Percentile(lat, 50);
    r.p90 = Percentile(lat, 90);
    r.p95 = Percentile(lat, 95);
    r.p99 = Percentile(lat, 99);
    if (first.stats_begin.ok && last.stats_end.ok) {
      const StatsPoint &a = first.stats_begin, &b = last.stats_end;
      const uint64_t q = b.queue_count - a.queue_count, ic = b.infer_count - a.infer_count;
      if (q > 0) r.server_queue_us = (b.queue_ns - a.queue_ns) / 1000.0 / q;
      if (ic > 0) r.server_infer_us = (b.infer_ns - a.infer_ns) / 1000.0 / ic;
      if (b.executions > a.executions) {
        r.server_avg_batch = double(b.inferences - a.inferences) / double(b.executions - a.executions);
      }
    }
    std::fprintf(stderr, "u2perf: concurrency %d: %.2f infer/s, %.2f audio s/s, p50 %.1f ms, p99 %.1f ms%s\n",
                 c, r.throughput, r.audio_per_s, r.p50, r.p99, r.stable ? "" : " (not stable)");
    if (!r.first_error.empty()) std::fprintf(stderr, "u2perf: first error: %s\n", r.first_error.c_str());
    results.push_back(r);
  }

  // Table.
  std::printf("%-11s %10s %11s %8s %9s %9s %9s %9s %9s %10s %8s %6s\n", "Concurrency", "infer/s", "audio s/s",
              "RTF", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "avg ms", "srv queue", "avg bat", "errors");
  for (const LevelResult& r : results) {
    std::printf("%-11d %10.2f %11.2f %8.4f %9.1f %9.1f %9.1f %9.1f %9.1f %10.1f %8.2f %6lld%s\n",
                r.concurrency, r.throughput, r.audio_per_s, r.rtf, r.p50, r.p90, r.p95, r.p99, r.avg_ms,
                r.server_queue_us / 1000.0, r.server_avg_batch, static_cast<long long>(r.errors),
                r.stable ? "" : "  (unstable)");
  }
  std::printf(
      "(srv queue: mean server queue time in ms; avg bat: inferences per execution; RTF: wall seconds per "
      "second of audio over the whole server)\n");
  if (!output_path.empty()) (EndsWith(output_path, ".json") ? json_path : csv_path) = output_path;
  if (!csv_path.empty()) {
    std::ofstream f(csv_path);
    f << "concurrency,throughput_infer_per_s,audio_seconds_per_s,rtf,p50_ms,p90_ms,p95_ms,p99_ms,avg_ms,"
         "server_queue_us,server_compute_infer_us,server_avg_batch,requests,errors,stable\n";
    for (const LevelResult& r : results) {
      f << r.concurrency << "," << r.throughput << "," << r.audio_per_s << "," << r.rtf << "," << r.p50 << ","
        << r.p90 << "," << r.p95 << "," << r.p99 << "," << r.avg_ms << "," << r.server_queue_us << ","
        << r.server_infer_us << "," << r.server_avg_batch << "," << r.requests << "," << r.errors << ","
        << (r.stable ? 1 : 0) << "\n";
    }
    if (!f) return fail("cannot write " + csv_path);
  }
  if (!json_path.empty()) {
    nlohmann::json j = {{"model", model},
                        {"protocol", protocol_name},
                        {"url", url},
                        {"measurement_interval_ms", interval_ms},
                        {"utterances", utts.size()},
                        {"results", nlohmann::json::array()}};
    for (const LevelResult& r : results) {
      j["results"].push_back(
          {{"concurrency", r.concurrency},
           {"requests", r.requests},
           {"errors", r.errors},
           {"duration_s", r.duration_s},
           {"throughput_infer_per_s", r.throughput},
           {"audio_seconds_per_s", r.audio_per_s},
           {"rtf", r.rtf},
           {"stable", r.stable},
           {"windows", r.windows},
           {"latency_ms",
            {{"avg", r.avg_ms}, {"p50", r.p50}, {"p90", r.p90}, {"p95", r.p95}, {"p99", r.p99}}},
           {"server",
            {{"queue_us", r.server_queue_us},
             {"compute_infer_us", r.server_infer_us},
             {"avg_batch", r.server_avg_batch}}}});
    }
    std::ofstream f(json_path);
    f << j.dump(2) << "\n";
    if (!f) return fail("cannot write " + json_path);
  }
  for (const LevelResult& r : results) {
    if (r.requests == 0) return fail("no successful request at concurrency " + std::to_string(r.concurrency));
  }
  return 0;
}
