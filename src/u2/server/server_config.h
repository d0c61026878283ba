// u2serve's configuration, composed of the components' own configs (each registers its flags and
// YAML keys in its Register; see u2/util/option_registry.h):
//
//   ServerConfig
//   ├─ model_dirs, bind, device, precision, drain-timeout-s     (this struct)
//   ├─ recognizer   RecognizerConfig      --threads --beam --ctc-weight --reverse-weight
//   ├─ batcher      OfflineBatcherConfig  --max-batch-size --max-queue-delay-us --workers ...
//   ├─ streams      StreamSchedulerConfig --max-streams --stream-idle-timeout-ms ...
//   ├─ stream_defaults StreamDefaults     --stream-chunk-size --stream-left-chunks
//   ├─ http         HttpServerConfig      --http-port --http-threads --max-request-bytes --http-ssl-*
//   ├─ grpc         GrpcConfig            --grpc-port --grpc-use-ssl[-mutual] --grpc-server-cert ...
//   ├─ metrics      MetricsConfig         --metrics-port
//   ├─ websocket    WebSocketConfig       --websocket-*
//   ├─ long_audio   LongAudioConfig       --vad-model-dir --vad-* --long-audio-batch
//   └─ auth         AuthConfig            --api-keys-file --auth-health
//
// A YAML file (--config) sets any of them by the same names ('-' or '_'); flags win.
#pragma once

#include <string>
#include <vector>

#include "u2/engine/long_audio.h"
#include "u2/engine/offline_batcher.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/stream_scheduler.h"
#include "u2/server/api_keys.h"
#include "u2/server/http_server.h"
#include "u2/server/websocket_session.h"
#include "u2/util/option_registry.h"
#include "u2/util/status.h"

namespace u2::server {

// The gRPC endpoint, with Triton's TLS flag names.
struct GrpcConfig {
  int port = 8001;  // 0: pick a free port; -1: disabled
  bool use_ssl = false;
  bool use_ssl_mutual = false;  // also require and verify a client certificate (root_cert)
  std::string server_cert, server_key, root_cert;
  // Certificate files are re-read when they change, checked this often.
  int cert_refresh_s = 60;

  void Register(OptionRegistry* r);
  Status Validate() const;
};

struct MetricsConfig {
  int port = 8002;  // 0: pick a free port; -1: disabled
  void Register(OptionRegistry* r);
};

// The decoding defaults of the streaming names (request parameters may override them).
struct StreamDefaults {
  int chunk_size = 0;     // encoder frames per chunk; 0: the model's own (model.json, else WeNet's 16)
  int left_chunks = -1;   // chunks of attention history (-1: all)
  bool vad_gate = false;  // streams skip silence and end segments at pauses (needs the VAD)
  void Register(OptionRegistry* r);
  Status Validate() const;
};

struct ServerConfig {
  std::vector<std::string> model_dirs;  // each "PATH" or "NAME=PATH"
  std::string bind_address = "0.0.0.0";
  std::string device = "cpu";       // where the models run: "cpu" | "cuda" | "cuda:N"
  std::string precision = "fp32";   // GEMM operands: "fp32" | "fp16" | "bf16" (the last two on cuda)
  int drain_timeout_s = 30;         // longest a graceful shutdown waits for requests and live streams
  int memory_trim_interval_s = 10;  // give freed heap memory back this often (0: never; memory_trimmer.h)
  // A request for a sequence this server does not hold answers UNAVAILABLE (retryable), not
  // Triton's INVALID_ARGUMENT: behind a load balancer that hashes sequences to replicas, it is
  // then retried on the replica that holds it (deploy/envoy, docs/deploy.md).
  bool unknown_sequence_retryable = false;
  RecognizerConfig recognizer;  // threads and decoding defaults (unset: the model's)
  OfflineBatcherConfig batcher;
  StreamSchedulerConfig streams;
  StreamDefaults stream_defaults;
  HttpServerConfig http;
  GrpcConfig grpc;
  MetricsConfig metrics;
  WebSocketConfig websocket;
  LongAudioConfig long_audio;  // recordings longer than a model takes whole (VAD segmentation)
  AuthConfig auth;

  // Every option of every component (call once per ServerConfig: it holds pointers into it).
  void Register(OptionRegistry* r);
  Status Validate() const;
};

}  // namespace u2::server
