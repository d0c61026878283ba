// u2serve: the Triton-compatible speech recognition server (offline and streaming).
//   u2serve --model-dir models/demo [--config server.yaml] [--http-port 8000] [--grpc-port 8001] ...
// Every flag can also be set in the YAML config (same names, '-' or '_'); flags win.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <string>

#include "u2/server/server.h"

int main(int argc, char** argv) {
  u2::server::ServerConfig config;
  // The YAML file supplies defaults, so find it before the flags are bound.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string path;
    if (a == "--config" && i + 1 < argc) path = argv[i + 1];
    if (a.rfind("--config=", 0) == 0) path = a.substr(9);
    if (!path.empty()) {
      if (u2::Status s = config.LoadYaml(path); !s.ok()) {
        std::fprintf(stderr, "u2serve: %s\n", s.message().c_str());
        return 2;
      }
    }
  }
  const std::vector<std::string> yaml_model_dirs = config.model_dirs;
  std::vector<std::string> cli_model_dirs;

  CLI::App app{"u2serve: Triton-compatible (KServe v2) speech recognition server for WeNet U2/U2++ models"};
  std::string config_path;
  app.add_option("--config", config_path, "YAML file with any of these options (flags override it)");
  app.add_option("--model-dir", cli_model_dirs, "model directory, PATH or NAME=PATH (repeatable)");
  app.add_option("--bind", config.bind_address, "address to listen on")->capture_default_str();
  app.add_option("--http-port", config.http_port, "HTTP/REST port (0: any free port, -1: off)")
      ->capture_default_str();
  app.add_option("--grpc-port", config.grpc_port, "gRPC port (0: any free port, -1: off)")
      ->capture_default_str();
  app.add_option("--metrics-port", config.metrics_port, "Prometheus metrics port (0: any, -1: off)")
      ->capture_default_str();
  app.add_option("--device", config.device, "where the models run: cpu | cuda")->capture_default_str();
  app.add_option("--precision", config.precision,
                 "GEMM operands: fp32 | fp16 | bf16 (fp16/bf16 need --device cuda)")
      ->capture_default_str();
  app.add_option("--threads", config.threads, "threads per inference (BLAS / backend)")
      ->capture_default_str();
  app.add_option("--workers", config.workers, "concurrent batch executions per model dir")
      ->capture_default_str();
  app.add_option("--http-threads", config.http_threads, "HTTP I/O threads")->capture_default_str();
  app.add_option("--max-batch-size", config.max_batch_size, "utterances per batch (and per request)")
      ->capture_default_str();
  app.add_option("--max-queue-delay-us", config.max_queue_delay_us,
                 "longest a request waits for batch company")
      ->capture_default_str();
  app.add_option("--preferred-batch-size", config.preferred_batch_sizes,
                 "preferred batch sizes (repeatable)");
  app.add_option("--max-queue-size", config.max_queue_size, "queued requests before RESOURCE_EXHAUSTED / 503")
      ->capture_default_str();
  app.add_option("--length-aware-batching", config.length_aware_batching,
                 "group requests of similar audio length into a batch")
      ->capture_default_str();
  app.add_option("--max-request-bytes", config.max_request_bytes, "largest request body / gRPC message")
      ->capture_default_str();
  app.add_option("--beam", config.beam, "default beam (0: the model's)")->capture_default_str();
  app.add_option("--ctc-weight", config.ctc_weight, "default CTC weight in rescoring (<0: the model's)")
      ->capture_default_str();
  app.add_option("--reverse-weight", config.reverse_weight, "default right-to-left weight (<0: the model's)")
      ->capture_default_str();
  app.add_option("--drain-timeout-s", config.drain_timeout_s,
                 "how long shutdown waits for in-flight requests")
      ->capture_default_str();
  app.add_option("--max-streams", config.max_streams,
                 "live streams (sequences) per model dir; 0: no streaming_wenet")
      ->capture_default_str();
  app.add_option("--stream-idle-timeout-ms", config.stream_idle_timeout_ms,
                 "a sequence with no request for this long is dropped")
      ->capture_default_str();
  app.add_option("--max-stream-batch", config.max_stream_batch, "stream chunks per batched encoder call")
      ->capture_default_str();
  app.add_option("--stream-batch-delay-us", config.stream_batch_delay_us,
                 "longest a chunk waits for other streams' chunks to batch with")
      ->capture_default_str();
  app.add_option("--stream-workers", config.stream_workers,
                 "concurrent batched streaming steps per model dir")
      ->capture_default_str();
  app.add_option("--stream-chunk-size", config.stream_chunk_size,
                 "default decoding chunk size of streams (encoder frames; WeNet's 16)")
      ->capture_default_str();
  app.add_option("--stream-left-chunks", config.stream_left_chunks,
                 "default left chunks of attention history of streams (-1: all)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  config.model_dirs = cli_model_dirs.empty() ? yaml_model_dirs : cli_model_dirs;

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  spdlog::info("starting u2serve: {}", config.ToString());
  auto server = u2::server::Server::Start(config);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}
