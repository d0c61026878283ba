#include "u2/server/http_compression.h"

#include <zlib.h>

namespace u2::server {

namespace http = boost::beast::http;

StatusOr<std::string> Deflate(std::string_view data, bool gzip) {
  z_stream zs{};
  // 15 + 16: a gzip wrapper; 15: zlib ("deflate" in HTTP).
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return Internal("zlib deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (ret != Z_STREAM_END) return Internal("zlib deflate failed");
  return out;
}

void CompressIfAccepted(std::string_view accept_encoding, HttpResponse* res) {
  // Accept-Encoding is a list like "gzip, deflate;q=0.5"; a coding with q=0 is refused.
  auto accepts = [&](std::string_view coding) {
    size_t pos = 0;
    while (pos < accept_encoding.size()) {
      size_t end = accept_encoding.find(',', pos);
      if (end == std::string_view::npos) end = accept_encoding.size();
      std::string_view item = accept_encoding.substr(pos, end - pos);
      pos = end + 1;
      const size_t semi = item.find(';');
      std::string_view name = item.substr(0, semi);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (name != coding) continue;
      if (semi == std::string_view::npos) return true;
      std::string_view q = item.substr(semi + 1);
      while (!q.empty() && q.front() == ' ') q.remove_prefix(1);
      return !(q.starts_with("q=0") && q.find_first_not_of("0.", 2) == std::string_view::npos);
    }
    return false;
  };
  const bool gzip = accepts("gzip");
  if (!gzip && !accepts("deflate")) return;
  if (res->body().size() < 64) return;  // not worth a header
  auto packed = Deflate(res->body(), gzip);
  if (!packed.ok()) return;  // send it uncompressed rather than fail the request
  res->body() = std::move(packed).value();
  res->set(http::field::content_encoding, gzip ? "gzip" : "deflate");
  res->prepare_payload();
}

StatusOr<std::string> Inflate(const std::string& compressed, uint64_t max_bytes) {
  z_stream zs{};
  // 15 + 32: zlib or gzip header, detected automatically.
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return Internal("zlib inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buf[1 << 16];
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    ret = inflate(&zs, Z_NO_FLUSH);
    if (ret != Z_OK && ret != Z_STREAM_END) {
      inflateEnd(&zs);
      return InvalidArgument("cannot decompress the request body (Content-Encoding): " +
                             std::string(zs.msg ? zs.msg : "corrupt or truncated data"));
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&zs);
      return InvalidArgument("decompressed request body exceeds " + std::to_string(max_bytes) + " bytes");
    }
    if (ret == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return InvalidArgument("cannot decompress the request body: truncated compressed data");
    }
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace u2::server
