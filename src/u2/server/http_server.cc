#include "u2/server/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <nlohmann/json.hpp>

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
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse MakeErrorResponse(const HttpRequest& request, int status, const std::string& message) {
  return MakeResponse(request, status, nlohmann::json{{"error", message}}.dump());
}

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, const HttpHandler& handler, ConnectionUpgrader* upgrader, uint64_t max_body)
      : stream_(std::move(socket)), handler_(handler), upgrader_(upgrader), max_body_(max_body) {}

  void Run() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Read(); });
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->body_limit(max_body_);
    parser_->header_limit(64 * 1024);
    stream_.expires_never();
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof) return Close();
    if (ec == http::error::body_limit) {
      HttpRequest dummy;
      dummy.version(11);
      auto res = MakeErrorResponse(dummy, 413,
                                   "request body exceeds the server's limit of " + std::to_string(max_body_) +
                                       " bytes (--max-request-bytes)");
      res.keep_alive(false);
      return Write(std::move(res));
    }
    if (ec) {
      if (ec == net::error::operation_aborted || ec == net::error::connection_reset) return Close();
      // A malformed request line or headers: answer 400 and close.
      HttpRequest dummy;
      dummy.version(11);
      auto res = MakeErrorResponse(dummy, 400, "malformed HTTP request: " + ec.message());
      res.keep_alive(false);
      return Write(std::move(res));
    }
    HttpRequest request = parser_->release();
    if (upgrader_ != nullptr && beast::websocket::is_upgrade(request) && upgrader_->Accepts(request)) {
      // The connection leaves this session (which ends here) for the upgrader's.
      return upgrader_->Upgrade(std::move(request), std::move(stream_));
    }
    auto self = shared_from_this();
    Responder respond = [self](HttpResponse res) {
      net::post(self->stream_.get_executor(),
                [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
    };
    try {
      handler_(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      // Handlers do not throw by design; this keeps a bug from taking the server down.
      spdlog::error("HTTP handler threw: {}", e.what());
      HttpRequest dummy;
      dummy.version(11);
      Write(MakeErrorResponse(dummy, 500, std::string("internal error: ") + e.what()));
    }
  }

  void Write(HttpResponse res) {
    auto msg = std::make_shared<HttpResponse>(std::move(res));
    const bool keep_alive = msg->keep_alive();
    http::async_write(stream_, *msg,
                      [self = shared_from_this(), msg, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpHandler& handler_;
  ConnectionUpgrader* const upgrader_;  // may be null; outlives the session (HttpServer::Impl)
  const uint64_t max_body_;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerConfig config;
  HttpHandler handler;
  std::shared_ptr<ConnectionUpgrader> upgrader;
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
      } else {
        std::make_shared<Session>(std::move(socket), handler, upgrader.get(), config.max_body_bytes)->Run();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerConfig& config, HttpHandler handler,
                                                        std::shared_ptr<ConnectionUpgrader> upgrader) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->handler = std::move(handler);
  impl->upgrader = std::move(upgrader);
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
  if (impl_->upgrader) impl_->upgrader->Stop();
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
