// What a CTC search consumes and produces: a view of per-frame log-probabilities, and scored
// token sequences.
#pragma once

#include <cstdint>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

// A view of per-frame CTC log-probabilities, row-major [num_frames x vocab]. Does not own data.
struct LogProbView {
  const float* data = nullptr;
  int num_frames = 0;
  int vocab = 0;

  const float* Row(int t) const { return data + static_cast<int64_t>(t) * vocab; }
  // OK when the shape is non-negative and data is non-null whenever there is something to read.
  Status Validate() const;
};

struct CtcHypothesis {
  std::vector<int> tokens;
  // Acoustic score: the prefix search's log P(prefix) = logadd(pb, pnb) over all alignments that
  // collapse to it; the WFST search's log-prob of its one best alignment.
  float score = 0;
  float viterbi_score = 0;  // log-prob of the single best alignment (for confidence)
  // Per token, the absolute frame of its spike: where it peaks on the Viterbi path (prefix
  // search) or where it is first emitted (WFST search).
  std::vector<int> times;
  // Fused scores, as if the utterance ended here (0 without an LM / hotwords):
  // Sum over its words of lm_weight * ln P + word_bonus, "</s>" included (WFST: lm_weight times
  // the graph's log-weight along the path, plus word_bonus per word).
  float lm_score = 0;
  float context_score = 0;  // hotword bonus of complete phrases (an unfinished match gives its back)
  float FusedScore() const { return score + lm_score + context_score; }
};

}  // namespace u2
