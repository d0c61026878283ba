// u2serve as a whole: loads the models, starts the gRPC, HTTP (KServe REST, OpenAI, WebSocket,
// web page) and metrics endpoints, and shuts down gracefully (finish in-flight requests, refuse
// new ones, then stop). The configuration is server_config.h.
#pragma once

#include <memory>

#include "u2/server/server_config.h"
#include "u2/util/status.h"

namespace u2::server {

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
