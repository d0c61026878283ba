#include "u2/server/websocket_session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstring>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "u2/server/formats.h"
#include "u2/server/http_router.h"
#include "u2/server/refusals.h"
#include "u2/server/request_parameters.h"
#include "web_page_html.h"  // kWebPageHtml, generated from web/index.html (CMakeLists.txt)

namespace u2::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using json = nlohmann::json;

std::string_view WebPageHtml() { return kWebPageHtml; }

namespace {

// Text messages are small JSON objects; anything longer is not a WeNet signal.
constexpr uint64_t kMaxTextBytes = 64 * 1024;
// Pieces the socket is read in, so an oversized message is refused before it is all buffered.
constexpr size_t kReadPieceBytes = 64 * 1024;

// The stream options of a start message: the model's defaults with the message's overrides
// (request_parameters.h: WeNet's nbest and continuous_decoding, and u2serve's decoding keys).
// "hotwords" may be a JSON array of "phrase[:boost]" strings, or one string with a phrase per line.
StatusOr<StreamOptions> OptionsFromStart(const json& start, const ServedModel& model) {
  StreamOptions options = model.stream_defaults;
  U2_ASSIGN_OR_RETURN(ParameterMap parameters, ParametersFromJson(start));
  if (const auto it = start.find("hotwords"); it != start.end() && it->is_array()) {
    parameters["hotwords"] = it->dump();
  }
  const HotwordCompiler* hotwords = model.recognizer ? &model.recognizer->hotwords() : nullptr;
  U2_RETURN_IF_ERROR(ApplyRequestParameters(parameters, &options, hotwords));
  if (model.recognizer)
    U2_RETURN_IF_ERROR(model.recognizer->CheckSearchOptions(options.lm, options.hotwords));
  return options;
}

// One connection, one stream. NextLayer: beast::tcp_stream (ws://) or TlsStream (wss://).
template <typename NextLayer>
class WebSocketSession : public std::enable_shared_from_this<WebSocketSession<NextLayer>> {
 public:
  using Shared = WebSocketFrontEnd::Shared;
  using std::enable_shared_from_this<WebSocketSession<NextLayer>>::shared_from_this;
  using std::enable_shared_from_this<WebSocketSession<NextLayer>>::weak_from_this;

  WebSocketSession(NextLayer&& stream, std::shared_ptr<Shared> shared)
      : ws_(std::move(stream)), shared_(std::move(shared)) {
    ++shared_->connections_open;
    ++shared_->connections_total;
  }

  ~WebSocketSession() {
    if (stream_live_) {
      ++shared_->streams_abandoned;
      CloseStream();
    }
    --shared_->connections_open;
  }

  void Run(HttpRequest request) {
    request_ = std::move(request);
    model_from_query_ =
        QueryParameter(std::string_view(request_.target().data(), request_.target().size()), "model");
    // Beast's own timer replaces the HTTP session's; pings keep idle-but-alive clients open.
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeout =
        websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeout.idle_timeout = std::chrono::seconds(shared_->config.idle_timeout_s);
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, kServerName); }));
    // Our own limit is enforced per piece (OnRead) so that an oversized message is answered
    // with a "failed" message instead of Beast's bare close.
    ws_.read_message_max(0);
    ws_.async_accept(request_, [self = shared_from_this()](beast::error_code ec) { self->OnAccept(ec); });
  }

 private:
  enum class State { kAwaitStart, kStreaming, kEnding, kClosing };

  void OnAccept(beast::error_code ec) {
    if (ec) {
      spdlog::debug("WebSocket handshake failed: {}", ec.message());
      return;
    }
    ReadMore();
  }

  // Reads the next piece unless a read is in flight or too much of this client's audio waits to
  // be decoded (then the next decoded feed resumes reading). While closing, reading goes on
  // (and discards) until the close handshake ends.
  void ReadMore() {
    if (reading_ || read_failed_) return;
    if (pending_samples_ > shared_->config.max_pending_samples ||
        pending_feeds_ > shared_->config.max_pending_feeds) {
      // No read in flight: only this reference keeps the session alive until the next update
      // (the scheduler's callbacks hold weak references).
      if (state_ != State::kClosing) paused_self_ = shared_from_this();
      return;
    }
    paused_self_.reset();
    reading_ = true;
    ws_.async_read_some(message_, kReadPieceBytes,
                        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      read_failed_ = true;
      // The client closed or vanished: whatever it was streaming is dropped now, not at the
      // scheduler's idle timeout.
      if (stream_live_) {
        ++shared_->streams_abandoned;
        CloseStream();
      }
      if (ec != websocket::error::closed && ec != net::error::eof && ec != net::error::operation_aborted &&
          ec != net::error::connection_reset) {
        spdlog::debug("WebSocket read failed: {}", ec.message());
      }
      return;
    }
    if (state_ == State::kClosing) {
      message_.clear();
      return ReadMore();  // drain until the close handshake completes
    }
    const uint64_t limit = ws_.got_text() ? std::min(kMaxTextBytes, shared_->config.max_message_bytes)
                                          : shared_->config.max_message_bytes;
    if (message_.size() > limit) {
      message_.clear();
      return Fail((ws_.got_text() ? "text message" : "binary message") + std::string(" exceeds ") +
                      std::to_string(limit) + " bytes (send audio in smaller frames, e.g. 0.1-1 s)",
                  websocket::close_code::too_big);
    }
    if (!ws_.is_message_done()) return ReadMore();
    if (ws_.got_text()) {
      std::string text = beast::buffers_to_string(message_.data());
      message_.clear();
      OnText(text);
    } else {
      OnAudio();
      message_.clear();
    }
    ReadMore();
  }

  void OnText(const std::string& text) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return Fail("Wrong protocol: text messages must be JSON objects such as {\"signal\":\"start\"}");
    }
    if (!j.contains("signal") || !j["signal"].is_string()) {
      return Fail("Wrong message header: no \"signal\" (\"start\" or \"end\")");
    }
    const std::string signal = j["signal"].get<std::string>();
    if (signal == "start") return OnStart(j);
    if (signal == "end") return OnEnd();
    return Fail("Unexpected signal type '" + signal + "' (expected \"start\" or \"end\")");
  }

  void OnStart(const json& start) {
    if (state_ != State::kAwaitStart) {
      return Fail(state_ == State::kStreaming
                      ? "a stream is already in progress on this connection (second start)"
                      : "start after the end signal");
    }
    if (start.contains("confidence")) {
      if (!start["confidence"].is_boolean())
        return Fail("boolean true or false is expected for confidence option");
      confidence_ = start["confidence"].get<bool>();
    }
    std::string model_name = model_from_query_;
    if (start.contains("model")) {
      if (!start["model"].is_string()) return Fail("string is expected for model option");
      model_name = start["model"].get<std::string>();
    }
    if (!Usable()) return Fail("the server is shutting down", websocket::close_code::going_away);
    auto model = shared_->service->models().FindStreaming(model_name);
    if (!model.ok()) return Fail(model.status().message());
    if (!shared_->service->ready()) {
      CountRefusal(RefusalCause::kShuttingDown);
      return Fail("the server is not ready (shutting down?)", websocket::close_code::try_again_later);
    }
    StreamScheduler* scheduler = (*model)->streams;
    // The model's streaming defaults (the server's --stream-* flags) with the client's overrides.
    auto options = OptionsFromStart(start, **model);
    if (!options.ok()) return Fail(options.status().message());
    stream_id_ = "ws-" + std::to_string(++shared_->next_stream_number);
    if (Status s = scheduler->Start(stream_id_, *options, kWireSampleRate); !s.ok()) {
      if (s.code() == StatusCode::kResourceExhausted) {
        CountRefusal(RefusalCause::kTooManyStreams);
        return Fail("too many concurrent streams, try again later: " + s.message(),
                    websocket::close_code::try_again_later);
      }
      return Fail("cannot start the stream: " + s.message());
    }
    scheduler_ = scheduler;
    stream_live_ = true;
    state_ = State::kStreaming;
    ++shared_->streams_started;
    Send(WeNetStatusMessage("server_ready"));
  }

  void OnEnd() {
    if (state_ == State::kAwaitStart) return Fail("end signal before start");
    if (state_ == State::kEnding) return Fail("a second end signal");
    state_ = State::kEnding;
    FeedScheduler({}, /*last=*/true);
  }

  void OnAudio() {
    if (state_ == State::kAwaitStart) return Fail("Start signal is expected before binary data");
    if (state_ == State::kEnding) return Fail("audio after the end signal");
    const size_t bytes = message_.size();
    if (bytes % 2 != 0) {
      return Fail("binary frames must hold whole 16-bit little-endian samples; got " + std::to_string(bytes) +
                  " bytes (an odd count)");
    }
    if (bytes == 0) return;  // nothing to decode (a keep-alive, say)
    std::vector<float> samples(bytes / 2);
    const auto* data = static_cast<const unsigned char*>(message_.data().data());
    for (size_t i = 0; i < samples.size(); ++i) {
      const auto v = static_cast<int16_t>(static_cast<uint16_t>(data[2 * i] | (data[2 * i + 1] << 8)));
      samples[i] = static_cast<float>(v) / 32768.0f;
    }
    FeedScheduler(std::move(samples), /*last=*/false);
  }

  void FeedScheduler(std::vector<float> samples, bool last) {
    if (!Usable()) return Fail("the server is shutting down", websocket::close_code::going_away);
    const int64_t n = static_cast<int64_t>(samples.size());
    pending_samples_ += n;
    ++pending_feeds_;
    // The update comes from a scheduler thread (or from Feed itself); it is handed to this
    // connection's strand unless the connection or the server is gone by then.
    scheduler_->Feed(stream_id_, std::move(samples), last,
                     [weak = weak_from_this(), shared = shared_, executor = ws_.get_executor(), n](
                         const Status& status, StreamUpdate update) {
                       std::lock_guard<std::mutex> lock(shared->mu);
                       if (!shared->open) return;
                       net::post(executor, [weak, status, n, update = std::move(update)]() mutable {
                         if (auto self = weak.lock()) self->OnUpdate(status, std::move(update), n);
                       });
                     });
  }

  void OnUpdate(const Status& status, StreamUpdate update, int64_t samples) {
    pending_samples_ -= samples;
    --pending_feeds_;
    const auto keep_alive = std::move(paused_self_);  // reading resumes below, or the session ends
    if (state_ == State::kClosing) return;
    if (!status.ok()) {
      stream_live_ = scheduler_->IsLive(stream_id_);
      return Fail("recognition failed: " + status.message(), status.code() == StatusCode::kInternal
                                                                 ? websocket::close_code::internal_error
                                                                 : websocket::close_code::policy_error);
    }
    for (const StreamResult& r : update.results) {
      if (!r.is_final && (r.nbest.empty() || r.best().text.empty())) continue;  // WeNet: DecodedSomething()
      Send(WeNetResultMessage(r, confidence_));
    }
    if (update.stream_done) {
      stream_live_ = false;  // the scheduler has removed it
      ++shared_->streams_completed;
      Send(WeNetStatusMessage("speech_end"));
      return Close(websocket::close_code::normal);
    }
    ReadMore();
  }

  // Whether the server still lets this session call the scheduler (see Shared).
  bool Usable() const {
    std::lock_guard<std::mutex> lock(shared_->mu);
    return shared_->open;
  }

  void CloseStream() {
    if (!stream_live_) return;
    stream_live_ = false;
    // Not under shared_->mu: Close answers queued feeds at once, and their callbacks take it.
    if (Usable()) (void)scheduler_->Close(stream_id_);  // NotFound: it ended meanwhile
  }

  void Fail(const std::string& message, websocket::close_code code = websocket::close_code::policy_error) {
    if (state_ == State::kClosing) return;
    if (stream_live_) CloseStream();
    ++shared_->streams_failed;
    spdlog::debug("WebSocket {}: {}", stream_id_.empty() ? "(no stream)" : stream_id_, message);
    Send(WeNetFailedMessage(message));
    Close(code);
  }

  void Close(websocket::close_code code) {
    state_ = State::kClosing;
    close_code_ = code;
    if (!writing_) WriteNext();
  }

  void Send(std::string text) {
    if (write_failed_) return;
    outbox_bytes_ += text.size();
    outbox_.push_back(std::move(text));
    if (outbox_bytes_ > shared_->config.max_send_queue_bytes) return DropSlowReader();
    if (!writing_) WriteNext();
  }

  // The client keeps sending but does not read what it is sent: its results would pile up here
  // without bound. Its stream ends now and the socket closes (a close frame could not get through
  // either); a write still in flight fails and frees the queue.
  void DropSlowReader() {
    CountRefusal(RefusalCause::kSlowReader);
    spdlog::info("WebSocket {}: the client does not read its results ({} bytes unsent); closing",
                 stream_id_.empty() ? "(no stream)" : stream_id_, outbox_bytes_);
    write_failed_ = true;
    state_ = State::kClosing;
    if (stream_live_) {
      ++shared_->streams_abandoned;
      CloseStream();
    }
    if (!writing_) {
      outbox_.clear();
      outbox_bytes_ = 0;
    }
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(net::socket_base::shutdown_both, ec);
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

  void WriteNext() {
    if (write_failed_) return;
    if (outbox_.empty()) {
      if (close_code_ && !close_sent_) {
        close_sent_ = true;
        writing_ = true;
        ws_.async_close(websocket::close_reason(*close_code_),
                        [self = shared_from_this()](beast::error_code) { self->writing_ = false; });
      }
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(outbox_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      self->outbox_bytes_ -= self->outbox_.front().size();
      self->outbox_.pop_front();
      if (ec || self->write_failed_) {
        self->write_failed_ = true;
        self->outbox_.clear();
        self->outbox_bytes_ = 0;
        if (self->stream_live_) {
          ++self->shared_->streams_abandoned;
          self->CloseStream();
        }
        return;
      }
      self->WriteNext();
    });
  }

  websocket::stream<NextLayer> ws_;
  std::shared_ptr<Shared> shared_;
  HttpRequest request_;
  std::string model_from_query_;
  beast::flat_buffer message_;
  State state_ = State::kAwaitStart;
  StreamScheduler* scheduler_ = nullptr;
  std::string stream_id_;
  bool stream_live_ = false;     // started in the scheduler and not yet ended or closed
  bool confidence_ = false;      // the client asked for confidences (start message)
  int64_t pending_samples_ = 0;  // fed to the scheduler, not yet answered
  int pending_feeds_ = 0;
  bool reading_ = false;
  bool read_failed_ = false;
  // Set while reading is paused for backpressure (see ReadMore).
  std::shared_ptr<WebSocketSession> paused_self_;
  std::deque<std::string> outbox_;
  uint64_t outbox_bytes_ = 0;  // of outbox_
  bool writing_ = false;
  bool write_failed_ = false;
  std::optional<websocket::close_code> close_code_;
  bool close_sent_ = false;
};

}  // namespace

void WebSocketConfig::Register(OptionRegistry* r) {
  r->Add("websocket-max-message-bytes", &max_message_bytes,
         "largest WebSocket message (audio frame) accepted");
  r->Add("websocket-max-pending-samples", &max_pending_samples,
         "audio samples queued per connection before reading pauses (backpressure)");
  r->Add("websocket-max-pending-feeds", &max_pending_feeds,
         "audio frames queued per connection before reading pauses");
  r->Add("websocket-idle-timeout-s", &idle_timeout_s,
         "a WebSocket connection with no traffic for this long is closed");
  r->Add("websocket-max-send-queue-bytes", &max_send_queue_bytes,
         "results queued for a client that does not read them, above which it is disconnected");
}

Status WebSocketConfig::Validate() const {
  if (max_message_bytes < 1024) return InvalidArgument("websocket_max_message_bytes must be >= 1024");
  if (max_pending_samples < 1 || max_pending_feeds < 1) {
    return InvalidArgument("websocket_max_pending_samples and websocket_max_pending_feeds must be >= 1");
  }
  if (idle_timeout_s < 1) return InvalidArgument("websocket_idle_timeout_s must be >= 1");
  if (max_send_queue_bytes < 1024) return InvalidArgument("websocket_max_send_queue_bytes must be >= 1024");
  return Status::Ok();
}

WebSocketFrontEnd::WebSocketFrontEnd(InferenceService* service, WebSocketConfig config)
    : shared_(std::make_shared<Shared>()) {
  shared_->service = service;
  shared_->config = config;
}

WebSocketFrontEnd::~WebSocketFrontEnd() { Stop(); }

bool WebSocketFrontEnd::Accepts(const HttpRequest& request) const {
  const std::string_view path = PathOf(std::string_view(request.target().data(), request.target().size()));
  return path == "/" || path == "/ws" || path == "/ws/";
}

std::optional<HttpResponse> WebSocketFrontEnd::Refuse(const HttpRequest& request) const {
  if (shared_->service->ready()) return std::nullopt;
  CountRefusal(RefusalCause::kShuttingDown);
  return MakeErrorResponse(request, 503, "the server is shutting down; retry on another replica");
}

void WebSocketFrontEnd::Upgrade(HttpRequest&& request, beast::tcp_stream&& stream) {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!shared_->open) return;  // the connection closes with `stream`
  }
  std::make_shared<WebSocketSession<beast::tcp_stream>>(std::move(stream), shared_)->Run(std::move(request));
}

void WebSocketFrontEnd::Upgrade(HttpRequest&& request, TlsStream&& stream) {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!shared_->open) return;
  }
  std::make_shared<WebSocketSession<TlsStream>>(std::move(stream), shared_)->Run(std::move(request));
}

void WebSocketFrontEnd::Stop() {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->open = false;
}

WebSocketCounters WebSocketFrontEnd::stats() const {
  WebSocketCounters s;
  s.connections_open = shared_->connections_open;
  s.connections_total = shared_->connections_total;
  s.streams_started = shared_->streams_started;
  s.streams_completed = shared_->streams_completed;
  s.streams_failed = shared_->streams_failed;
  s.streams_abandoned = shared_->streams_abandoned;
  return s;
}

namespace {

json StatsJsonOf(const WebSocketFrontEnd::Shared& shared) {
  json j = {{"connections_open", shared.connections_open.load()},
            {"connections_total", shared.connections_total.load()},
            {"streams_started", shared.streams_started.load()},
            {"streams_completed", shared.streams_completed.load()},
            {"streams_failed", shared.streams_failed.load()},
            {"streams_abandoned", shared.streams_abandoned.load()}};
  json schedulers = json::array();
  std::set<const StreamScheduler*> seen;
  for (ServedModel* m : shared.service->models().models()) {
    if (m->streams == nullptr || !seen.insert(m->streams).second) continue;
    const StreamScheduler::Stats s = m->streams->stats();
    schedulers.push_back({{"model", m->name},
                          {"live_streams", s.live_streams},
                          {"streams_started", s.streams_started},
                          {"streams_finished", s.streams_finished},
                          {"streams_timed_out", s.streams_timed_out},
                          {"streams_closed", s.streams_closed},
                          {"state_bytes", s.state_bytes}});
  }
  j["schedulers"] = std::move(schedulers);
  return j;
}

}  // namespace

std::string WebSocketFrontEnd::StatsJson() const { return StatsJsonOf(*shared_).dump(); }

HttpHandler WebSocketFrontEnd::PageHandler() {
  return [shared = shared_](HttpRequest&& request, Responder respond) {
    const std::string_view path = PathOf(std::string_view(request.target().data(), request.target().size()));
    if (path == "/" || path == "/index.html") {
      if (request.method() != http::verb::get)
        return respond(MakeErrorResponse(request, 405, "Method Not Allowed"));
      return respond(MakeResponse(request, 200, std::string(kWebPageHtml), "text/html; charset=utf-8"));
    }
    if (path == "/ws/stats" && request.method() == http::verb::get) {
      return respond(MakeResponse(request, 200, StatsJsonOf(*shared).dump()));
    }
    respond(MakeErrorResponse(request, 404, "Not Found"));
  };
}

}  // namespace u2::server
