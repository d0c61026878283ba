// multipart/form-data bodies of the OpenAI transcription endpoint: the Content-Type's boundary
// (MultipartBoundary) and the body's parts (ParseMultipart).
//
// Input: the Content-Type header up to the first '\n', then the body. A Content-Type without a
// usable boundary still gets its body parsed, with the boundary "B".
#include <string>

#include "fuzz_support.h"
#include "u2/server/multipart.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = u2::fuzz::AsText(data, size);
  const size_t eol = input.find('\n');
  const std::string_view content_type = input.substr(0, eol);
  // The parts are views into the body: keep it in its own allocation so ASan sees any overread.
  const std::string body(eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1));

  auto boundary = u2::server::MultipartBoundary(content_type);
  if (boundary.ok()) U2_FUZZ_CHECK(!boundary->empty() && boundary->size() <= 200);
  auto parts = u2::server::ParseMultipart(body, boundary.ok() ? *boundary : std::string("B"));
  if (!parts.ok()) return 0;
  U2_FUZZ_CHECK(parts->size() <= 256);
  for (const auto& p : *parts) {
    U2_FUZZ_CHECK(!p.name.empty());
    U2_FUZZ_CHECK(p.data.empty() || (p.data.data() >= body.data() &&
                                     p.data.data() + p.data.size() <= body.data() + body.size()));
  }
  return 0;
}
