// u2serve as a whole: loads the models, starts the gRPC, HTTP and metrics endpoints, and shuts
// down gracefully (finish in-flight requests, refuse new ones, then stop).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/engine/offline_batcher.h"
#include "u2/engine/stream_scheduler.h"
#include "u2/util/status.h"

namespace u2::server {

struct ServerConfig {
  std::vector<std::string> model_dirs;  // each "PATH" or "NAME=PATH"
  std::string bind_address = "0.0.0.0";
  int http_port = 8000;  // 0: pick a free port; -1: disabled
  int grpc_port = 8001;
  int metrics_port = 8002;
  int threads = 1;                 // intra-op threads per Recognize() call
  std::string device = "cpu";      // where the models run: "cpu" | "cuda"
  std::string precision = "fp32";  // GEMM operands: "fp32" | "fp16" | "bf16" (the last two on cuda)
  int workers = 2;                 // concurrent Recognize() calls per model dir
  int http_threads = 2;            // HTTP I/O threads
  int max_batch_size = 64;
  int64_t max_queue_delay_us = 2000;
  std::vector<int> preferred_batch_sizes;
  int max_queue_size = 1024;
  bool length_aware_batching = true;
  int64_t max_request_bytes = 256ll << 20;
  // Decoding defaults for every model dir (unset: from the model's model.json).
  int beam = 0;                // 0: model default
  double ctc_weight = -1;      // < 0: model default
  double reverse_weight = -1;  // < 0: model default
  int drain_timeout_s = 30;    // longest a graceful shutdown waits for in-flight requests
  // Streaming (the streaming_wenet name: Triton sequences; the WebSocket endpoint).
  int max_streams = 1024;                 // live streams per model dir; 0: no streaming names
  int64_t stream_idle_timeout_ms = 5000;  // a stream with no request for this long is dropped
  int max_stream_batch = 64;              // stream chunks per batched encoder call
  int64_t stream_batch_delay_us = 0;      // a step may wait this long for more ready chunks
  int stream_workers = 1;                 // concurrent batched steps per model dir
  int stream_chunk_size = 16;             // default decoding_chunk_size (encoder frames per chunk)
  int stream_left_chunks = -1;            // default num_decoding_left_chunks (-1: all history)

  // Overlays the keys present in a YAML file (same names as the fields / flags).
  Status LoadYaml(const std::string& path);
  Status Validate() const;
  std::string ToString() const;
  StreamSchedulerConfig StreamConfig() const;  // the scheduler settings of each model dir
};

class Server {
 public:
  static StatusOr<std::unique_ptr<Server>> Start(const ServerConfig& config);
  ~Server();
  // Refuses new requests (UNAVAILABLE / 503, readiness false), waits for in-flight requests,
  // then stops every endpoint. Idempotent.
  void Shutdown();
  int http_port() const;
  int grpc_port() const;
  int metrics_port() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace u2::server
