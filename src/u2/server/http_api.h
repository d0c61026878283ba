// The KServe v2 / Triton HTTP/REST API on top of InferenceService: health, metadata, config,
// statistics, repository index and inference (JSON tensors and the binary tensor extension,
// gzip/deflate request bodies, and gzip/deflate responses when the client's Accept-Encoding
// asks for them); and the metrics port's GET /metrics.
#pragma once

#include <functional>

#include "u2/server/http_server.h"
#include "u2/server/inference.h"
#include "u2/server/metrics.h"

namespace u2::server {

// The handler of the /v2 routes.
HttpHandler MakeRestHandler(InferenceService* service);
// The handler of the metrics port (GET /metrics); `websocket` (optional) reads the WebSocket
// front end's counters.
HttpHandler MakeMetricsHandler(const ModelRepository* models, std::function<WebSocketCounters()> websocket);

// Maps a Status to Triton's HTTP status code.
int HttpStatusFor(const Status& status);

}  // namespace u2::server
