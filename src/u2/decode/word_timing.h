// Per-word times from CTC token peaks, the way WeNet runtime/core places word pieces: a token
// spans from halfway to its neighbour's peak when that neighbour is closer than `gap_ms`, else
// `gap_ms` before its own peak (start) / its peak (end). Tokens are then joined into words at the
// word marker "▁" (a separate unit in char models, the first letter's prefix in BPE models);
// languages without spaces get one word per token.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace u2 {

class SymbolTable;

struct WordPiece {
  std::string word;
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  float confidence = 1.0f;  // mean of its tokens' confidences (1 when none were given)
};

struct WordTimingConfig {
  int frame_shift_ms = 40;  // per encoder frame (10 ms feature shift x subsampling rate)
  int gap_ms = 100;         // runtime/core's time_stamp_gap_
  int64_t offset_ms = 0;    // added to every time (where the segment starts in the stream)
};

// tokens[i] peaks at encoder frame token_frames[i]. Sizes must match (else: no words).
// token_confidence (optional, one per token): each word's confidence is its tokens' mean.
std::vector<WordPiece> AlignWords(std::span<const int> tokens, std::span<const int> token_frames,
                                  const SymbolTable& symbols, const WordTimingConfig& config,
                                  std::span<const float> token_confidence = {});

}  // namespace u2
