// CTC decoding over a TLG graph (decoding_graph.h), as WeNet's runtime does with its
// CtcWfstBeamSearch: token passing, frame by frame, through the graph whose input labels are the
// model's frame labels (T turns blanks and repeats into tokens, L tokens into words, G scores the
// words). Only word sequences the graph holds can come out.
//
// Per frame:
//   1. Blank skipping. A frame whose blank probability exceeds blank_skip_threshold carries no
//      token; a run of such frames is decoded as one certain blank (cost 0), so a repeated token
//      across it still reads as two and the run costs one step, not one per frame.
//   2. Pruning. Tokens costlier than the best + beam are dropped; if more than max_active remain,
//      only the max_active best (and never fewer than min_active while they are within the beam).
//   3. Emitting arcs. Each token follows the arcs that consume the frame's label:
//        cost += lm_weight * graph weight - log P(label | frame) - word_bonus * (1 if a word ends)
//   4. Epsilon arcs, to closure, with the same cost rule without the acoustic term.
//   Tokens meeting in a state are recombined when they have the same word history (the cheaper
//   survives); a state keeps the `nbest` cheapest distinct histories, so the n-best list has
//   distinct word sequences (an approximation of lattice n-best, exact for the best path).
//
// Hotwords: with a context graph every token also carries its state in it; each emitted token
// steps it (cost -= the bonus change), and the end of the utterance takes back an unfinished
// match (ContextGraph::FinalScore), exactly as in the prefix beam search.
//
// Scores of a hypothesis: `score` (= viterbi_score) is the acoustic log-prob of its path,
// `lm_score` = lm_weight * (-graph cost) + word_bonus * words and `context_score` its hotword
// bonus, so FusedScore() is minus the cost it was ranked by and attention rescoring combines the
// scores as with shallow fusion.
// `times` are the frames where each token was emitted.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "u2/decode/context_graph.h"
#include "u2/decode/ctc_hypothesis.h"
#include "u2/decode/ctc_search_interface.h"
#include "u2/decode/decoding_graph.h"
#include "u2/decode/word_lm.h"
#include "u2/util/status.h"

namespace u2 {

class OptionRegistry;

struct CtcWfstSearchConfig {
  float beam = 16.0f;                  // cost window kept each frame (WeNet's --beam)
  int max_active = 7000;               // most tokens kept each frame
  int min_active = 200;                // least tokens kept each frame, within the beam
  float blank_skip_threshold = 0.98f;  // skip frames whose blank probability is above; >= 1: never
  int nbest = 10;                      // hypotheses returned (and distinct histories kept per state)
  int blank_id = 0;
  LmFusionWeights lm{1.0f, 0.0f};               // lm_weight scales the graph's weights; word_bonus per word
  std::shared_ptr<const ContextGraph> context;  // hotwords (null: none)

  void Register(OptionRegistry* r);  // --wfst-beam, --max-active, --min-active, --blank-skip-threshold
  Status Validate() const;
  std::string ToString() const;
};

class CtcWfstSearch : public CtcSearch {
 public:
  CtcWfstSearch(std::shared_ptr<const DecodingGraph> graph, const CtcWfstSearchConfig& config);

  void Reset() override;
  // Fails (changing nothing) on an invalid configuration or view, or a vocabulary that differs
  // from earlier chunks' or is too small for the graph's labels.
  Status Search(LogProbView chunk) override;
  // Best first; tokens in final states (with their final cost) if any reached one, else all.
  std::vector<CtcHypothesis> NBest() const override;
  int num_frames_decoded() const override { return num_frames_decoded_; }
  int num_active() const { return static_cast<int>(tokens_.size()); }

 private:
  // A path's trace: a node is added when a token is emitted or a word is output.
  struct TraceNode {
    int32_t prev;
    int32_t token;  // model token id emitted here; -1: none
    int32_t word;   // word id output here; 0: none
    int32_t frame;
  };
  struct Token {
    int32_t state;
    int32_t last_label;  // the input label of the last frame it consumed (token id + 1)
    int32_t trace;       // -1: empty path
    int32_t num_words;
    uint64_t history;       // hash of the word sequence
    int32_t context_state;  // in the hotword graph
    float cost;             // lm_weight * graph - acoustic - word_bonus * words - hotword bonus
    float am;               // acoustic log-prob (negated cost part)
    float graph;            // graph cost (unscaled)
    float context;          // hotword bonus so far
  };

  // Adds `t` to next_, or replaces a costlier token of the same state and history; true if so.
  bool Relax(const Token& t);
  // Follows epsilon arcs from every token of next_ to closure, dropping tokens above `cutoff`.
  void ProcessEpsilons(float cutoff);
  // Keeps the config_.nbest cheapest tokens of each state in next_.
  void LimitPerState();
  // The cost above which a token of tokens_ is not expanded (beam, max_active, min_active).
  float PruneCutoff();
  void Step(const float* logp, bool certain_blank);
  // Drops trace nodes no active token reaches (long utterances and streams keep flat memory).
  void CollectGarbage();
  CtcHypothesis Trace(const Token& t, float final_cost) const;

  std::shared_ptr<const DecodingGraph> graph_;
  CtcWfstSearchConfig config_;
  Status config_status_;
  int vocab_ = -1;
  int num_frames_decoded_ = 0;
  bool in_blank_run_ = false;
  std::vector<Token> tokens_;  // the active tokens after the last frame
  std::vector<TraceNode> trace_;
  static constexpr size_t kMinGcThreshold = size_t{1} << 20;
  size_t gc_threshold_ = kMinGcThreshold;
  // Scratch for a frame.
  std::vector<Token> next_;
  std::unordered_map<uint64_t, int32_t> index_;  // (state, history) -> next_ index
  std::vector<int32_t> queue_;
  std::vector<float> costs_;
};

}  // namespace u2
