// Attention rescoring (WeNet U2/U2++): combine each CTC n-best hypothesis's prefix score with the
// attention decoder's score of the same token sequence and rank them. Pure arithmetic on host
// values; the decoder forward that produces the scores lives in the model stage.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "u2/decode/ctc_search.h"
#include "u2/util/status.h"

namespace u2 {

struct RescoringWeights {
  float ctc_weight = 0.5f;        // weight of the CTC prefix score (runtime/core --ctc_weight)
  float reverse_weight = 0.0f;    // share of the right-to-left decoder in the attention score, [0, 1]
  float rescoring_weight = 1.0f;  // weight of the attention score

  Status Validate() const;
  std::string ToString() const;
};

struct RescoredHypothesis {
  size_t index = 0;  // into the hypotheses passed in
  // rescoring_weight * attention_score + ctc_weight * ctc score + lm_score + context_score (the
  // fused scores carry their own weights: lm_weight, word_bonus, hotword boosts)
  float final_score = 0;
  float attention_score = 0;  // L2R, or (1 - rw) * L2R + rw * R2L when reverse_weight > 0
};

// l2r[i], r2l[i]: summed decoder log-probs of hypothesis i including eos (spec: §5.6).
// With reverse_weight == 0 the attention score is L2R alone (no (1 - rw) factor) and r2l is not
// read (it may be empty); otherwise r2l must have one entry per hypothesis.
// A zero weight drops its term entirely, so a -inf CTC score with ctc_weight 0 does not give NaN.
// Result: every hypothesis, best first; equal final scores keep the lower index first; a NaN
// final score ranks last.
StatusOr<std::vector<RescoredHypothesis>> RankByAttentionRescoring(std::span<const CtcHypothesis> hyps,
                                                                   std::span<const float> l2r,
                                                                   std::span<const float> r2l,
                                                                   const RescoringWeights& weights);

}  // namespace u2
