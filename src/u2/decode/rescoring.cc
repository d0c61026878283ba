#include "u2/decode/rescoring.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace u2 {

Status RescoringWeights::Validate() const {
  if (!std::isfinite(ctc_weight) || ctc_weight < 0) {
    return InvalidArgument("rescoring: ctc_weight must be finite and >= 0, got " +
                           std::to_string(ctc_weight));
  }
  if (!(reverse_weight >= 0 && reverse_weight <= 1)) {
    return InvalidArgument("rescoring: reverse_weight must be in [0, 1], got " +
                           std::to_string(reverse_weight));
  }
  if (!std::isfinite(rescoring_weight) || rescoring_weight < 0) {
    return InvalidArgument("rescoring: rescoring_weight must be finite and >= 0, got " +
                           std::to_string(rescoring_weight));
  }
  return Status::Ok();
}

std::string RescoringWeights::ToString() const {
  std::ostringstream os;
  os << "RescoringWeights{ctc_weight=" << ctc_weight << ", reverse_weight=" << reverse_weight
     << ", rescoring_weight=" << rescoring_weight << "}";
  return os.str();
}

StatusOr<std::vector<RescoredHypothesis>> RankByAttentionRescoring(std::span<const CtcHypothesis> hyps,
                                                                   std::span<const float> l2r,
                                                                   std::span<const float> r2l,
                                                                   const RescoringWeights& weights) {
  U2_RETURN_IF_ERROR(weights.Validate());
  const bool use_r2l = weights.reverse_weight > 0;
  if (l2r.size() != hyps.size()) {
    return InvalidArgument("rescoring: " + std::to_string(hyps.size()) + " hypotheses but " +
                           std::to_string(l2r.size()) + " left-to-right scores");
  }
  if (use_r2l && r2l.size() != hyps.size()) {
    return InvalidArgument(
        "rescoring: reverse_weight > 0 needs one right-to-left score per hypothesis; got " +
        std::to_string(r2l.size()) + " for " + std::to_string(hyps.size()) + " hypotheses");
  }
  std::vector<RescoredHypothesis> out(hyps.size());
  for (size_t i = 0; i < hyps.size(); ++i) {
    const float att =
        use_r2l ? (1.0f - weights.reverse_weight) * l2r[i] + weights.reverse_weight * r2l[i] : l2r[i];
    float final_score = 0;
    if (weights.rescoring_weight != 0) final_score += weights.rescoring_weight * att;
    if (weights.ctc_weight != 0) final_score += weights.ctc_weight * hyps[i].score;
    // LM and hotword scores enter with their own weights (already applied), not ctc_weight.
    final_score += hyps[i].lm_score + hyps[i].context_score;
    out[i] = {i, final_score, att};
  }
  auto key = [](float x) { return std::isnan(x) ? -INFINITY : x; };
  std::stable_sort(out.begin(), out.end(), [&](const RescoredHypothesis& a, const RescoredHypothesis& b) {
    return key(a.final_score) > key(b.final_score);
  });
  return out;
}

}  // namespace u2
