#include "u2/decode/symbol_table.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include "u2/decode/bpe_tokenizer.h"

namespace u2 {
namespace {

constexpr std::string_view kWordMarker = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsSpace(line[i])) ++i;
    size_t j = i;
    while (j < line.size() && !IsSpace(line[j])) ++j;
    if (j > i) fields.push_back(line.substr(i, j - i));
    i = j;
  }
  return fields;
}

}  // namespace

StatusOr<SymbolTable> SymbolTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("token table " + path + ": cannot open file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return DataLoss("token table " + path + ": read error");
  return FromText(text.str(), path);
}

StatusOr<SymbolTable> SymbolTable::FromText(std::string_view text, const std::string& source) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return FromLines(lines, source);
}

StatusOr<SymbolTable> SymbolTable::FromLines(std::span<const std::string> lines, const std::string& source) {
  std::vector<std::pair<std::string, int>> entries;
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string where = "token table " + source + " line " + std::to_string(n + 1);
    const auto fields = SplitFields(lines[n]);
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return InvalidArgument(where + ": expected \"token id\", got " + std::to_string(fields.size()) +
                             " fields: '" + lines[n] + "'");
    }
    int id = -1;
    const auto [ptr, ec] = std::from_chars(fields[1].data(), fields[1].data() + fields[1].size(), id);
    if (ec != std::errc() || ptr != fields[1].data() + fields[1].size() || id < 0) {
      return InvalidArgument(where + ": id '" + std::string(fields[1]) + "' is not a non-negative integer");
    }
    entries.emplace_back(std::string(fields[0]), id);
  }
  if (entries.empty()) return InvalidArgument("token table " + source + ": no tokens");

  SymbolTable table;
  const int size = static_cast<int>(entries.size());
  table.tokens_.assign(size, std::string());
  std::vector<bool> seen(size, false);
  for (const auto& [token, id] : entries) {
    if (id >= size) {
      return InvalidArgument("token table " + source + ": id " + std::to_string(id) + " of '" + token +
                             "' is out of range for " + std::to_string(size) + " tokens (ids must be 0.." +
                             std::to_string(size - 1) + ")");
    }
    if (seen[id]) {
      return InvalidArgument("token table " + source + ": id " + std::to_string(id) + " appears twice ('" +
                             table.tokens_[id] + "' and '" + token + "')");
    }
    if (!table.ids_.emplace(token, id).second) {
      return InvalidArgument("token table " + source + ": token '" + token + "' appears twice (ids " +
                             std::to_string(table.ids_.at(token)) + " and " + std::to_string(id) + ")");
    }
    seen[id] = true;
    table.tokens_[id] = token;
  }
  // n entries with distinct ids in [0, n) cover every id, so no gaps remain here.
  table.blank_id_ = table.Id("<blank>").value_or(0);
  table.unk_id_ = table.Id("<unk>").value_or(-1);
  table.sos_eos_id_ = table.Id("<sos/eos>").value_or(size - 1);
  bool has_upper = false, has_prefixed = false;
  for (const std::string& t : table.tokens_) {
    table.longest_unit_ = std::max(table.longest_unit_, t.size());
    for (char c : t) has_upper |= c >= 'A' && c <= 'Z';
    has_prefixed |= t.size() > kWordMarker.size() && t.compare(0, kWordMarker.size(), kWordMarker) == 0;
  }
  table.lower_case_ = !has_upper;
  // BPE units have "▁"-prefixed pieces and often a bare "▁" piece too (before a character no
  // merged piece covers): prefixed pieces decide. Character units have only the bare marker.
  if (has_prefixed) {
    table.word_marking_ = WordMarking::kMarkerPrefix;
  } else if (table.ids_.count(std::string(kWordMarker))) {
    table.word_marking_ = WordMarking::kMarkerUnit;
  }
  return table;
}

const std::string& SymbolTable::Token(int id) const {
  static const std::string kNone;
  return id >= 0 && id < size() ? tokens_[id] : kNone;
}

std::optional<int> SymbolTable::Id(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

Status SymbolTable::SetSosEosId(int id) {
  if (id < 0 || id >= size()) {
    return InvalidArgument("sos/eos id " + std::to_string(id) + " is outside the token table of size " +
                           std::to_string(size()));
  }
  sos_eos_id_ = id;
  return Status::Ok();
}

std::string SymbolTable::Detokenize(std::span<const int> ids) const {
  std::string joined;
  for (int id : ids) {
    if (id < 0 || id >= size() || id == blank_id_ || id == sos_eos_id_) continue;
    joined += tokens_[id];
  }
  std::string text;
  text.reserve(joined.size());
  for (size_t i = 0; i < joined.size();) {
    if (joined.compare(i, kWordMarker.size(), kWordMarker) == 0) {
      text += ' ';
      i += kWordMarker.size();
    } else {
      text += joined[i++];
    }
  }
  const size_t first = text.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  const size_t last = text.find_last_not_of(' ');
  return text.substr(first, last - first + 1);
}

namespace {

// Length in bytes of the UTF-8 character starting with byte `c` (1 for a stray continuation byte).
size_t Utf8Length(unsigned char c) {
  if (c >= 0xF0) return 4;
  if (c >= 0xE0) return 3;
  if (c >= 0xC0) return 2;
  return 1;
}

}  // namespace

StatusOr<std::vector<int>> SymbolTable::Tokenize(std::string_view text) const {
  if (bpe_) {
    U2_ASSIGN_OR_RETURN(const std::vector<std::string> pieces, bpe_->Pieces(text));
    if (pieces.empty()) return InvalidArgument("nothing to tokenize in '" + std::string(text) + "'");
    std::vector<int> ids;
    ids.reserve(pieces.size());
    for (const std::string& piece : pieces) {
      const auto it = ids_.find(piece);
      if (it == ids_.end() || it->second == blank_id_ || it->second == sos_eos_id_) {
        return InvalidArgument("'" + piece + "' in '" + std::string(text) +
                               "' is not in the model's units (WeNet would read it as <unk>)");
      }
      ids.push_back(it->second);
    }
    return ids;
  }
  std::string normalized(text);
  if (lower_case_) {
    for (char& c : normalized)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  const auto words = SplitFields(normalized);
  if (words.empty()) return InvalidArgument("nothing to tokenize in '" + std::string(text) + "'");
  std::vector<int> ids;
  // Spells `s` with the longest matching units, never cutting a UTF-8 character.
  auto spell = [&](std::string_view s) -> Status {
    size_t i = 0;
    while (i < s.size()) {
      size_t len = std::min(longest_unit_, s.size() - i);
      int found = -1;
      for (; len > 0; --len) {
        if (i + len < s.size() && (static_cast<unsigned char>(s[i + len]) & 0xC0) == 0x80) continue;
        const auto it = ids_.find(std::string(s.substr(i, len)));
        if (it != ids_.end() && it->second != blank_id_ && it->second != sos_eos_id_) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        const std::string ch(
            s.substr(i, std::min(Utf8Length(static_cast<unsigned char>(s[i])), s.size() - i)));
        return InvalidArgument("'" + ch + "' in '" + std::string(text) + "' is not in the model's units");
      }
      ids.push_back(found);
      i += len;
    }
    return Status::Ok();
  };
  for (size_t w = 0; w < words.size(); ++w) {
    switch (word_marking_) {
      case WordMarking::kMarkerUnit:
        if (w > 0) ids.push_back(ids_.at(std::string(kWordMarker)));
        U2_RETURN_IF_ERROR(spell(words[w]));
        break;
      case WordMarking::kMarkerPrefix:
        U2_RETURN_IF_ERROR(spell(std::string(kWordMarker) + std::string(words[w])));
        break;
      case WordMarking::kNone:
        U2_RETURN_IF_ERROR(spell(words[w]));
        break;
    }
  }
  return ids;
}

}  // namespace u2
