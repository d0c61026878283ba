#include "u2/server/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "u2/server/refusals.h"
#include "u2/server/tls.h"

namespace u2::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

HttpResponse MakeResponse(const HttpRequest& request, int status, std::string body,
                          const std::string& content_type) {
  HttpResponse res{static_cast<http::status>(status), request.version()};
  res.set(http::field::server, "u2serve");
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  res.keep_alive(request.keep_alive());
  // 503 is always "busy or draining, come back": say when (RFC 9110 §10.2.3).
  if (status == 503) res.set(http::field::retry_after, "1");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse MakeErrorResponse(const HttpRequest& request, int status, const std::string& message) {
  return MakeResponse(request, status, nlohmann::json{{"error", message}}.dump());
}

void HttpServerConfig::Register(OptionRegistry* r) {
  r->Add("http-port", &port, "HTTP/REST, OpenAI and WebSocket port (0: any free port, -1: off)");
  r->Add("http-threads", &num_threads, "HTTP I/O threads");
  r->Add("max-request-bytes", &max_body_bytes, "largest request body / gRPC message");
  r->Add("http-ssl-cert", &ssl_cert, "PEM certificate chain: serve HTTPS and WSS on the HTTP port");
  r->Add("http-ssl-key", &ssl_key, "PEM private key of --http-ssl-cert");
  r->Add("http-request-timeout-s", &request_timeout_s,
         "a request (or an idle keep-alive connection) must complete within this time (0: no limit)");
  r->Add("http-max-connections", &max_connections,
         "HTTP connections open at once; more get 503 and are closed");
}

Status HttpServerConfig::Validate() const {
  if (port < -1 || port > 65535) return InvalidArgument("http_port must be in [-1, 65535]");
  if (num_threads < 1 || num_threads > 256) return InvalidArgument("http_threads must be in [1, 256]");
  if (max_body_bytes < 1024) return InvalidArgument("max_request_bytes must be >= 1024");
  if (ssl_cert.empty() != ssl_key.empty())
    return InvalidArgument("--http-ssl-cert and --http-ssl-key go together");
  if (request_timeout_s < 0) return InvalidArgument("http_request_timeout_s must be >= 0");
  if (max_connections < 1) return InvalidArgument("http_max_connections must be >= 1");
  return Status::Ok();
}

namespace {

// The bytes of one chunk of a chunked body (RFC 9112 §7.1), or of the last one when empty.
std::string ChunkBytes(std::string_view data) {
  if (data.empty()) return "0\r\n\r\n";
  std::ostringstream os;
  os << std::hex << data.size() << "\r\n" << data << "\r\n";
  return os.str();
}

struct Shared {
  HttpServerConfig config;
  HttpHandler handler;
  std::shared_ptr<ConnectionUpgrader> upgrader;  // may be null
  RequestFilter filter;                          // may be null
  mutable std::atomic<int> open_connections{0};  // sessions alive (until upgraded or closed)
};

// One connection: reads requests one at a time and writes each answer (whole, or streamed in
// chunks) before reading the next. Stream: beast::tcp_stream or TlsStream.
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream&& stream, std::shared_ptr<const Shared> shared)
      : stream_(std::move(stream)), shared_(std::move(shared)) {
    ++shared_->open_connections;
  }
  ~Session() { --shared_->open_connections; }

  void Run() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->Start(); });
  }

  // Called through net::post on the strand.
  void WriteChunk(std::string data, bool last) {
    if (closed_) return;
    pending_.push_back(ChunkBytes(data));
    if (last && !data.empty()) pending_.push_back(ChunkBytes(""));
    if (last) stream_finished_ = true;
    WritePending();
  }
  bool closed() const { return closed_; }

 private:
  void Start() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      SetTimer();
      stream_.async_handshake(
          net::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) return self->Close();  // plaintext to a TLS port, bad certificate...: just close
            self->Read();
          });
    } else {
      Read();
    }
  }

  void SetTimer() {
    if (shared_->config.request_timeout_s > 0) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(shared_->config.request_timeout_s));
    } else {
      beast::get_lowest_layer(stream_).expires_never();
    }
  }

  void Read() {
    parser_.emplace();
    parser_->body_limit(shared_->config.max_body_bytes);
    parser_->header_limit(64 * 1024);
    SetTimer();
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof) return Close();
    if (ec == http::error::body_limit) {
      CountRefusal(RefusalCause::kRequestTooLarge);
      return WriteError(413, "request body exceeds the server's limit of " +
                                 std::to_string(shared_->config.max_body_bytes) +
                                 " bytes (--max-request-bytes)");
    }
    if (ec) {
      // A request begun and not finished in time (a slow or stalled sender) is cut off; an idle
      // keep-alive connection timing out between requests is not a refusal.
      if (ec == beast::error::timeout && parser_ && parser_->got_some())
        CountRefusal(RefusalCause::kRequestTimeout);
      if (ec == net::error::operation_aborted || ec == net::error::connection_reset ||
          ec == beast::error::timeout)
        return Close();
      // A malformed request line or headers: answer 400 and close.
      return WriteError(400, "malformed HTTP request: " + ec.message());
    }
    beast::get_lowest_layer(stream_).expires_never();  // the handler may take a while
    HttpRequest request = parser_->release();
    if (shared_->filter) {
      if (std::optional<HttpResponse> refusal = shared_->filter(request)) return Write(std::move(*refusal));
    }
    if (shared_->upgrader != nullptr && beast::websocket::is_upgrade(request) &&
        shared_->upgrader->Accepts(request)) {
      if (std::optional<HttpResponse> refusal = shared_->upgrader->Refuse(request))
        return Write(std::move(*refusal));
      // The connection leaves this session (which ends here) for the upgrader's.
      return shared_->upgrader->Upgrade(std::move(request), std::move(stream_));
    }
    const bool keep_alive = request.keep_alive();
    const unsigned version = request.version();
    auto self = this->shared_from_this();
    Responder respond(
        [self](HttpResponse res) {
          net::post(self->stream_.get_executor(),
                    [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
        },
        [self, keep_alive, version](HttpResponse header) -> std::shared_ptr<ResponseStream> {
          header.version(version);
          header.keep_alive(keep_alive);
          header.chunked(true);
          header.body().clear();
          std::ostringstream os;
          os << header.base();
          auto stream = std::make_shared<ChunkedStream>(self);
          net::post(self->stream_.get_executor(), [self, bytes = os.str(), keep_alive]() mutable {
            self->keep_alive_after_stream_ = keep_alive;
            self->pending_.push_back(std::move(bytes));
            self->WritePending();
          });
          return stream;
        });
    try {
      shared_->handler(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      // Handlers do not throw by design; this keeps a bug from taking the server down.
      spdlog::error("HTTP handler threw: {}", e.what());
      WriteError(500, std::string("internal error: ") + e.what());
    }
  }

  // The body of a streamed response: each Write is one chunk, posted to the session's strand.
  class ChunkedStream : public ResponseStream {
   public:
    explicit ChunkedStream(std::shared_ptr<Session> session) : session_(std::move(session)) {}
    ~ChunkedStream() override { Finish(); }
    void Write(std::string data) override {
      if (finished_ || data.empty()) return;
      net::post(session_->stream_.get_executor(),
                [s = session_, data = std::move(data)]() mutable { s->WriteChunk(std::move(data), false); });
    }
    void Finish() override {
      if (finished_.exchange(true)) return;
      net::post(session_->stream_.get_executor(), [s = session_] { s->WriteChunk("", true); });
    }
    bool client_gone() const override { return session_->closed_; }

   private:
    std::shared_ptr<Session> session_;
    std::atomic<bool> finished_{false};
  };

  void WriteError(int status, const std::string& message) {
    HttpRequest dummy;
    dummy.version(11);
    auto res = MakeErrorResponse(dummy, status, message);
    res.keep_alive(false);
    Write(std::move(res));
  }

  void Write(HttpResponse res) {
    auto msg = std::make_shared<HttpResponse>(std::move(res));
    const bool keep_alive = msg->keep_alive();
    SetTimer();  // a client that stops reading does not hold the connection forever
    http::async_write(stream_, *msg,
                      [self = this->shared_from_this(), msg, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  // Writes the queued bytes of a streamed response in order; after the last chunk the
  // connection reads its next request (or closes).
  void WritePending() {
    if (writing_ || closed_) return;
    if (pending_.empty()) {
      if (stream_finished_) {
        stream_finished_ = false;
        if (keep_alive_after_stream_) return Read();
        return Close();
      }
      return;
    }
    writing_ = true;
    SetTimer();
    net::async_write(stream_, net::buffer(pending_.front()),
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->pending_.pop_front();
                       if (ec) return self->Close();
                       self->WritePending();
                     });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    pending_.clear();
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(stream_).socket().close(ec);
  }

  Stream stream_;
  std::shared_ptr<const Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<std::string> pending_;  // bytes of a streamed response
  bool writing_ = false;
  bool stream_finished_ = false;
  bool keep_alive_after_stream_ = false;
  std::atomic<bool> closed_{false};
};

}  // namespace

namespace {

// Over --http-max-connections: a plain-HTTP client gets a bare 503 (written without waiting: a
// fresh socket's buffer takes it), a TLS one just the close; either way the descriptor is freed
// at once.
void RefuseConnection(tcp::socket socket, bool tls) {
  CountRefusal(RefusalCause::kTooManyConnections);
  beast::error_code ec;
  if (!tls) {
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nServer: u2serve\r\nRetry-After: 1\r\nContent-Type: "
        "application/json\r\nContent-Length: 57\r\nConnection: close\r\n\r\n"
        "{\"error\":\"too many connections (--http-max-connections)\"}";
    socket.non_blocking(true, ec);
    if (!ec) socket.write_some(net::buffer(kBusy), ec);
  }
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<Shared> shared;
  std::shared_ptr<TlsContextProvider> tls;  // null: plain HTTP
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  int port = 0;
  bool stopped = false;

  void Accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted) return;
        spdlog::warn("HTTP accept failed: {}", ec.message());
      } else if (shared->open_connections.load() >= shared->config.max_connections) {
        RefuseConnection(std::move(socket), tls != nullptr);
      } else if (tls) {
        TlsStream stream(beast::tcp_stream(std::move(socket)), *tls->Current());
        std::make_shared<Session<TlsStream>>(std::move(stream), shared)->Run();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), shared)->Run();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerConfig& config, HttpHandler handler,
                                                        std::shared_ptr<ConnectionUpgrader> upgrader,
                                                        RequestFilter filter) {
  U2_RETURN_IF_ERROR(config.Validate());
  auto impl = std::make_unique<Impl>();
  impl->shared = std::make_shared<Shared>();
  impl->shared->config = config;
  impl->shared->handler = std::move(handler);
  impl->shared->upgrader = std::move(upgrader);
  impl->shared->filter = std::move(filter);
  if (config.tls()) {
    U2_ASSIGN_OR_RETURN(impl->tls, TlsContextProvider::Create(config.ssl_cert, config.ssl_key));
  }
  beast::error_code ec;
  const auto address = net::ip::make_address(config.bind_address, ec);
  if (ec) return InvalidArgument("bad bind address '" + config.bind_address + "': " + ec.message());
  tcp::endpoint endpoint{address, static_cast<unsigned short>(config.port)};
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on " + config.bind_address + ":" + std::to_string(config.port) + ": " +
                       ec.message());
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  for (int i = 0; i < std::max(1, config.num_threads); ++i) {
    raw->threads.emplace_back([raw] { raw->ioc.run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->shared->upgrader) impl_->shared->upgrader->Stop();
  net::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

int HttpServer::port() const { return impl_->port; }

}  // namespace u2::server
