// KServe v2 HTTP inference bodies: the JSON header and the binary tensor extension's tail
// (ParseHttpInferRequest), then the checks InferenceService::Infer runs on the parsed request
// (fuzz_support.h: CheckOfflineRequest).
//
// Input: 2 bytes of Inference-Header-Content-Length (little-endian; 0xffff: no header, the whole
// body is JSON), then the body.
#include <string>

#include "fuzz_support.h"
#include "u2/server/kserve_http.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const unsigned hl = data[0] | (data[1] << 8);
  // The HTTP handler refuses a length of 0 before parsing; every other value reaches the parser.
  if (hl == 0) return 0;
  const int64_t header_length = hl == 0xffff ? -1 : static_cast<int64_t>(hl);
  const std::string body(reinterpret_cast<const char*>(data + 2), size - 2);
  u2::server::InferRequest request;
  u2::server::HttpOutputChoice choice;
  if (!u2::server::ParseHttpInferRequest(body, header_length, &request, &choice).ok()) return 0;
  // A tensor borrowed from the body (binary_data_size) lies inside it, after the JSON header.
  const char* begin = body.data();
  const char* end = begin + body.size();
  const char* tail = begin + (header_length < 0 ? body.size() : static_cast<size_t>(header_length));
  for (const auto& t : request.inputs) {
    const std::string_view d = t.data();
    if (d.empty() || d.data() < begin || d.data() >= end) continue;  // owned, or empty
    U2_FUZZ_CHECK(d.data() >= tail && d.data() + d.size() <= end);
  }
  for (const auto& [name, binary] : choice.outputs) {
    (void)choice.BinaryFor(name);
    request.requested_outputs.push_back(name);
  }
  u2::fuzz::CheckOfflineRequest(request);
  return 0;
}
