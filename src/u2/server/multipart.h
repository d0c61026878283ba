// multipart/form-data (RFC 7578) request bodies, as OpenAI's /v1/audio/transcriptions takes them:
// text fields and one uploaded file. The parser works on the whole body (the HTTP server has
// already enforced --max-request-bytes) and never copies a part: each part is a view into it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "u2/util/status.h"

namespace u2::server {

struct FormPart {
  std::string name;          // Content-Disposition name
  std::string filename;      // Content-Disposition filename (file parts)
  std::string content_type;  // the part's Content-Type, if any
  std::string_view data;     // the part's bytes, inside the body
};

// The boundary of a "multipart/form-data; boundary=..." Content-Type (quotes removed).
// InvalidArgument if the type is not multipart/form-data or has no usable boundary.
StatusOr<std::string> MultipartBoundary(std::string_view content_type);

// Splits `body` into its parts. InvalidArgument for a missing first delimiter, a part without a
// header end or Content-Disposition name, or a body that ends before the closing delimiter.
StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view body, const std::string& boundary);

}  // namespace u2::server
