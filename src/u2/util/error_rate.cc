#include "u2/util/error_rate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace u2 {
namespace {

bool IsAsciiSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Decodes UTF-8 into code points. A malformed or truncated sequence yields one unit per invalid
// byte, 0x110000 + byte (outside Unicode, so it never equals a real character).
std::vector<uint32_t> DecodeUtf8(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      len = 1, cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Reject overlong forms and surrogates so each string has one decoding.
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0x110000u + c);
      i += 1;
    }
  }
  return out;
}

// Minimum edit distance with its split into S/D/I. Among alignments of equal cost, prefers
// substitutions, then deletions, then insertions (deterministic). O(|ref|*|hyp|) time, O(|hyp|) memory.
template <typename T>
ErrorCounts Align(const std::vector<T>& ref, const std::vector<T>& hyp) {
  struct Cell {
    int64_t cost = 0, s = 0, d = 0, i = 0;
  };
  std::vector<Cell> prev(hyp.size() + 1), cur(hyp.size() + 1);
  for (size_t j = 0; j <= hyp.size(); ++j) prev[j] = {static_cast<int64_t>(j), 0, 0, static_cast<int64_t>(j)};
  for (size_t r = 1; r <= ref.size(); ++r) {
    cur[0] = {static_cast<int64_t>(r), 0, static_cast<int64_t>(r), 0};
    for (size_t j = 1; j <= hyp.size(); ++j) {
      Cell best = prev[j - 1];
      if (!(ref[r - 1] == hyp[j - 1])) ++best.cost, ++best.s;
      Cell del = prev[j];
      ++del.cost, ++del.d;
      if (del.cost < best.cost) best = del;
      Cell ins = cur[j - 1];
      ++ins.cost, ++ins.i;
      if (ins.cost < best.cost) best = ins;
      cur[j] = best;
    }
    std::swap(prev, cur);
  }
  const Cell& end = prev[hyp.size()];
  ErrorCounts counts;
  counts.substitutions = end.s;
  counts.deletions = end.d;
  counts.insertions = end.i;
  counts.reference_length = static_cast<int64_t>(ref.size());
  return counts;
}

std::vector<uint32_t> NonSpaceCodePoints(std::string_view s) {
  std::vector<uint32_t> cps = DecodeUtf8(s);
  std::erase_if(cps, [](uint32_t c) { return c < 0x80 && IsAsciiSpace(static_cast<unsigned char>(c)); });
  return cps;
}

std::vector<std::string_view> SplitWords(std::string_view s) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsAsciiSpace(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !IsAsciiSpace(s[j])) ++j;
    if (j > i) words.push_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

}  // namespace

double ErrorCounts::Rate() const {
  if (reference_length == 0) return errors() == 0 ? 0.0 : INFINITY;
  return static_cast<double>(errors()) / static_cast<double>(reference_length);
}

ErrorCounts& ErrorCounts::operator+=(const ErrorCounts& other) {
  substitutions += other.substitutions;
  deletions += other.deletions;
  insertions += other.insertions;
  reference_length += other.reference_length;
  return *this;
}

ErrorCounts CharacterErrors(std::string_view ref, std::string_view hyp) {
  return Align(NonSpaceCodePoints(ref), NonSpaceCodePoints(hyp));
}

ErrorCounts WordErrors(std::string_view ref, std::string_view hyp) {
  return Align(SplitWords(ref), SplitWords(hyp));
}

bool IsSpaceSeparatedLanguage(std::string_view text) {
  const std::vector<uint32_t> cps = NonSpaceCodePoints(text);
  if (cps.empty()) return false;
  const auto ascii_alnum = std::count_if(cps.begin(), cps.end(), [](uint32_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  });
  return 2 * ascii_alnum >= static_cast<int64_t>(cps.size());
}

}  // namespace u2
