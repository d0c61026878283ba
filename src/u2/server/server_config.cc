#include "u2/server/server_config.h"

#include "u2/backend/ops.h"

namespace u2::server {

void GrpcConfig::Register(OptionRegistry* r) {
  r->Add("grpc-port", &port, "gRPC port (0: any free port, -1: off)");
  r->Add("grpc-use-ssl", &use_ssl, "serve gRPC over TLS (--grpc-server-cert, --grpc-server-key)");
  r->Add("grpc-use-ssl-mutual", &use_ssl_mutual,
         "gRPC mutual TLS: also require a client certificate signed by --grpc-root-cert");
  r->Add("grpc-server-cert", &server_cert, "PEM certificate chain of the gRPC server");
  r->Add("grpc-server-key", &server_key, "PEM private key of the gRPC server");
  r->Add("grpc-root-cert", &root_cert, "PEM root certificates that client certificates must chain to");
  r->Add("grpc-cert-refresh-s", &cert_refresh_s,
         "how often the gRPC certificate files are checked for changes");
}

Status GrpcConfig::Validate() const {
  if (port < -1 || port > 65535) return InvalidArgument("grpc_port must be in [-1, 65535]");
  const bool tls = use_ssl || use_ssl_mutual;
  if (tls && (server_cert.empty() || server_key.empty())) {
    return InvalidArgument("--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key");
  }
  if (use_ssl_mutual && root_cert.empty())
    return InvalidArgument("--grpc-use-ssl-mutual needs --grpc-root-cert");
  if (!tls && (!server_cert.empty() || !server_key.empty())) {
    return InvalidArgument("--grpc-server-cert/--grpc-server-key are given but --grpc-use-ssl is not");
  }
  if (cert_refresh_s < 1) return InvalidArgument("grpc_cert_refresh_s must be >= 1");
  return Status::Ok();
}

void MetricsConfig::Register(OptionRegistry* r) {
  r->Add("metrics-port", &port, "Prometheus metrics port (0: any, -1: off)");
}

void StreamDefaults::Register(OptionRegistry* r) {
  r->Add("stream-chunk-size", &chunk_size,
         "default decoding chunk size of streams (encoder frames; 0: the model's own: model.json's "
         "decoding_chunk_size, else WeNet's 16, rounded up to the model's streaming unit)");
  r->Add("stream-left-chunks", &left_chunks, "default left chunks of attention history of streams (-1: all)");
  r->Add("stream-vad-gate", &vad_gate,
         "streams skip silence and end segments at pauses by default (the VAD of --vad-model-dir, "
         "with the --vad-* settings; clients may turn it on or off per stream: vad_gate)");
}

Status StreamDefaults::Validate() const {
  if (chunk_size < 0) return InvalidArgument("stream_chunk_size must be >= 0 (0: the model's own)");
  if (left_chunks < -1) return InvalidArgument("stream_left_chunks must be >= -1 (-1: all)");
  return Status::Ok();
}

void ServerConfig::Register(OptionRegistry* r) {
  r->Add("model-dir", &model_dirs, "model directory, PATH or NAME=PATH (repeatable)");
  r->Add("bind", &bind_address, "address to listen on");
  r->Add("device", &device, "where the models run: cpu | cuda | cuda:N (GPU N; one process per GPU)");
  r->Add("precision", &precision,
         "GEMM operands: fp32 | fp16 | bf16 (fp16/bf16 need --device cuda) | int8 (CPU: int8 linear layers)");
  r->Add("drain-timeout-s", &drain_timeout_s,
         "graceful shutdown (SIGTERM): how long it waits for in-flight requests and live streams to finish");
  r->Add("unknown-sequence-retryable", &unknown_sequence_retryable,
         "answer a request for a sequence this server does not hold with UNAVAILABLE (retryable: for a "
         "load balancer that hashes sequences to replicas) instead of INVALID_ARGUMENT");
  r->Add("memory-trim-interval-s", &memory_trim_interval_s,
         "give freed heap memory back to the system this often (0: never)");
  recognizer.Register(r);
  batcher.Register(r);
  streams.Register(r);
  stream_defaults.Register(r);
  http.Register(r);
  grpc.Register(r);
  metrics.Register(r);
  websocket.Register(r);
  long_audio.Register(r);
  auth.Register(r);
}

Status ServerConfig::Validate() const {
  if (model_dirs.empty()) return InvalidArgument("no model given (--model-dir)");
  if (metrics.port < -1 || metrics.port > 65535)
    return InvalidArgument("metrics_port must be in [-1, 65535]");
  U2_RETURN_IF_ERROR(ParseDevice(device).status().WithContext("device"));
  U2_RETURN_IF_ERROR(ParsePrecision(precision).status().WithContext("precision"));
  if (drain_timeout_s < 0) return InvalidArgument("drain_timeout_s must be >= 0");
  if (memory_trim_interval_s < 0) return InvalidArgument("memory_trim_interval_s must be >= 0");
  RecognizerConfig rc = recognizer;
  rc.model_dir = model_dirs.front();
  U2_RETURN_IF_ERROR(rc.Validate());
  U2_RETURN_IF_ERROR(batcher.Validate());
  if (streams.max_streams < 0) return InvalidArgument("max_streams must be >= 0 (0: no streaming)");
  if (streams.max_streams > 0) U2_RETURN_IF_ERROR(streams.Validate());
  U2_RETURN_IF_ERROR(stream_defaults.Validate());
  U2_RETURN_IF_ERROR(http.Validate());
  U2_RETURN_IF_ERROR(grpc.Validate());
  U2_RETURN_IF_ERROR(websocket.Validate());
  U2_RETURN_IF_ERROR(long_audio.Validate());
  return Status::Ok();
}

}  // namespace u2::server
