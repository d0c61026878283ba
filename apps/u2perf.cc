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
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/server/client.h"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2perf: offline load generator for u2serve (perf_analyzer-style)"};
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
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& m) {
    std::fprintf(stderr, "u2perf: %s\n", m.c_str());
    return 1;
  };
  auto protocol = u2::server::ParseProtocol(protocol_name);
  if (!protocol.ok()) return fail(protocol.status().message());
  if (url.empty()) url = *protocol == u2::server::Protocol::kGrpc ? "localhost:8001" : "localhost:8000";
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
  if (interval_ms < 50 || max_windows < 3)
    return fail("--measurement-interval must be >= 50, --max-windows >= 3");

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

  std::vector<LevelResult> results;
  for (int c = c_start; c <= c_end; c += c_step) {
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
