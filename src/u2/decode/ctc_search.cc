#include "u2/decode/ctc_search.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <numeric>
#include <sstream>

namespace u2 {
namespace {

constexpr float kLogZero = -FLT_MAX;

// log(exp(a) + exp(b)); -FLT_MAX (or anything below it, e.g. -inf) is log(0).
inline float LogAdd(float a, float b) {
  if (a <= kLogZero) return b;
  if (b <= kLogZero) return a;
  const float hi = a > b ? a : b;
  const float lo = a > b ? b : a;
  return hi + std::log1p(std::exp(lo - hi));
}

// Orders candidate log-probs: higher first, NaN as the lowest (keeps the sort's ordering strict).
inline float SortKey(float x) { return std::isnan(x) ? -INFINITY : x; }

constexpr uint64_t kEmptyPrefixHash = 0x84222325cbf29ce4ULL;

inline uint64_t ExtendHash(uint64_t h, int token) {
  // splitmix64 finaliser over (h, token): cheap and well mixed.
  uint64_t z = h + 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(static_cast<uint32_t>(token));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

Status LogProbView::Validate() const {
  if (num_frames < 0 || vocab < 0) {
    return InvalidArgument("log-prob view has a negative shape [" + std::to_string(num_frames) + " x " +
                           std::to_string(vocab) + "]");
  }
  if (num_frames > 0 && vocab == 0) return InvalidArgument("log-prob view has frames but vocab 0");
  if (num_frames > 0 && data == nullptr) return InvalidArgument("log-prob view has frames but no data");
  return Status::Ok();
}

std::vector<int> CtcGreedySearch(LogProbView logp, int blank_id, std::vector<int>* times) {
  std::vector<int> tokens;
  if (times) times->clear();
  if (!logp.Validate().ok()) return tokens;
  int prev = -1;       // token of the previous frame (blank included)
  float run_peak = 0;  // best log-prob within the current non-blank run
  for (int t = 0; t < logp.num_frames; ++t) {
    const float* row = logp.Row(t);
    int best = 0;
    for (int v = 1; v < logp.vocab; ++v) {
      if (SortKey(row[v]) > SortKey(row[best])) best = v;
    }
    if (best != blank_id) {
      if (best != prev) {
        tokens.push_back(best);
        if (times) times->push_back(t);
        run_peak = row[best];
      } else if (times && row[best] > run_peak) {
        run_peak = row[best];
        times->back() = t;
      }
    }
    prev = best;
  }
  return tokens;
}

Status CtcPrefixBeamSearchConfig::Validate() const {
  if (beam < 1) return InvalidArgument("prefix beam search: beam must be >= 1, got " + std::to_string(beam));
  if (first_beam < 1) {
    return InvalidArgument("prefix beam search: first_beam must be >= 1, got " + std::to_string(first_beam));
  }
  if (blank_id < 0) {
    return InvalidArgument("prefix beam search: blank_id must be >= 0, got " + std::to_string(blank_id));
  }
  return lm_weights.Validate().WithContext("prefix beam search");
}

std::string CtcPrefixBeamSearchConfig::ToString() const {
  std::ostringstream os;
  os << "CtcPrefixBeamSearchConfig{beam=" << beam << ", first_beam=" << first_beam
     << ", blank_id=" << blank_id;
  if (lm) os << ", lm_weight=" << lm_weights.lm_weight << ", word_bonus=" << lm_weights.word_bonus;
  if (context) os << ", hotword_phrases=" << context->num_phrases();
  os << "}";
  return os.str();
}

float CtcPrefixBeamSearch::Prefix::Score() const { return LogAdd(pb, pnb); }

CtcPrefixBeamSearch::CtcPrefixBeamSearch(const CtcPrefixBeamSearchConfig& config)
    : config_(config), config_status_(config.Validate()) {
  if (config_.lm && config_.lm_weights.lm_weight == 0 && config_.lm_weights.word_bonus == 0)
    config_.lm = nullptr;
  fused_ = config_.lm != nullptr || config_.context != nullptr;
  Reset();
}

void CtcPrefixBeamSearch::Reset() {
  num_frames_decoded_ = 0;
  vocab_ = -1;
  beam_.clear();
  Prefix empty;
  empty.hash = kEmptyPrefixHash;
  empty.pb = 0;
  empty.pnb = kLogZero;
  empty.viterbi_b = 0;
  empty.viterbi_nb = kLogZero;
  empty.last_token_peak = kLogZero;
  if (config_.lm) empty.fusion.lm_state = config_.lm->Start();
  if (config_.context) empty.fusion.context_state = config_.context->start();
  beam_.push_back(std::move(empty));
}

Status CtcPrefixBeamSearch::Search(LogProbView chunk) {
  U2_RETURN_IF_ERROR(config_status_);
  U2_RETURN_IF_ERROR(chunk.Validate().WithContext("prefix beam search"));
  if (chunk.num_frames == 0) return Status::Ok();
  if (config_.blank_id >= chunk.vocab) {
    return InvalidArgument("prefix beam search: blank_id " + std::to_string(config_.blank_id) +
                           " is outside the vocabulary of size " + std::to_string(chunk.vocab));
  }
  if (vocab_ >= 0 && chunk.vocab != vocab_) {
    return InvalidArgument("prefix beam search: chunk vocab " + std::to_string(chunk.vocab) +
                           " differs from earlier chunks' " + std::to_string(vocab_));
  }
  vocab_ = chunk.vocab;
  for (int t = 0; t < chunk.num_frames; ++t) SearchFrame(chunk.Row(t), chunk.vocab);
  return Status::Ok();
}

float CtcPrefixBeamSearch::Candidate::Score() const { return LogAdd(pb, pnb); }

int& CtcPrefixBeamSearch::Slot(int64_t key) {
  const size_t mask = slot_keys_.size() - 1;
  size_t i = static_cast<size_t>(ExtendHash(kEmptyPrefixHash, static_cast<int>(key ^ (key >> 32)))) & mask;
  while (slot_keys_[i] != key && slot_keys_[i] != -1) i = (i + 1) & mask;
  if (slot_keys_[i] == -1) {
    slot_keys_[i] = key;
    slot_values_[i] = -1;
  }
  return slot_values_[i];
}

int CtcPrefixBeamSearch::FindOrAdd(int base, int token) {
  const int64_t stride = static_cast<int64_t>(vocab_) + 1;
  int* value = &Slot(base * stride + token + 1);
  if (*value <= -2) {  // the extension is another prefix of the current beam
    base = -(*value + 2);
    token = -1;
    value = &Slot(base * stride);
  }
  if (*value >= 0) return *value;
  Candidate c;
  c.base = base;
  c.token = token;
  const Prefix& from = beam_[base];
  c.fusion = from.fusion;
  if (fused_ && token >= 0) {
    if (config_.lm) {
      c.fusion.lm_score += config_.lm->Extend(from.fusion.lm_state, from.tokens, token, config_.lm_weights,
                                              &c.fusion.lm_state);
    }
    if (config_.context) {
      c.fusion.context_score +=
          config_.context->Step(from.fusion.context_state, token, &c.fusion.context_state);
    }
  }
  *value = static_cast<int>(candidates_.size());
  candidates_.push_back(c);
  return *value;
}

void CtcPrefixBeamSearch::SelectCandidateTokens(const float* logp, int vocab) {
  // The top-k of one row, kept sorted in a small array: one comparison for most tokens.
  // Order: higher log-prob first, lower id first on ties (NaN counts as the lowest).
  const int k = std::min(config_.first_beam, vocab);
  candidate_ids_.clear();
  auto better = [&](int a, int b) {
    const float ka = SortKey(logp[a]), kb = SortKey(logp[b]);
    return ka > kb || (ka == kb && a < b);
  };
  float worst = -INFINITY;  // SortKey of the last kept token once k are kept
  for (int v = 0; v < vocab; ++v) {
    if (static_cast<int>(candidate_ids_.size()) == k) {
      // Ids only grow, so a tie with the worst kept token never displaces it.
      if (!(SortKey(logp[v]) > worst)) continue;
      candidate_ids_.pop_back();
    }
    candidate_ids_.insert(std::upper_bound(candidate_ids_.begin(), candidate_ids_.end(), v, better), v);
    if (static_cast<int>(candidate_ids_.size()) == k) worst = SortKey(logp[candidate_ids_.back()]);
  }
}

CtcPrefixBeamSearch::Prefix CtcPrefixBeamSearch::Materialize(const Candidate& c, int frame) const {
  const Prefix& base = beam_[c.base];
  Prefix p;
  p.tokens.reserve(base.tokens.size() + 1);
  p.tokens = base.tokens;
  if (c.token >= 0) {
    p.tokens.push_back(c.token);
    p.hash = ExtendHash(base.hash, c.token);
    p.parent_hash = base.hash;
  } else {
    p.hash = base.hash;
    p.parent_hash = base.parent_hash;
  }
  p.pb = c.pb;
  p.pnb = c.pnb;
  p.viterbi_b = c.viterbi_b;
  p.viterbi_nb = c.viterbi_nb;
  p.last_token_peak = c.last_token_peak;
  p.fusion = c.fusion;
  if (c.times_b_from >= 0) p.times_b = beam_[c.times_b_from].Times();
  if (c.times_nb_from >= 0) {
    const Prefix& src = beam_[c.times_nb_from];
    switch (c.times_nb_edit) {
      case TimesEdit::kCopyNb:
        p.times_nb = src.times_nb;
        break;
      case TimesEdit::kCopyNbMoveLast:
        p.times_nb = src.times_nb;
        if (!p.times_nb.empty()) p.times_nb.back() = frame;
        break;
      case TimesEdit::kAppendToB:
        p.times_nb.reserve(src.times_b.size() + 1);
        p.times_nb = src.times_b;
        p.times_nb.push_back(frame);
        break;
      case TimesEdit::kAppendToBest:
        p.times_nb.reserve(src.Times().size() + 1);
        p.times_nb = src.Times();
        p.times_nb.push_back(frame);
        break;
    }
  }
  return p;
}

void CtcPrefixBeamSearch::SearchFrame(const float* logp, int vocab) {
  // 1. First beam: the top-k tokens of this frame.
  SelectCandidateTokens(logp, vocab);
  const int k = static_cast<int>(candidate_ids_.size());

  // 2. Token passing into the next frame's prefixes. The lookup table holds at most two entries
  // per (prefix, candidate) plus the aliases, so twice that keeps probing short.
  const size_t max_entries = beam_.size() * (static_cast<size_t>(k) + 2);
  size_t num_slots = 64;
  while (num_slots < 2 * max_entries) num_slots *= 2;
  slot_keys_.assign(num_slots, -1);
  slot_values_.assign(num_slots, -1);
  candidates_.clear();
  // Aliases: prefix j = prefix i + [u] with both in the beam; (i, u) must reach j's entry.
  // Beam prefixes are distinct, so each j has at most one parent i.
  const int64_t stride = static_cast<int64_t>(vocab_) + 1;
  for (size_t j = 0; j < beam_.size(); ++j) {
    const Prefix& child = beam_[j];
    if (child.tokens.empty()) continue;
    for (size_t i = 0; i < beam_.size(); ++i) {
      const Prefix& parent = beam_[i];
      if (parent.hash != child.parent_hash || parent.tokens.size() + 1 != child.tokens.size()) continue;
      if (!std::equal(parent.tokens.begin(), parent.tokens.end(), child.tokens.begin())) continue;
      Slot(static_cast<int64_t>(i) * stride + child.tokens.back() + 1) = -(static_cast<int>(j) + 2);
      break;
    }
  }

  // A contribution of log(0) creates no entry: such a prefix has probability zero (e.g. "aa"
  // from "a" when no alignment of "a" ends in blank) and must not take a place in the beam.
  for (int c = 0; c < k; ++c) {
    const int id = candidate_ids_[c];
    const float p = logp[id];
    for (int b = 0; b < static_cast<int>(beam_.size()); ++b) {
      const Prefix& cur = beam_[b];
      if (id == config_.blank_id) {
        // *a + blank -> *a
        const float add = cur.Score() + p;
        if (add <= kLogZero) continue;
        Candidate& n = candidates_[FindOrAdd(b, -1)];
        n.pb = LogAdd(n.pb, add);
        if (cur.ViterbiScore() + p > n.viterbi_b) {
          n.viterbi_b = cur.ViterbiScore() + p;
          n.times_b_from = b;
        }
      } else if (!cur.tokens.empty() && id == cur.tokens.back()) {
        // *a + a -> *a: the repeat collapses into the same token.
        const float add_same = cur.pnb + p;
        if (add_same > kLogZero) {
          Candidate& same = candidates_[FindOrAdd(b, -1)];
          same.pnb = LogAdd(same.pnb, add_same);
          if (cur.viterbi_nb + p > same.viterbi_nb) {
            same.viterbi_nb = cur.viterbi_nb + p;
            same.times_nb_from = b;
            // The token's time is the frame where it peaks along this alignment.
            if (p > cur.last_token_peak) {
              same.last_token_peak = p;
              same.times_nb_edit = TimesEdit::kCopyNbMoveLast;
            } else {
              same.last_token_peak = cur.last_token_peak;
              same.times_nb_edit = TimesEdit::kCopyNb;
            }
          }
        }
        // *a blank + a -> *aa: a blank separates the two tokens.
        const float add_ext = cur.pb + p;
        if (add_ext > kLogZero) {
          Candidate& ext = candidates_[FindOrAdd(b, id)];
          ext.pnb = LogAdd(ext.pnb, add_ext);
          if (cur.viterbi_b + p > ext.viterbi_nb) {
            ext.viterbi_nb = cur.viterbi_b + p;
            ext.last_token_peak = p;
            ext.times_nb_from = b;
            ext.times_nb_edit = TimesEdit::kAppendToB;
          }
        }
      } else {
        // *a + b -> *ab and *a blank + b -> *ab
        const float add = cur.Score() + p;
        if (add <= kLogZero) continue;
        Candidate& ext = candidates_[FindOrAdd(b, id)];
        ext.pnb = LogAdd(ext.pnb, add);
        if (cur.ViterbiScore() + p > ext.viterbi_nb) {
          ext.viterbi_nb = cur.ViterbiScore() + p;
          ext.last_token_peak = p;
          ext.times_nb_from = b;
          ext.times_nb_edit = TimesEdit::kAppendToBest;
        }
      }
    }
  }

  // 3. Second beam: keep the best `beam` by score; ties keep the order of first appearance.
  const size_t keep = std::min(candidates_.size(), static_cast<size_t>(config_.beam));
  order_.resize(candidates_.size());
  std::iota(order_.begin(), order_.end(), 0);
  scores_.resize(candidates_.size());
  for (size_t i = 0; i < candidates_.size(); ++i)
    scores_[i] = SortKey(candidates_[i].Score() + candidates_[i].fusion.Total());
  std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), [&](int a, int b) {
    return scores_[a] > scores_[b] || (scores_[a] == scores_[b] && a < b);
  });
  next_beam_.clear();
  for (size_t i = 0; i < keep; ++i)
    next_beam_.push_back(Materialize(candidates_[order_[i]], num_frames_decoded_));
  beam_.swap(next_beam_);
  ++num_frames_decoded_;
}

std::vector<CtcHypothesis> CtcPrefixBeamSearch::NBest() const {
  std::vector<CtcHypothesis> out;
  out.reserve(beam_.size());
  for (const Prefix& p : beam_) {
    CtcHypothesis h;
    h.tokens = p.tokens;
    h.score = p.Score();
    h.viterbi_score = p.ViterbiScore();
    h.times = p.Times();
    h.lm_score = p.fusion.lm_score;
    h.context_score = p.fusion.context_score;
    if (config_.lm) h.lm_score += config_.lm->End(p.fusion.lm_state, p.tokens, config_.lm_weights);
    if (config_.context) h.context_score += config_.context->FinalScore(p.fusion.context_state);
    out.push_back(std::move(h));
  }
  // Ending here scores the open words and takes back unfinished hotwords, which can reorder.
  if (fused_) {
    std::stable_sort(out.begin(), out.end(), [](const CtcHypothesis& a, const CtcHypothesis& b) {
      return SortKey(a.FusedScore()) > SortKey(b.FusedScore());
    });
  }
  return out;
}

}  // namespace u2
