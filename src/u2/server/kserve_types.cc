#include "u2/server/kserve_types.h"

namespace u2::server {

std::string OutputTensor::RawBytes() const {
  std::string out;
  size_t total = 0;
  for (const auto& s : strings) total += 4 + s.size();
  out.reserve(total);
  for (const auto& s : strings) {
    const uint32_t n = static_cast<uint32_t>(s.size());
    const char len[4] = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                         static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
    out.append(len, 4);
    out.append(s);
  }
  return out;
}

}  // namespace u2::server
