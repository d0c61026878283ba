// HTTP body compression: gzip / deflate request bodies (Content-Encoding) and responses
// compressed when the client's Accept-Encoding allows it (Triton's HTTP front end does both).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "u2/server/http_server.h"
#include "u2/util/status.h"

namespace u2::server {

// Inflates a gzip or zlib ("deflate") body. InvalidArgument if it is not valid or would exceed
// max_bytes.
StatusOr<std::string> Inflate(const std::string& compressed, uint64_t max_bytes);
// Compresses `data` as gzip (true) or zlib "deflate" (false).
StatusOr<std::string> Deflate(std::string_view data, bool gzip);
// Compresses the response body in place (setting Content-Encoding) when `accept_encoding` (the
// request's Accept-Encoding) allows gzip (preferred) or deflate; otherwise leaves it alone.
void CompressIfAccepted(std::string_view accept_encoding, HttpResponse* res);

}  // namespace u2::server
