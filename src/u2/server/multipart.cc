#include "u2/server/multipart.h"

#include <algorithm>
#include <cctype>

namespace u2::server {
namespace {

constexpr size_t kMaxPartHeaderBytes = 16 * 1024;
constexpr size_t kMaxParts = 256;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The value of `key` in a header's "; key=value" parameters (quoted or not), or "".
std::string HeaderParameter(std::string_view header, std::string_view key) {
  size_t i = header.find(';');
  while (i != std::string_view::npos) {
    ++i;
    const size_t eq = header.find('=', i);
    if (eq == std::string_view::npos) return "";
    const std::string name = Lower(Trim(header.substr(i, eq - i)));
    size_t j = eq + 1;
    while (j < header.size() && header[j] == ' ') ++j;
    std::string value;
    if (j < header.size() && header[j] == '"') {
      for (++j; j < header.size() && header[j] != '"'; ++j) {
        if (header[j] == '\\' && j + 1 < header.size()) ++j;
        value.push_back(header[j]);
      }
      i = header.find(';', j);
    } else {
      i = header.find(';', j);
      value =
          std::string(Trim(header.substr(j, i == std::string_view::npos ? std::string_view::npos : i - j)));
    }
    if (name == key) return value;
  }
  return "";
}

}  // namespace

StatusOr<std::string> MultipartBoundary(std::string_view content_type) {
  const size_t semi = content_type.find(';');
  if (Lower(Trim(content_type.substr(0, semi))) != "multipart/form-data") {
    return InvalidArgument("expected Content-Type multipart/form-data, got '" + std::string(content_type) +
                           "'");
  }
  std::string boundary = HeaderParameter(content_type, "boundary");
  if (boundary.empty()) return InvalidArgument("the multipart/form-data Content-Type has no boundary");
  if (boundary.size() > 200) return InvalidArgument("the multipart boundary is longer than 200 characters");
  return boundary;
}

StatusOr<std::vector<FormPart>> ParseMultipart(std::string_view body, const std::string& boundary) {
  const std::string delimiter = "--" + boundary;
  size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos)
    return InvalidArgument("malformed multipart body: no boundary delimiter");
  std::vector<FormPart> parts;
  pos += delimiter.size();
  while (true) {
    if (body.substr(pos, 2) == "--") return parts;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") return InvalidArgument("malformed multipart body after a delimiter");
    pos += 2;
    const size_t header_end = body.find("\r\n\r\n", pos);
    if (header_end == std::string_view::npos || header_end - pos > kMaxPartHeaderBytes) {
      return InvalidArgument("malformed multipart body: a part's headers do not end");
    }
    FormPart part;
    std::string_view headers = body.substr(pos, header_end - pos);
    while (!headers.empty()) {
      const size_t eol = headers.find("\r\n");
      const std::string_view line = headers.substr(0, eol);
      headers = eol == std::string_view::npos ? std::string_view() : headers.substr(eol + 2);
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string field = Lower(Trim(line.substr(0, colon)));
      const std::string_view value = Trim(line.substr(colon + 1));
      if (field == "content-disposition") {
        part.name = HeaderParameter(value, "name");
        part.filename = HeaderParameter(value, "filename");
      } else if (field == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (part.name.empty()) return InvalidArgument("malformed multipart body: a part has no form field name");
    const size_t data_start = header_end + 4;
    // The part ends at CRLF + delimiter followed by CRLF or "--" (RFC 2046 §5.1.1); the same bytes
    // followed by anything else are data.
    const std::string end_marker = "\r\n" + delimiter;
    size_t next = body.find(end_marker, data_start);
    while (next != std::string_view::npos) {
      const std::string_view after = body.substr(next + end_marker.size(), 2);
      if (after == "\r\n" || after == "--") break;
      next = body.find(end_marker, next + 1);
    }
    if (next == std::string_view::npos) {
      return InvalidArgument("malformed multipart body: part '" + part.name +
                             "' is truncated (no closing boundary)");
    }
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(std::move(part));
    if (parts.size() > kMaxParts) return InvalidArgument("multipart body has more than 256 parts");
    pos = next + 2 + delimiter.size();
  }
}

}  // namespace u2::server
