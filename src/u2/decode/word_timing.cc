#include "u2/decode/word_timing.h"

#include <algorithm>

#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

constexpr std::string_view kWordMarker = "\xe2\x96\x81";  // U+2581 "▁"

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

std::vector<WordPiece> AlignWords(std::span<const int> tokens, std::span<const int> token_frames,
                                  const SymbolTable& symbols, const WordTimingConfig& config,
                                  std::span<const float> token_confidence) {
  std::vector<WordPiece> words;
  if (tokens.size() != token_frames.size()) return words;
  const bool scored = token_confidence.size() == tokens.size();
  std::vector<int> pieces_per_word;
  const int64_t shift = config.frame_shift_ms;
  const int64_t gap = config.gap_ms;
  const size_t n = tokens.size();
  bool open = false;  // the last word may take more letters
  for (size_t j = 0; j < n; ++j) {
    const int64_t t = token_frames[j];
    int64_t start = std::max<int64_t>(t * shift - gap, 0);
    if (j > 0 && (t - token_frames[j - 1]) * shift < gap) start = (token_frames[j - 1] + t) / 2 * shift;
    int64_t end = t * shift;
    if (j + 1 < n && (token_frames[j + 1] - t) * shift < gap) end = (token_frames[j + 1] + t) / 2 * shift;
    start += config.offset_ms;
    end += config.offset_ms;

    std::string piece = symbols.Token(tokens[j]);
    if (tokens[j] == symbols.blank_id() || tokens[j] == symbols.sos_eos_id() || piece.empty()) continue;
    bool starts_word = false;
    if (piece.starts_with(kWordMarker)) {
      piece.erase(0, kWordMarker.size());
      starts_word = true;
    }
    if (piece.empty()) {  // a bare word marker: the next token starts a new word
      open = false;
      continue;
    }
    // Non-ASCII pieces (e.g. Chinese characters) are words of their own, as WeNet shows them.
    const bool joins = open && !starts_word && IsAscii(piece) && IsAscii(words.back().word);
    const float confidence = scored ? token_confidence[j] : 1.0f;
    if (joins) {
      words.back().word += piece;
      words.back().end_ms = end;
      words.back().confidence += confidence;
      ++pieces_per_word.back();
    } else {
      words.push_back({piece, start, end, confidence});
      pieces_per_word.push_back(1);
    }
    open = true;
  }
  for (size_t w = 0; w < words.size(); ++w) words[w].confidence /= static_cast<float>(pieces_per_word[w]);
  return words;
}

}  // namespace u2
