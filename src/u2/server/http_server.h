// A small asynchronous HTTP/1.1 server (Boost.Beast) with keep-alive: it reads requests and
// hands them to a handler that answers through a Responder, possibly later and from another
// thread (the inference path answers from a batcher worker). Used for the REST API and metrics.
// A ConnectionUpgrader may take over connections that ask to switch protocols (the WebSocket
// front end, websocket_session.h).
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
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

// Takes over connections whose request asks for a protocol upgrade (e.g. WebSocket).
class ConnectionUpgrader {
 public:
  virtual ~ConnectionUpgrader() = default;
  // Whether this upgrader wants the connection of `request` (an upgrade request); if not, the
  // request goes to the ordinary handler like any other.
  virtual bool Accepts(const HttpRequest& request) const = 0;
  // Owns the connection from now on and answers the handshake itself. Runs on the connection's
  // strand (an I/O thread of the server); must not block.
  virtual void Upgrade(HttpRequest&& request, boost::beast::tcp_stream&& stream) = 0;
  // Called once by HttpServer::Stop() before the I/O threads stop: from then on no thread may
  // post work to the taken-over connections (their io_context goes away with the server).
  virtual void Stop() = 0;
};

class HttpServer {
 public:
  // Binds and starts serving (port 0 picks a free port; see port()). `upgrader` (optional) gets
  // the upgrade requests it accepts.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerConfig& config, HttpHandler handler,
                                                     std::shared_ptr<ConnectionUpgrader> upgrader = nullptr);
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
