#include "u2/engine/nbest_ranking.h"

#include <algorithm>

namespace u2 {

std::vector<StatusOr<std::vector<RescoredHypothesis>>> RankHypotheses(
    const AsrModel& model, const EncoderOutput& rescored_encoder_output, std::span<const RankingItem> items) {
  std::vector<StatusOr<std::vector<RescoredHypothesis>>> out(items.size(), std::vector<RescoredHypothesis>{});
  std::vector<size_t> rescored;
  std::vector<std::vector<std::vector<int>>> hyps;
  for (size_t k = 0; k < items.size(); ++k) {
    const std::vector<CtcHypothesis>& ctc = *items[k].ctc;
    if (items[k].rescoring) {
      rescored.push_back(k);
      std::vector<std::vector<int>> h;
      for (const CtcHypothesis& c : ctc) h.push_back(c.tokens);
      hyps.push_back(std::move(h));
    } else {
      std::vector<RescoredHypothesis> ranked;
      for (size_t j = 0; j < ctc.size(); ++j) ranked.push_back({j, ctc[j].score, 0.0f});
      out[k] = std::move(ranked);
    }
  }
  if (rescored.empty()) return out;
  auto scores = model.ScoreHypotheses(rescored_encoder_output, hyps);
  for (size_t r = 0; r < rescored.size(); ++r) {
    const size_t k = rescored[r];
    if (!scores.ok()) {
      out[k] = scores.status();
      continue;
    }
    out[k] = RankByAttentionRescoring(*items[k].ctc, (*scores)[r].l2r, (*scores)[r].r2l, *items[k].rescoring);
  }
  return out;
}

std::vector<Hypothesis> TopHypotheses(const std::vector<CtcHypothesis>& ctc,
                                      const std::vector<RescoredHypothesis>& ranked, int n,
                                      const SymbolTable& symbols, const WordTimingConfig& timing,
                                      const TokenLogProb& logp_at) {
  std::vector<Hypothesis> out;
  const size_t count = std::min<size_t>(ranked.size(), static_cast<size_t>(std::max(n, 0)));
  for (size_t j = 0; j < count; ++j)
    out.push_back(MakeHypothesis(ctc[ranked[j].index], ranked[j], symbols, timing));
  if (out.empty()) out.emplace_back();  // silence / too short: one empty hypothesis
  return out;
}

}  // namespace u2
