// KServe v2's HTTP/REST inference body: a JSON header, optionally followed by the binary
// tensor extension's raw bytes (Inference-Header-Content-Length says where the JSON ends).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "u2/server/kserve_types.h"
#include "u2/util/status.h"

namespace u2::server {

// Which outputs the client asked for, and which of them in binary form.
struct HttpOutputChoice {
  std::vector<std::pair<std::string, bool>> outputs;  // requested name, binary?
  bool binary_default = false;                        // binary_data_output
  bool BinaryFor(const std::string& name) const;
};

// Parses an HTTP inference body (JSON header + optional binary tail, already decompressed) into
// `request` (whose tensors may point into `body`, which must outlive it). header_length < 0:
// the whole body is JSON.
Status ParseHttpInferRequest(const std::string& body, int64_t header_length, InferRequest* request,
                             HttpOutputChoice* choice);

}  // namespace u2::server
