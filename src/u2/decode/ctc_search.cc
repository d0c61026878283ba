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
  return Status::Ok();
}

std::string CtcPrefixBeamSearchConfig::ToString() const {
  std::ostringstream os;
  os << "CtcPrefixBeamSearchConfig{beam=" << beam << ", first_beam=" << first_beam
     << ", blank_id=" << blank_id << "}";
  return os.str();
}

float CtcPrefixBeamSearch::Prefix::Score() const { return LogAdd(pb, pnb); }

CtcPrefixBeamSearch::CtcPrefixBeamSearch(const CtcPrefixBeamSearchConfig& config)
    : config_(config), config_status_(config.Validate()) {
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

int CtcPrefixBeamSearch::FindOrAdd(const Prefix& base, int token) {
  const uint64_t hash = token < 0 ? base.hash : ExtendHash(base.hash, token);
  const size_t want_size = base.tokens.size() + (token < 0 ? 0 : 1);
  int& head = buckets_[hash & (buckets_.size() - 1)];
  for (int i = head; i >= 0; i = next_[i].next_in_bucket) {
    const Prefix& p = next_[i];
    if (p.hash != hash || p.tokens.size() != want_size) continue;
    if (!std::equal(base.tokens.begin(), base.tokens.end(), p.tokens.begin())) continue;
    if (token >= 0 && p.tokens.back() != token) continue;
    return i;
  }
  Prefix p;
  p.tokens.reserve(want_size);
  p.tokens = base.tokens;
  if (token >= 0) p.tokens.push_back(token);
  p.hash = hash;
  p.pb = p.pnb = p.viterbi_b = p.viterbi_nb = p.last_token_peak = kLogZero;
  p.next_in_bucket = head;
  head = static_cast<int>(next_.size());
  next_.push_back(std::move(p));
  return head;
}

void CtcPrefixBeamSearch::SearchFrame(const float* logp, int vocab) {
  // 1. First beam: the top-k tokens of this frame, higher log-prob first, lower id on ties.
  const int k = std::min(config_.first_beam, vocab);
  candidate_ids_.resize(vocab);
  std::iota(candidate_ids_.begin(), candidate_ids_.end(), 0);
  std::partial_sort(candidate_ids_.begin(), candidate_ids_.begin() + k, candidate_ids_.end(),
                    [&](int a, int b) {
                      const float ka = SortKey(logp[a]), kb = SortKey(logp[b]);
                      return ka > kb || (ka == kb && a < b);
                    });

  // 2. Token passing into a fresh set of prefixes. Each current prefix yields at most two
  // entries per candidate, so this bound keeps references into next_ stable (no reallocation).
  const size_t max_entries = beam_.size() * (static_cast<size_t>(k) + 1);
  next_.clear();
  next_.reserve(max_entries);
  size_t num_buckets = 16;
  while (num_buckets < 2 * max_entries) num_buckets *= 2;
  buckets_.assign(num_buckets, -1);

  const int t = num_frames_decoded_;
  for (int c = 0; c < k; ++c) {
    const int id = candidate_ids_[c];
    const float p = logp[id];
    for (const Prefix& cur : beam_) {
      if (id == config_.blank_id) {
        // *a + blank -> *a
        Prefix& n = next_[FindOrAdd(cur, -1)];
        n.pb = LogAdd(n.pb, cur.Score() + p);
        if (cur.ViterbiScore() + p > n.viterbi_b) {
          n.viterbi_b = cur.ViterbiScore() + p;
          n.times_b = cur.Times();
        }
      } else if (!cur.tokens.empty() && id == cur.tokens.back()) {
        // *a + a -> *a: the repeat collapses into the same token.
        Prefix& same = next_[FindOrAdd(cur, -1)];
        same.pnb = LogAdd(same.pnb, cur.pnb + p);
        if (cur.viterbi_nb + p > same.viterbi_nb) {
          same.viterbi_nb = cur.viterbi_nb + p;
          same.times_nb = cur.times_nb;
          same.last_token_peak = cur.last_token_peak;
          // The token's time is the frame where it peaks along this alignment.
          if (p > cur.last_token_peak && !same.times_nb.empty()) {
            same.last_token_peak = p;
            same.times_nb.back() = t;
          }
        }
        // *a blank + a -> *aa: a blank separates the two tokens.
        Prefix& ext = next_[FindOrAdd(cur, id)];
        ext.pnb = LogAdd(ext.pnb, cur.pb + p);
        if (cur.viterbi_b + p > ext.viterbi_nb) {
          ext.viterbi_nb = cur.viterbi_b + p;
          ext.last_token_peak = p;
          ext.times_nb = cur.times_b;
          ext.times_nb.push_back(t);
        }
      } else {
        // *a + b -> *ab and *a blank + b -> *ab
        Prefix& ext = next_[FindOrAdd(cur, id)];
        ext.pnb = LogAdd(ext.pnb, cur.Score() + p);
        if (cur.ViterbiScore() + p > ext.viterbi_nb) {
          ext.viterbi_nb = cur.ViterbiScore() + p;
          ext.last_token_peak = p;
          ext.times_nb = cur.Times();
          ext.times_nb.push_back(t);
        }
      }
    }
  }

  // 3. Second beam: keep the best `beam` by score; ties keep the order of first appearance.
  const size_t keep = std::min(next_.size(), static_cast<size_t>(config_.beam));
  order_.resize(next_.size());
  std::iota(order_.begin(), order_.end(), 0);
  scores_.resize(next_.size());
  for (size_t i = 0; i < next_.size(); ++i) scores_[i] = SortKey(next_[i].Score());
  std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), [&](int a, int b) {
    return scores_[a] > scores_[b] || (scores_[a] == scores_[b] && a < b);
  });
  beam_.clear();
  for (size_t i = 0; i < keep; ++i) beam_.push_back(std::move(next_[order_[i]]));
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
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace u2
