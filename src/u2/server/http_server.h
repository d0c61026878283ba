// A small asynchronous HTTP/1.1 server (Boost.Beast) with keep-alive: it reads requests and
// hands them to a handler that answers through a Responder, possibly later and from another
// thread (the inference path answers from a batcher worker). Used for the REST API and metrics.
#pragma once

#include <boost/beast/http.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "u2/util/status.h"

namespace u2::server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// Sends the response for one request; call exactly once, from any thread.
using Responder = std::function<void(HttpResponse response)>;
using HttpHandler = std::function<void(HttpRequest&& request, Responder respond)>;

struct HttpServerConfig {
  std::string bind_address = "0.0.0.0";
  int port = 8000;
  int num_threads = 2;
  uint64_t max_body_bytes = 256ull << 20;  // larger bodies get 413 and the connection closes
};

class HttpServer {
 public:
  // Binds and starts serving (port 0 picks a free port; see port()).
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerConfig& config, HttpHandler handler);
  ~HttpServer();  // Stop()
  void Stop();
  int port() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A response with `body` and the usual headers (keep-alive and version copied from `request`).
HttpResponse MakeResponse(const HttpRequest& request, int status, std::string body,
                          const std::string& content_type = "application/json");
// {"error": message} with the given status.
HttpResponse MakeErrorResponse(const HttpRequest& request, int status, const std::string& message);

}  // namespace u2::server
