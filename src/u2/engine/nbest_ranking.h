// The last step of every recognition, offline and streaming: a CTC n-best, attention-rescored (or
// kept in CTC order) and turned into the API's hypotheses (text, scores, word times).
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "u2/decode/ctc_search.h"
#include "u2/decode/rescoring.h"
#include "u2/decode/word_timing.h"
#include "u2/engine/recognizer.h"
#include "u2/model/asr_model.h"
#include "u2/util/status.h"

namespace u2 {

class SymbolTable;

// One utterance (or stream segment) to rank.
struct RankingItem {
  const std::vector<CtcHypothesis>* ctc = nullptr;  // its CTC n-best, best first
  std::optional<RescoringWeights> rescoring;        // set: attention-rescore; unset: keep CTC order
};

// Ranks every item. The items to rescore go through the attention decoder in one batch; their
// encoder outputs are the rows of `rescored_encoder_output`, in the order of those items. A
// decoder failure fails every rescored item; a ranking error fails its item only.
std::vector<StatusOr<std::vector<RescoredHypothesis>>> RankHypotheses(
    const AsrModel& model, const EncoderOutput& rescored_encoder_output, std::span<const RankingItem> items);

// The first `n` ranked hypotheses as API hypotheses (at least one: an empty one if none), with
// confidences when `logp_at` is given.
std::vector<Hypothesis> TopHypotheses(const std::vector<CtcHypothesis>& ctc,
                                      const std::vector<RescoredHypothesis>& ranked, int n,
                                      const SymbolTable& symbols, const WordTimingConfig& timing,
                                      const TokenLogProb& logp_at = {});

}  // namespace u2
