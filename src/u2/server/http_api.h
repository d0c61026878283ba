// The KServe v2 / Triton HTTP/REST API on top of InferenceService: health, metadata, config,
// statistics, repository index and inference (JSON tensors and the binary tensor extension,
// gzip/deflate request bodies, and gzip/deflate responses when the client's Accept-Encoding
// asks for them).
#pragma once

#include <string>
#include <string_view>

#include "u2/server/http_server.h"
#include "u2/server/inference.h"

namespace u2::server {

// Returns the handler for the REST API port.
HttpHandler MakeRestHandler(InferenceService* service);
// Returns the handler for the metrics port (GET /metrics).
HttpHandler MakeMetricsHandler(InferenceService* service);

// Parses an HTTP inference body (JSON header + optional binary tail, already decompressed) into
// `request` (whose tensors may point into `body`, which must outlive it). Also reports which
// outputs the client wants in binary form. Exposed for tests.
struct HttpOutputChoice {
  std::vector<std::pair<std::string, bool>> outputs;  // requested name, binary?
  bool binary_default = false;                        // binary_data_output
};
Status ParseHttpInferRequest(const std::string& body, int64_t header_length, InferRequest* request,
                             HttpOutputChoice* choice);

// Inflates a gzip or zlib ("deflate") body. InvalidArgument if it is not valid.
StatusOr<std::string> Inflate(const std::string& compressed, uint64_t max_bytes);
// Compresses `data` as gzip (true) or zlib "deflate" (false).
StatusOr<std::string> Deflate(std::string_view data, bool gzip);
// Compresses the response body in place (setting Content-Encoding) when `accept_encoding` (the
// request's Accept-Encoding) allows gzip (preferred) or deflate; otherwise leaves it alone.
void CompressIfAccepted(std::string_view accept_encoding, HttpResponse* res);

}  // namespace u2::server
