// gzip / deflate request bodies (Inflate, as the HTTP front end runs it on Content-Encoding), the
// way back (Deflate must round-trip any bytes), and Accept-Encoding parsing on responses
// (CompressIfAccepted must leave a body a client can inflate).
//
// Input: 1 byte choosing the decompression limit and gzip vs zlib, then the bytes.
#include <string>

#include "fuzz_support.h"
#include "u2/server/http_compression.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The server's own limit (2 GiB) and small ones, so the limit's edge is reached too.
  static constexpr uint64_t kLimits[] = {uint64_t{1} << 31, 0, 1, 100, 65536, 65537, 1 << 20, 1 << 24};
  const uint64_t limit = kLimits[data[0] % 8];
  const bool gzip = (data[0] >> 3) & 1;
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  auto inflated = u2::server::Inflate(bytes, limit);
  if (inflated.ok()) U2_FUZZ_CHECK(inflated->size() <= limit);

  auto packed = u2::server::Deflate(bytes, gzip);
  U2_FUZZ_CHECK(packed.ok());
  auto back = u2::server::Inflate(*packed, uint64_t{1} << 31);
  U2_FUZZ_CHECK(back.ok() && *back == bytes);

  // The bytes as an Accept-Encoding header on a response worth compressing.
  if (bytes.size() <= 256) {
    u2::server::HttpResponse res;
    res.body() = std::string(200, 'a') + bytes;
    const std::string original = res.body();
    u2::server::CompressIfAccepted(bytes, &res);
    if (res.find(boost::beast::http::field::content_encoding) != res.end()) {
      auto unpacked = u2::server::Inflate(res.body(), uint64_t{1} << 31);
      U2_FUZZ_CHECK(unpacked.ok() && *unpacked == original);
    } else {
      U2_FUZZ_CHECK(res.body() == original);
    }
  }
  return 0;
}
