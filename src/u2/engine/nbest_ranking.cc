#include "u2/engine/nbest_ranking.h"

#include <algorithm>
#include <cmath>

#include "u2/decode/symbol_table.h"

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
      for (size_t j = 0; j < ctc.size(); ++j) ranked.push_back({j, ctc[j].FusedScore(), 0.0f});
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

namespace {

// Word confidence as the n-best's posterior of the word: the share of the CTC n-best's probability
// (softmax of the prefix scores) held by hypotheses that have the same word overlapping it in
// time. CTC's posteriors at the spikes themselves are close to 1 whether the word is right or
// wrong; how much of the beam agrees on a word tells the two apart (train/confidence_report.py).
void SetWordPosteriors(const std::vector<CtcHypothesis>& ctc, const SymbolTable& symbols,
                       const WordTimingConfig& timing, std::vector<Hypothesis>* out) {
  if (ctc.size() < 2) return;
  float best = -INFINITY;
  for (const CtcHypothesis& h : ctc) best = std::max(best, h.score);
  std::vector<double> weight(ctc.size());
  std::vector<std::vector<WordPiece>> words(ctc.size());
  double total = 0;
  for (size_t j = 0; j < ctc.size(); ++j) {
    weight[j] = std::exp(static_cast<double>(ctc[j].score - best));
    total += weight[j];
    words[j] = AlignWords(ctc[j].tokens, ctc[j].times, symbols, timing);
  }
  if (!(total > 0)) return;
  for (Hypothesis& h : *out) {
    float sum = 0.0f;
    for (WordPiece& w : h.words) {
      double agree = 0;
      for (size_t j = 0; j < ctc.size(); ++j) {
        const bool has = std::any_of(words[j].begin(), words[j].end(), [&](const WordPiece& v) {
          return v.word == w.word && v.start_ms <= w.end_ms && w.start_ms <= v.end_ms;
        });
        if (has) agree += weight[j];
      }
      w.confidence = static_cast<float>(agree / total);
      sum += w.confidence;
    }
    if (!h.words.empty()) h.confidence = sum / static_cast<float>(h.words.size());
  }
}

}  // namespace

std::vector<Hypothesis> TopHypotheses(const std::vector<CtcHypothesis>& ctc,
                                      const std::vector<RescoredHypothesis>& ranked, int n,
                                      const SymbolTable& symbols, const WordTimingConfig& timing,
                                      const TokenLogProb& logp_at) {
  std::vector<Hypothesis> out;
  const size_t count = std::min<size_t>(ranked.size(), static_cast<size_t>(std::max(n, 0)));
  for (size_t j = 0; j < count; ++j)
    out.push_back(MakeHypothesis(ctc[ranked[j].index], ranked[j], symbols, timing));
  SetWordPosteriors(ctc, symbols, timing, &out);
  if (out.empty()) out.emplace_back();  // silence / too short: one empty hypothesis
  return out;
}

}  // namespace u2
