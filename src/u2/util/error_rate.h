// Character and word error rates by Levenshtein alignment, for evaluating transcripts.
#pragma once

#include <cstdint>
#include <string_view>

namespace u2 {

struct ErrorCounts {
  int64_t substitutions = 0;
  int64_t deletions = 0;   // reference units missing from the hypothesis
  int64_t insertions = 0;  // hypothesis units not in the reference
  int64_t reference_length = 0;

  int64_t errors() const { return substitutions + deletions + insertions; }
  // errors / reference_length. With an empty reference: 0 if there are no errors, else +infinity.
  double Rate() const;
  ErrorCounts& operator+=(const ErrorCounts& other);
};

// Errors over Unicode code points (UTF-8 decoded; each invalid byte counts as one unit).
// Whitespace is ignored, as WeNet's compute-cer.py does for Chinese. Unlike that script, ASCII
// words are NOT kept whole and punctuation is not removed: every code point is one unit.
ErrorCounts CharacterErrors(std::string_view ref, std::string_view hyp);
// Errors over whitespace-separated words (ASCII whitespace), compared byte for byte.
ErrorCounts WordErrors(std::string_view ref, std::string_view hyp);
// Heuristic for "report WER too": at least half of the non-space code points are ASCII letters
// or digits (English and the like, not Chinese/Japanese). False for empty text.
bool IsSpaceSeparatedLanguage(std::string_view text);

}  // namespace u2
