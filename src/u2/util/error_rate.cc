#include "u2/util/error_rate.h"

#include <algorithm>
#include <utility>

namespace u2 {
namespace {

struct CodePointRange {
  uint32_t first, last;  // inclusive
};

#include "u2/util/unicode_tables.inc"

template <size_t N>
bool InRanges(const CodePointRange (&ranges)[N], uint32_t cp) {
  const auto it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                   [](uint32_t c, const CodePointRange& r) { return c < r.first; });
  return it != std::begin(ranges) && cp <= std::prev(it)->last;
}

// One decoded character and the bytes it came from.
struct CodePoint {
  uint32_t value;  // 0x110000 + byte for a byte that is not UTF-8 (never equal to a character)
  size_t offset;
  size_t length;
};

constexpr uint32_t kNotUtf8 = 0x110000;

// Decodes UTF-8. A malformed or truncated sequence yields one unit per invalid byte; overlong
// forms and surrogates are invalid, so each string has one decoding.
std::vector<CodePoint> DecodeUtf8(std::string_view s) {
  std::vector<CodePoint> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t len = 0;
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
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out.push_back({cp, i, len});
      i += len;
    } else {
      out.push_back({kNotUtf8 + c, i, 1});
      i += 1;
    }
  }
  return out;
}

// compute-wer.py's own list of separators: space, tab, CR, LF (not VT or FF).
bool IsScriptSpace(uint32_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// compute-wer.py's punctuation list, skipped where a --char=1 unit would start.
bool IsScriptPunctuation(uint32_t c) {
  static constexpr uint32_t kPunctuation[] = {
      '!',    ',',    '?',    0x3001, 0x3002, 0xFF01, 0xFF0C, 0xFF1B, 0xFF1F,
      0xFF1A, 0x300C, 0x300D, 0xFE30, 0x300E, 0x300F, 0x300A, 0x300B,  // 、。！，；？：「」︰『』《》
  };
  return std::find(std::begin(kPunctuation), std::end(kPunctuation), c) != std::end(kPunctuation);
}

// Python's str.isspace(), where str.split() splits.
bool IsPythonWhitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// compute-wer.py's per-unit normalization: upper-case (ASCII only, see the header), delete every
// "<...>" (an unclosed '<' deletes to the end), drop the unit if nothing is left.
void AddNormalized(std::string_view unit, std::vector<std::string>& out) {
  std::string x;
  x.reserve(unit.size());
  for (size_t i = 0; i < unit.size(); ++i) {
    if (unit[i] == '<') {
      const size_t close = unit.find('>', i);
      if (close == std::string_view::npos) break;
      i = close;
      continue;
    }
    const char c = unit[i];
    x.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  if (!x.empty()) out.push_back(std::move(x));
}

}  // namespace

ErrorCounts AlignUnits(const std::vector<std::string>& ref, const std::vector<std::string>& hyp) {
  // Each cell keeps the counts of the path compute-wer.py's traceback would follow through it:
  // the counts of the predecessor it chose plus its own step.
  struct Cell {
    int64_t cost = 0, s = 0, d = 0, i = 0;
  };
  std::vector<Cell> prev(hyp.size() + 1), cur(hyp.size() + 1);
  for (size_t j = 0; j <= hyp.size(); ++j) prev[j] = {static_cast<int64_t>(j), 0, 0, static_cast<int64_t>(j)};
  for (size_t r = 1; r <= ref.size(); ++r) {
    cur[0] = {static_cast<int64_t>(r), 0, static_cast<int64_t>(r), 0};
    for (size_t j = 1; j <= hyp.size(); ++j) {
      // The script's order: deletion, then insertion, then the diagonal, each only if cheaper.
      Cell best = prev[j];
      ++best.cost, ++best.d;
      if (cur[j - 1].cost + 1 < best.cost) {
        best = cur[j - 1];
        ++best.cost, ++best.i;
      }
      const bool match = ref[r - 1] == hyp[j - 1];
      if (prev[j - 1].cost + (match ? 0 : 1) < best.cost) {
        best = prev[j - 1];
        if (!match) ++best.cost, ++best.s;
      }
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

double ErrorCounts::Rate() const {
  if (reference_length == 0) return 0.0;
  return static_cast<double>(errors()) / static_cast<double>(reference_length);
}

double ErrorCounts::Percent() const {
  if (reference_length == 0) return 0.0;
  return static_cast<double>(errors()) * 100.0 / static_cast<double>(reference_length);
}

ErrorCounts& ErrorCounts::operator+=(const ErrorCounts& other) {
  substitutions += other.substitutions;
  deletions += other.deletions;
  insertions += other.insertions;
  reference_length += other.reference_length;
  return *this;
}

std::vector<std::string> ScoringUnits(std::string_view text, ScoringUnit unit) {
  const std::vector<CodePoint> cps = DecodeUtf8(text);
  auto bytes = [&](size_t from, size_t to) {  // the text of code points [from, to)
    return text.substr(cps[from].offset, cps[to - 1].offset + cps[to - 1].length - cps[from].offset);
  };
  // The end of the --char=1 unit that starts at code point `from`: it runs on over the ASCII
  // characters after it up to a script space, a non-ASCII character or `stop`; a '>' that stopped
  // it is part of it.
  auto ascii_run_end = [&](size_t from, uint32_t stop) {
    size_t j = from + 1;
    while (j < cps.size() && cps[j].value < 0x80 && !IsScriptSpace(cps[j].value) && cps[j].value != stop) ++j;
    if (j < cps.size() && cps[j].value == '>') ++j;
    return j;
  };
  std::vector<std::string> units;
  size_t i = 0;
  if (unit == ScoringUnit::kWord) {
    while (i < cps.size()) {
      while (i < cps.size() && IsPythonWhitespace(cps[i].value)) ++i;
      size_t j = i;
      while (j < cps.size() && !IsPythonWhitespace(cps[j].value)) ++j;
      if (j > i) AddNormalized(bytes(i, j), units);
      i = j;
    }
    return units;
  }
  while (i < cps.size()) {
    const uint32_t c = cps[i].value;
    if (IsScriptPunctuation(c) || IsScriptSpace(c) || InRanges(kSpaceSeparatorRanges, c)) {
      ++i;
      continue;
    }
    if (c < kNotUtf8 && InRanges(kLetterOtherRanges, c)) {
      AddNormalized(bytes(i, i + 1), units);
      ++i;
      continue;
    }
    if (unit == ScoringUnit::kLetter && c != '<') {
      // One unit per character. A '<' still takes the span --char=1 gives it (to its '>', or to the
      // end of the ASCII run), so a tag is removed whole wherever it stands.
      AddNormalized(bytes(i, i + 1), units);
      ++i;
      continue;
    }
    const size_t j = ascii_run_end(i, c == '<' ? '>' : ' ');
    AddNormalized(bytes(i, j), units);
    i = j;
  }
  return units;
}

ErrorCounts CharacterErrors(std::string_view ref, std::string_view hyp) {
  return AlignUnits(ScoringUnits(ref, ScoringUnit::kLetter), ScoringUnits(hyp, ScoringUnit::kLetter));
}

ErrorCounts WenetCharErrors(std::string_view ref, std::string_view hyp) {
  return AlignUnits(ScoringUnits(ref, ScoringUnit::kCharacter), ScoringUnits(hyp, ScoringUnit::kCharacter));
}

ErrorCounts WordErrors(std::string_view ref, std::string_view hyp) {
  return AlignUnits(ScoringUnits(ref, ScoringUnit::kWord), ScoringUnits(hyp, ScoringUnit::kWord));
}

bool IsSpaceSeparatedLanguage(std::string_view text) {
  int64_t non_space = 0, ascii_alnum = 0;
  for (const CodePoint& cp : DecodeUtf8(text)) {
    const uint32_t c = cp.value;
    if (c == ' ' || (c >= '\t' && c <= '\r')) continue;
    ++non_space;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ++ascii_alnum;
  }
  return non_space > 0 && 2 * ascii_alnum >= non_space;
}

}  // namespace u2
