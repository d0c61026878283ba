// Prometheus text exposition (the metrics port's GET /metrics): Triton's nv_inference_* families
// per served model, u2serve's own u2_* families (audio seconds, real-time factor, batch sizes,
// streams) and the WebSocket front end's connection and stream counters.
#pragma once

#include <cstdint>
#include <string>

#include "u2/server/model_repository.h"

namespace u2::server {

// What the WebSocket front end counts (websocket_session.h).
struct WebSocketCounters {
  int64_t connections_open = 0;  // WebSocket connections alive now
  uint64_t connections_total = 0;
  uint64_t streams_started = 0;    // start signals accepted
  uint64_t streams_completed = 0;  // ended with speech_end
  uint64_t streams_failed = 0;     // ended with a "failed" message
  uint64_t streams_abandoned = 0;  // the client went away mid-stream (stream closed at once)
};

// `websocket`: null when the server has no WebSocket front end.
std::string PrometheusText(const ModelRepository& models, const WebSocketCounters* websocket);

}  // namespace u2::server
