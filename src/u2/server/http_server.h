// A small asynchronous HTTP/1.1 server (Boost.Beast) with keep-alive and optional TLS: it reads
// requests and hands them to a handler that answers through a Responder, possibly later and from
// another thread (the inference path answers from a batcher worker). A response may also be
// streamed (chunked transfer encoding: server-sent events). A ConnectionUpgrader may take over
// connections that ask to switch protocols (the WebSocket front end, websocket_session.h).
// Used for the REST/OpenAI/WebSocket port and the metrics port.
#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "u2/util/option_registry.h"
#include "u2/util/status.h"

namespace u2::server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

// The body of a streamed response, written piece by piece. Any thread; Write after Finish and
// calls after the client has gone are ignored.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual void Write(std::string data) = 0;
  virtual void Finish() = 0;
  virtual bool client_gone() const = 0;
};

// Answers one request: either call it once with a whole response, or call Stream() once with the
// response's header and write its body through the returned stream. Any thread.
class Responder {
 public:
  using SendFunction = std::function<void(HttpResponse)>;
  using StreamFunction = std::function<std::shared_ptr<ResponseStream>(HttpResponse)>;
  Responder(SendFunction send, StreamFunction stream = nullptr)
      : send_(std::move(send)), stream_(std::move(stream)) {}
  void operator()(HttpResponse response) const { send_(std::move(response)); }
  // Starts a chunked response (its body is ignored). Null if this transport cannot stream.
  std::shared_ptr<ResponseStream> Stream(HttpResponse header) const {
    return stream_ ? stream_(std::move(header)) : nullptr;
  }

 private:
  SendFunction send_;
  StreamFunction stream_;
};

using HttpHandler = std::function<void(HttpRequest&& request, Responder respond)>;
// Runs before the handler and before an upgrade: a response to send instead (e.g. 401 for a
// missing API key), or nothing to let the request through.
using RequestFilter = std::function<std::optional<HttpResponse>(const HttpRequest& request)>;

struct HttpServerConfig {
  std::string bind_address = "0.0.0.0";
  int port = 8000;  // 0: pick a free port; -1: disabled
  int num_threads = 2;
  uint64_t max_body_bytes = 256ull << 20;  // larger bodies get 413 and the connection closes
  // HTTPS / WSS on this port when both are set (PEM files, re-read when they change).
  std::string ssl_cert, ssl_key;
  // A request must arrive whole within this time once its first byte has (0: no limit); slow
  // or stalled senders are cut off instead of holding a connection forever.
  int request_timeout_s = 300;
  // Connections open at once; more are answered 503 (Retry-After) and closed at once, so a flood
  // of idle or slow connections cannot take every file descriptor.
  int max_connections = 4096;

  // The main HTTP port's options (the metrics port is configured by MetricsConfig).
  void Register(OptionRegistry* r);
  Status Validate() const;
  bool tls() const { return !ssl_cert.empty(); }
};

// Takes over connections whose request asks for a protocol upgrade (e.g. WebSocket).
class ConnectionUpgrader {
 public:
  virtual ~ConnectionUpgrader() = default;
  // Whether this upgrader wants the connection of `request` (an upgrade request); if not, the
  // request goes to the ordinary handler like any other.
  virtual bool Accepts(const HttpRequest& request) const = 0;
  // An answer instead of the upgrade (say 503 while the server drains), or none. Refusing here,
  // before the handshake, lets a load balancer retry the connection elsewhere; a close after
  // it cannot be retried.
  virtual std::optional<HttpResponse> Refuse(const HttpRequest& /*request*/) const { return std::nullopt; }
  // Owns the connection from now on and answers the handshake itself. Runs on the connection's
  // strand (an I/O thread of the server); must not block. One overload per transport.
  virtual void Upgrade(HttpRequest&& request, boost::beast::tcp_stream&& stream) = 0;
  virtual void Upgrade(HttpRequest&& request, TlsStream&& stream) = 0;
  // Called once by HttpServer::Stop() before the I/O threads stop: from then on no thread may
  // post work to the taken-over connections (their io_context goes away with the server).
  virtual void Stop() = 0;
};

class HttpServer {
 public:
  // Binds and starts serving (port 0 picks a free port; see port()). `upgrader` (optional) gets
  // the upgrade requests it accepts; `filter` (optional) sees every request first.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerConfig& config, HttpHandler handler,
                                                     std::shared_ptr<ConnectionUpgrader> upgrader = nullptr,
                                                     RequestFilter filter = nullptr);
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
