#include "u2/decode/ctc_wfst_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "u2/util/option_registry.h"

namespace u2 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

inline uint64_t ExtendHistory(uint64_t history, int32_t word) {
  uint64_t h = (history + static_cast<uint64_t>(word) + 1) * 0x9E3779B97F4A7C15ULL;
  return h ^ (h >> 29);
}

inline uint64_t Key(int32_t state, uint64_t history, int32_t context_state) {
  uint64_t h = history ^ (static_cast<uint64_t>(static_cast<uint32_t>(state)) * 0xC2B2AE3D27D4EB4FULL);
  h ^= static_cast<uint64_t>(static_cast<uint32_t>(context_state)) * 0x165667B19E3779F9ULL;
  return h ^ (h >> 31);
}

}  // namespace

void CtcWfstSearchConfig::Register(OptionRegistry* r) {
  r->Add("wfst-beam", &beam, "TLG search: cost beam per frame");
  r->Add("max-active", &max_active, "TLG search: most tokens kept per frame");
  r->Add("min-active", &min_active, "TLG search: least tokens kept per frame");
  r->Add("blank-skip-threshold", &blank_skip_threshold,
         "TLG search: frames whose blank probability is above are skipped (>= 1: none)");
}

Status CtcWfstSearchConfig::Validate() const {
  if (!std::isfinite(beam) || beam <= 0 || beam > 1000) {
    return InvalidArgument("wfst beam must be in (0, 1000], got " + std::to_string(beam));
  }
  if (max_active < 1 || max_active > 10000000) {
    return InvalidArgument("max_active must be in [1, 1e7], got " + std::to_string(max_active));
  }
  if (min_active < 0 || min_active > max_active) {
    return InvalidArgument("min_active must be in [0, max_active], got " + std::to_string(min_active));
  }
  if (!(blank_skip_threshold > 0)) {
    return InvalidArgument("blank_skip_threshold must be > 0, got " + std::to_string(blank_skip_threshold));
  }
  if (nbest < 1 || nbest > 1000)
    return InvalidArgument("nbest must be in [1, 1000], got " + std::to_string(nbest));
  if (blank_id < 0) return InvalidArgument("blank_id must be >= 0");
  U2_RETURN_IF_ERROR(lm.Validate());
  return Status::Ok();
}

std::string CtcWfstSearchConfig::ToString() const {
  std::ostringstream os;
  os << "CtcWfstSearchConfig{beam=" << beam << ", max_active=" << max_active << ", min_active=" << min_active
     << ", blank_skip_threshold=" << blank_skip_threshold << ", nbest=" << nbest << ", " << lm.ToString()
     << "}";
  return os.str();
}

CtcWfstSearch::CtcWfstSearch(std::shared_ptr<const DecodingGraph> graph, const CtcWfstSearchConfig& config)
    : graph_(std::move(graph)), config_(config), config_status_(config.Validate()) {
  if (config_status_.ok() && !graph_) config_status_ = InvalidArgument("wfst search: no decoding graph");
  Reset();
}

void CtcWfstSearch::Reset() {
  tokens_.clear();
  trace_.clear();
  num_frames_decoded_ = 0;
  in_blank_run_ = false;
  vocab_ = -1;
  if (!config_status_.ok()) return;
  next_.clear();
  index_.clear();
  const int32_t context_start = config_.context ? config_.context->start() : 0;
  Relax({graph_->start(), config_.blank_id + 1, -1, 0, 0, context_start, 0.0f, 0.0f, 0.0f, 0.0f});
  ProcessEpsilons(kInf);
  LimitPerState();
  tokens_.swap(next_);
}

bool CtcWfstSearch::Relax(const Token& t) {
  const auto [it, inserted] =
      index_.try_emplace(Key(t.state, t.history, t.context_state), static_cast<int32_t>(next_.size()));
  if (inserted) {
    next_.push_back(t);
    return true;
  }
  Token& old = next_[static_cast<size_t>(it->second)];
  if (t.cost < old.cost) {
    old = t;
    return true;
  }
  return false;
}

void CtcWfstSearch::ProcessEpsilons(float cutoff) {
  queue_.resize(next_.size());
  std::iota(queue_.begin(), queue_.end(), 0);
  // A graph without epsilon cycles (what build_tlg.py makes) settles in a few passes; the cap
  // keeps a malformed graph with a negative-cost epsilon cycle from looping forever.
  size_t budget = 64 * next_.size() + 100000;
  const int32_t frame = std::max(0, num_frames_decoded_ - 1);
  while (!queue_.empty() && budget-- > 0) {
    const Token t = next_[static_cast<size_t>(queue_.back())];
    queue_.pop_back();
    for (const DecodingGraph::Arc* a = graph_->EpsilonBegin(t.state); a != graph_->EmittingBegin(t.state);
         ++a) {
      Token n = t;
      n.state = a->next;
      n.graph += a->weight;
      n.cost += config_.lm.lm_weight * a->weight;
      if (a->olabel != 0) {
        n.cost -= config_.lm.word_bonus;
        if (n.cost > cutoff) continue;
        trace_.push_back({t.trace, -1, a->olabel, frame});
        n.trace = static_cast<int32_t>(trace_.size()) - 1;
        n.history = ExtendHistory(t.history, a->olabel);
        ++n.num_words;
      } else if (n.cost > cutoff) {
        continue;
      }
      if (Relax(n)) queue_.push_back(index_.find(Key(n.state, n.history, n.context_state))->second);
    }
  }
}

void CtcWfstSearch::LimitPerState() {
  if (next_.size() <= 1) return;
  std::vector<int32_t> order(next_.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const Token& x = next_[static_cast<size_t>(a)];
    const Token& y = next_[static_cast<size_t>(b)];
    return x.state != y.state ? x.state < y.state : (x.cost != y.cost ? x.cost < y.cost : a < b);
  });
  std::vector<Token> kept;
  kept.reserve(next_.size());
  int32_t state = -1;
  int count = 0;
  for (int32_t i : order) {
    const Token& t = next_[static_cast<size_t>(i)];
    if (t.state != state) state = t.state, count = 0;
    if (count++ < config_.nbest) kept.push_back(t);
  }
  next_.swap(kept);
}

float CtcWfstSearch::PruneCutoff() {
  if (tokens_.empty()) return kInf;
  costs_.resize(tokens_.size());
  float best = kInf;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    costs_[i] = tokens_[i].cost;
    best = std::min(best, costs_[i]);
  }
  float cutoff = best + config_.beam;
  const size_t n = costs_.size();
  if (n > static_cast<size_t>(config_.max_active)) {
    std::nth_element(costs_.begin(), costs_.begin() + config_.max_active, costs_.end());
    cutoff = std::min(cutoff, costs_[static_cast<size_t>(config_.max_active)]);
  }
  if (config_.min_active > 0 && n > static_cast<size_t>(config_.min_active)) {
    std::nth_element(costs_.begin(), costs_.begin() + config_.min_active, costs_.end());
    cutoff = std::max(cutoff, costs_[static_cast<size_t>(config_.min_active)]);
  }
  return cutoff;
}

void CtcWfstSearch::Step(const float* logp, bool certain_blank) {
  const float cutoff = PruneCutoff();
  next_.clear();
  index_.clear();
  const int32_t blank_label = config_.blank_id + 1;
  const int32_t frame = num_frames_decoded_;
  float best = kInf;
  float next_cutoff = kInf;
  for (const Token& t : tokens_) {
    if (t.cost > cutoff) continue;
    for (const DecodingGraph::Arc* a = graph_->EmittingBegin(t.state); a != graph_->End(t.state); ++a) {
      float acoustic;
      if (certain_blank) {
        if (a->ilabel != blank_label) continue;
        acoustic = 0.0f;
      } else {
        acoustic = logp[a->ilabel - 1];
      }
      Token n = t;
      n.cost = t.cost + config_.lm.lm_weight * a->weight - acoustic;
      if (a->olabel != 0) n.cost -= config_.lm.word_bonus;
      if (!(n.cost <= next_cutoff)) continue;
      n.state = a->next;
      n.graph += a->weight;
      n.am += acoustic;
      n.last_label = a->ilabel;
      const bool emits = a->ilabel != blank_label && a->ilabel != t.last_label;
      if (emits && config_.context) {
        const float bonus = config_.context->Step(t.context_state, a->ilabel - 1, &n.context_state);
        n.context += bonus;
        n.cost -= bonus;
        if (!(n.cost <= next_cutoff)) continue;
      }
      if (emits || a->olabel != 0) {
        trace_.push_back({t.trace, emits ? a->ilabel - 1 : -1, a->olabel, frame});
        n.trace = static_cast<int32_t>(trace_.size()) - 1;
      }
      if (a->olabel != 0) {
        n.history = ExtendHistory(t.history, a->olabel);
        ++n.num_words;
      }
      Relax(n);
      if (n.cost < best) {
        best = n.cost;
        next_cutoff = best + config_.beam;
      }
    }
  }
  ++num_frames_decoded_;
  ProcessEpsilons(next_cutoff);
  LimitPerState();
  tokens_.swap(next_);
  if (trace_.size() > gc_threshold_) CollectGarbage();
}

void CtcWfstSearch::CollectGarbage() {
  std::vector<int32_t> remap(trace_.size(), -1);
  for (const Token& t : tokens_) {
    for (int32_t i = t.trace; i >= 0 && remap[static_cast<size_t>(i)] == -1;
         i = trace_[static_cast<size_t>(i)].prev)
      remap[static_cast<size_t>(i)] = 0;  // live
  }
  int32_t live = 0;
  for (size_t i = 0; i < trace_.size(); ++i) {
    if (remap[i] < 0) continue;
    remap[i] = live;
    TraceNode node = trace_[i];
    if (node.prev >= 0) node.prev = remap[static_cast<size_t>(node.prev)];  // prev < i: already mapped
    trace_[static_cast<size_t>(live++)] = node;
  }
  trace_.resize(static_cast<size_t>(live));
  for (Token& t : tokens_) {
    if (t.trace >= 0) t.trace = remap[static_cast<size_t>(t.trace)];
  }
  gc_threshold_ = std::max<size_t>(kMinGcThreshold, 2 * static_cast<size_t>(live));
}

Status CtcWfstSearch::Search(LogProbView chunk) {
  U2_RETURN_IF_ERROR(config_status_);
  U2_RETURN_IF_ERROR(chunk.Validate());
  if (chunk.num_frames == 0) return Status::Ok();
  if (vocab_ >= 0 && chunk.vocab != vocab_) {
    return InvalidArgument("wfst search: vocab " + std::to_string(chunk.vocab) + " differs from " +
                           std::to_string(vocab_) + " of earlier chunks");
  }
  if (chunk.vocab < graph_->vocab() || config_.blank_id >= chunk.vocab) {
    return InvalidArgument("wfst search: " + std::to_string(chunk.vocab) +
                           " log-probs per frame, the graph needs " + std::to_string(graph_->vocab()));
  }
  vocab_ = chunk.vocab;
  const float log_threshold =
      config_.blank_skip_threshold >= 1.0f ? kInf : std::log(config_.blank_skip_threshold);
  for (int f = 0; f < chunk.num_frames; ++f) {
    const float* row = chunk.Row(f);
    if (row[config_.blank_id] > log_threshold) {
      // A run of near-certain blanks: one certain blank step for the whole run.
      if (!in_blank_run_) {
        Step(row, /*certain_blank=*/true);
      } else {
        ++num_frames_decoded_;
      }
      in_blank_run_ = true;
      continue;
    }
    in_blank_run_ = false;
    Step(row, /*certain_blank=*/false);
  }
  return Status::Ok();
}

CtcHypothesis CtcWfstSearch::Trace(const Token& t, float final_cost) const {
  CtcHypothesis h;
  for (int32_t i = t.trace; i >= 0; i = trace_[static_cast<size_t>(i)].prev) {
    const TraceNode& node = trace_[static_cast<size_t>(i)];
    if (node.token >= 0) {
      h.tokens.push_back(node.token);
      h.times.push_back(node.frame);
    }
  }
  std::reverse(h.tokens.begin(), h.tokens.end());
  std::reverse(h.times.begin(), h.times.end());
  h.score = t.am;
  h.viterbi_score = t.am;
  h.lm_score = -config_.lm.lm_weight * (t.graph + final_cost) +
               config_.lm.word_bonus * static_cast<float>(t.num_words);
  h.context_score = t.context + (config_.context ? config_.context->FinalScore(t.context_state) : 0.0f);
  return h;
}

std::vector<CtcHypothesis> CtcWfstSearch::NBest() const {
  struct Candidate {
    const Token* token;
    float final_cost;
    float total;
  };
  std::vector<Candidate> candidates;
  // Ending here also takes back an unfinished hotword match.
  auto end_cost = [&](const Token& t) {
    return config_.context ? -config_.context->FinalScore(t.context_state) : 0.0f;
  };
  for (const Token& t : tokens_) {
    const float f = graph_ ? graph_->Final(t.state) : kInf;
    if (std::isfinite(f)) candidates.push_back({&t, f, t.cost + config_.lm.lm_weight * f + end_cost(t)});
  }
  if (candidates.empty()) {
    for (const Token& t : tokens_) candidates.push_back({&t, 0.0f, t.cost + end_cost(t)});
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.total < b.total; });
  std::vector<CtcHypothesis> out;
  std::vector<uint64_t> seen;
  for (const Candidate& c : candidates) {
    if (static_cast<int>(out.size()) >= config_.nbest) break;
    if (std::find(seen.begin(), seen.end(), c.token->history) != seen.end()) continue;
    seen.push_back(c.token->history);
    out.push_back(Trace(*c.token, c.final_cost));
  }
  return out;
}

}  // namespace u2
