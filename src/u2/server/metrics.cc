#include "u2/server/metrics.h"

#include <sstream>
#include <utility>
#include <vector>

#include "u2/server/kserve_types.h"
#include "u2/server/refusals.h"

namespace u2::server {

std::string PrometheusText(const ModelRepository& models, const WebSocketCounters* websocket) {
  std::ostringstream os;
  std::vector<std::pair<ServedModel*, ModelStats::Snapshot>> snaps;
  for (ServedModel* m : models.models()) snaps.emplace_back(m, m->stats.Get());
  auto labels = [](const ServedModel* m) {
    return "model=\"" + m->name + "\",version=\"" + kModelVersion + "\"";
  };
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    for (const auto& [m, s] : snaps) os << name << "{" << labels(m) << "} " << value(s) << "\n";
  };
  family("nv_inference_request_success", "counter",
         "Number of successful inference requests, all batch sizes",
         [](const auto& s) { return s.success.count; });
  os << "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes\n"
        "# TYPE nv_inference_request_failure counter\n";
  for (const auto& [m, s] : snaps) {
    for (const char* reason : {"REJECTED", "CANCELED", "BACKEND", "OTHER"}) {
      auto it = s.failures_by_reason.find(reason);
      os << "nv_inference_request_failure{" << labels(m) << ",reason=\"" << reason << "\"} "
         << (it == s.failures_by_reason.end() ? 0 : it->second) << "\n";
    }
  }
  family("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)",
         [](const auto& s) { return s.inference_count; });
  family("nv_inference_exec_count", "counter", "Number of model executions performed",
         [](const auto& s) { return s.execution_count; });
  os << "# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting "
        "execution "
        "per-model.\n# TYPE nv_inference_pending_request_count gauge\n";
  for (const auto& [m, s] : snaps) {
    // The queue is shared by the names of one model dir; report it under each name's batcher.
    os << "nv_inference_pending_request_count{" << labels(m) << "} "
       << (m->batcher ? m->batcher->queued_tasks() : 0) << "\n";
  }
  family("nv_inference_request_duration_us", "counter",
         "Cumulative inference request duration in microseconds",
         [](const auto& s) { return (s.success.ns + s.fail.ns) / 1000; });
  family("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds",
         [](const auto& s) { return s.queue.ns / 1000; });
  family("nv_inference_compute_input_duration_us", "counter",
         "Cumulative compute input duration in microseconds",
         [](const auto& s) { return s.compute_input.ns / 1000; });
  family("nv_inference_compute_infer_duration_us", "counter",
         "Cumulative compute inference duration in microseconds",
         [](const auto& s) { return s.compute_infer.ns / 1000; });
  family("nv_inference_compute_output_duration_us", "counter",
         "Cumulative inference compute output duration in microseconds",
         [](const auto& s) { return s.compute_output.ns / 1000; });
  family("u2_audio_seconds_total", "counter", "Seconds of audio recognised successfully",
         [](const auto& s) { return s.audio_seconds; });
  family(
      "u2_compute_seconds_per_audio_second", "gauge",
      "Cumulative compute_infer time divided by audio seconds (real-time factor of the engine, per request)",
      [](const auto& s) { return s.audio_seconds > 0 ? s.compute_infer.ns / 1e9 / s.audio_seconds : 0.0; });
  // Histogram of execution batch sizes (counts of Recognize() calls by utterances per call).
  os << "# HELP u2_batch_size Utterances per model execution\n# TYPE u2_batch_size histogram\n";
  for (const auto& [m, s] : snaps) {
    uint64_t cumulative = 0, sum = 0;
    const uint64_t bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    auto it = s.batch_stats.begin();
    for (uint64_t le : bounds) {
      for (; it != s.batch_stats.end() && it->first <= le; ++it) {
        cumulative += it->second.compute_infer.count;
        sum += it->first * it->second.compute_infer.count;
      }
      os << "u2_batch_size_bucket{" << labels(m) << ",le=\"" << le << "\"} " << cumulative << "\n";
    }
    for (; it != s.batch_stats.end(); ++it) {
      cumulative += it->second.compute_infer.count;
      sum += it->first * it->second.compute_infer.count;
    }
    os << "u2_batch_size_bucket{" << labels(m) << ",le=\"+Inf\"} " << cumulative << "\n";
    os << "u2_batch_size_sum{" << labels(m) << "} " << sum << "\n";
    os << "u2_batch_size_count{" << labels(m) << "} " << cumulative << "\n";
  }
  // Streaming: one scheduler per model dir, reported under the streaming name(s) that use it.
  std::vector<std::pair<const ServedModel*, StreamScheduler::Stats>> streams;
  for (const auto& [m, s] : snaps) {
    if (m->streams) streams.emplace_back(m, m->streams->stats());
  }
  if (!streams.empty()) {
    auto stream_family = [&](const char* name, const char* type, const char* help, auto value) {
      os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
      for (const auto& [m, st] : streams) os << name << "{" << labels(m) << "} " << value(st) << "\n";
    };
    using Stats = StreamScheduler::Stats;
    stream_family("u2_streams_live", "gauge", "Streams (sequences) holding state now",
                  [](const Stats& s) { return s.live_streams; });
    // The limit beside the count, so an autoscaler can target occupancy (live / capacity).
    os << "# HELP u2_streams_capacity Streams the server holds at most (--max-streams)\n"
          "# TYPE u2_streams_capacity gauge\n";
    for (const auto& [m, st] : streams) {
      os << "u2_streams_capacity{" << labels(m) << "} " << m->streams->config().max_streams << "\n";
    }
    stream_family("u2_stream_state_bytes", "gauge", "Memory held by the live streams' state",
                  [](const Stats& s) { return s.state_bytes; });
    stream_family("u2_streams_started_total", "counter", "Streams started (sequence START)",
                  [](const Stats& s) { return s.streams_started; });
    stream_family("u2_streams_finished_total", "counter", "Streams that ended normally (sequence END)",
                  [](const Stats& s) { return s.streams_finished; });
    stream_family("u2_streams_timed_out_total", "counter", "Streams dropped by the idle timeout",
                  [](const Stats& s) { return s.streams_timed_out; });
    stream_family("u2_streams_closed_total", "counter",
                  "Streams dropped early (client gone, sequence restarted)",
                  [](const Stats& s) { return s.streams_closed; });
    stream_family("u2_stream_feeds_total", "counter", "Audio pieces (sequence requests) fed to streams",
                  [](const Stats& s) { return s.feeds; });
    stream_family("u2_stream_feed_errors_total", "counter", "Feeds answered with an error",
                  [](const Stats& s) { return s.feed_errors; });
    stream_family("u2_stream_chunks_total", "counter", "Encoder chunks decoded",
                  [](const Stats& s) { return s.chunks; });
    stream_family("u2_stream_steps_total", "counter", "Batched decoding steps (chunks of many streams each)",
                  [](const Stats& s) { return s.steps; });
    stream_family("u2_stream_step_seconds_total", "counter", "Time spent in batched decoding steps",
                  [](const Stats& s) { return s.step_ns / 1e9; });
  }
  if (websocket != nullptr) {
    auto counter = [&](const char* name, const char* type, const char* help, auto value) {
      os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
         << name << " " << value << "\n";
    };
    counter("u2_websocket_connections_open", "gauge", "WebSocket connections alive now",
            websocket->connections_open);
    counter("u2_websocket_connections_total", "counter", "WebSocket connections accepted",
            websocket->connections_total);
    counter("u2_websocket_streams_started_total", "counter", "WebSocket start signals accepted",
            websocket->streams_started);
    counter("u2_websocket_streams_completed_total", "counter", "WebSocket streams that ended with speech_end",
            websocket->streams_completed);
    counter("u2_websocket_streams_failed_total", "counter",
            "WebSocket streams that ended with a failed message", websocket->streams_failed);
    counter("u2_websocket_streams_abandoned_total", "counter",
            "WebSocket streams whose client went away mid-stream", websocket->streams_abandoned);
  }
  os << "# HELP u2_refusals_total Work turned away because the server was full, late or abused, by "
        "cause (server/refusals.h)\n# TYPE u2_refusals_total counter\n";
  for (int c = 0; c < kNumRefusalCauses; ++c) {
    const auto cause = static_cast<RefusalCause>(c);
    os << "u2_refusals_total{cause=\"" << RefusalCauseName(cause) << "\"} "
       << RefusalCounters::Global().count(cause) << "\n";
  }
  return os.str();
}

}  // namespace u2::server
