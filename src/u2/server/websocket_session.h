// Streaming recognition over WebSocket on the HTTP port, speaking WeNet runtime's websocket
// protocol (runtime/core/websocket), and the web page at "/" that uses it.
//
// One connection carries one stream (docs/websocket.md):
//   client: {"signal":"start","nbest":1,"continuous_decoding":false}   (text)
//   server: {"status":"ok","type":"server_ready"}
//   client: binary frames of 16-bit little-endian PCM at the model's rate (16 kHz), any size
//   server: {"status":"ok","type":"partial_result","nbest":"[{\"sentence\":\"...\"}]"}
//   server: {"status":"ok","type":"final_result","nbest":"[{\"sentence\":..,\"word_pieces\":[..]}]"}
//           (at every endpoint with continuous decoding, and at the end)
//   client: {"signal":"end"}
//   server: final_result, then {"status":"ok","type":"speech_end"}, then closes the connection
// Anything unexpected gets {"status":"failed","message":"..."} and the connection is closed.
// As in WeNet, "nbest" is a string holding JSON, not a JSON array.
//
// The audio goes to the StreamScheduler of a served streaming model (ModelRepository::FindStreaming), so
// WebSocket streams are batched with every other stream of that model.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "u2/server/http_server.h"
#include "u2/server/inference.h"
#include "u2/server/metrics.h"
#include "u2/util/option_registry.h"

namespace u2::server {

struct WebSocketConfig {
  // Largest message accepted (binary audio or text); a larger one is refused and the connection
  // closed. 1 MiB is 32 s of 16 kHz audio in one frame.
  uint64_t max_message_bytes = 1 << 20;
  // Audio (in samples) sent to the scheduler and not yet decoded, per connection, above which the
  // server stops reading that connection until decoding catches up (TCP backpressure).
  int64_t max_pending_samples = 30 * 16000;
  // The same for the number of frames waiting (a client sending many tiny frames).
  int max_pending_feeds = 1024;
  // A connection with no traffic for this long (pings count) is closed.
  int idle_timeout_s = 120;
  // Results written and not yet taken by the client, per connection, above which the client is
  // taken for one that does not read: its stream is dropped and the connection closed.
  uint64_t max_send_queue_bytes = 1 << 20;

  void Register(OptionRegistry* r);
  Status Validate() const;
};

// The WebSocket front end. Takes over upgrade requests to "/ws" and "/" from the HTTP server, and
// serves the web page ("/") and its counters ("/ws/stats").
class WebSocketFrontEnd : public ConnectionUpgrader {
 public:
  // `service` must outlive the HTTP server that uses this front end.
  WebSocketFrontEnd(InferenceService* service, WebSocketConfig config = {});
  ~WebSocketFrontEnd() override;

  bool Accepts(const HttpRequest& request) const override;
  // 503 + Retry-After while the server drains (no new streams).
  std::optional<HttpResponse> Refuse(const HttpRequest& request) const override;
  void Upgrade(HttpRequest&& request, boost::beast::tcp_stream&& stream) override;
  void Upgrade(HttpRequest&& request, TlsStream&& stream) override;
  void Stop() override;

  // GET / (and /index.html): the web page; GET /ws/stats: the counters and the schedulers'
  // stream counters as JSON; anything else 404.
  HttpHandler PageHandler();

  WebSocketCounters stats() const;
  std::string StatsJson() const;

  // Shared with the sessions (which may outlive Stop() inside the dying io_context): whether
  // they may still post work to their connections and call into the scheduler.
  struct Shared {
    std::mutex mu;
    bool open = true;
    InferenceService* service = nullptr;
    WebSocketConfig config;
    std::atomic<int64_t> connections_open{0};
    std::atomic<uint64_t> connections_total{0}, streams_started{0}, streams_completed{0}, streams_failed{0},
        streams_abandoned{0}, next_stream_number{0};
  };

 private:
  std::shared_ptr<Shared> shared_;
};

// The web page (src/u2/server/web/index.html, embedded at build time).
std::string_view WebPageHtml();

}  // namespace u2::server
