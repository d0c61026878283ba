// CTC searches over per-frame log-probabilities held in host memory: greedy (argmax) search and
// WeNet's prefix beam search. Neither depends on the model or a backend.
#pragma once

#include <cfloat>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "u2/decode/context_graph.h"
#include "u2/decode/ctc_hypothesis.h"
#include "u2/decode/ctc_search_interface.h"
#include "u2/decode/word_lm.h"
#include "u2/util/status.h"

namespace u2 {

// Greedy search: per frame the arg-max token (the lowest id among equal maxima), then collapse
// consecutive repeats and drop blanks. If `times` is given it receives, for each output token,
// the frame within the token's run where its log-prob peaks (first such frame on ties).
// An invalid view (null data with frames, negative sizes) yields no tokens.
std::vector<int> CtcGreedySearch(LogProbView logp, int blank_id, std::vector<int>* times = nullptr);

struct CtcPrefixBeamSearchConfig {
  int beam = 10;        // prefixes kept after each frame (runtime/core: second_beam_size)
  int first_beam = 10;  // candidate tokens per frame, the top-k of its log-probs
  int blank_id = 0;
  // Scores fused into each prefix (null: none). Beams are pruned and the n-best is ranked by
  // score + lm_score + context_score; the acoustic score itself is left as it is.
  std::shared_ptr<const WordLm> lm;
  LmFusionWeights lm_weights;
  std::shared_ptr<const ContextGraph> context;

  Status Validate() const;
  std::string ToString() const;
};

// WeNet's CTC prefix beam search (runtime/core ctc_prefix_beam_search.cc, wenet search.py).
// Incremental: Search() may be called chunk by chunk on persistent state; that equals one call
// over the whole utterance. Scores are kept in float, with -FLT_MAX standing for -inf.
//
// Determinism: per frame the candidate tokens are the top `first_beam` log-probs (ties: lower
// id first); prefixes are expanded token-major, then in current-beam order, and the next beam is
// ordered by score with ties broken by first appearance. This is the order WeNet's Python
// search produces (stable sort over dict insertion order); runtime/core leaves ties unspecified.
class CtcPrefixBeamSearch : public CtcSearch {
 public:
  explicit CtcPrefixBeamSearch(const CtcPrefixBeamSearchConfig& config);

  // Back to the start state: the empty prefix with probability 1, frame counter 0.
  void Reset() override;
  // Consumes the frames of `chunk`. Fails (and changes nothing) if the configuration is invalid,
  // the view is malformed, blank_id >= vocab, or vocab differs from earlier chunks since Reset().
  Status Search(LogProbView chunk) override;
  // Best first (by FusedScore), at most `beam`. Before any frame: the empty hypothesis.
  std::vector<CtcHypothesis> NBest() const override;
  int num_frames_decoded() const override { return num_frames_decoded_; }
  const CtcPrefixBeamSearchConfig& config() const { return config_; }

 private:
  // The fused scores of a prefix and the states they continue from; a function of its tokens.
  struct Fusion {
    WordLm::State lm_state;
    int32_t context_state = 0;  // set to the graph's start() at Reset()
    float lm_score = 0, context_score = 0;
    float Total() const { return lm_score + context_score; }
  };
  // One prefix in the beam. -FLT_MAX stands for log(0).
  struct Prefix {
    std::vector<int> tokens;
    uint64_t hash = 0;                 // of `tokens`
    uint64_t parent_hash = 0;          // of `tokens` without the last one (unused when empty)
    float pb = -FLT_MAX;               // log-prob of all alignments of `tokens` ending in blank
    float pnb = -FLT_MAX;              // ... ending in the last token
    float viterbi_b = -FLT_MAX;        // best single alignment ending in blank
    float viterbi_nb = -FLT_MAX;       // best single alignment ending in the last token
    float last_token_peak = -FLT_MAX;  // the last token's best frame log-prob on the viterbi_nb path
    std::vector<int> times_b, times_nb;
    Fusion fusion;
    float Score() const;
    float ViterbiScore() const { return viterbi_b > viterbi_nb ? viterbi_b : viterbi_nb; }
    const std::vector<int>& Times() const { return viterbi_b > viterbi_nb ? times_b : times_nb; }
  };
  // How a candidate's times_nb derives from a current prefix's times.
  enum class TimesEdit : uint8_t { kCopyNb, kCopyNbMoveLast, kAppendToB, kAppendToBest };
  // A prefix of the next frame while one frame is expanded. It holds only scores and where its
  // tokens and Viterbi times come from in the current beam; only the `beam` survivors get their
  // token and time vectors built, so a frame costs O(beam * length), not O(candidates * length).
  struct Candidate {
    int base = 0;    // index in beam_
    int token = -1;  // appended to the base's tokens; -1: the base prefix itself
    float pb = -FLT_MAX, pnb = -FLT_MAX, viterbi_b = -FLT_MAX, viterbi_nb = -FLT_MAX;
    float last_token_peak = -FLT_MAX;
    int times_b_from = -1;   // times_b = beam_[times_b_from].Times()
    int times_nb_from = -1;  // times_nb = edit(beam_[times_nb_from])
    TimesEdit times_nb_edit = TimesEdit::kCopyNb;
    Fusion fusion;
    float Score() const;
  };

  void SearchFrame(const float* logp, int vocab);
  void SelectCandidateTokens(const float* logp, int vocab);
  // Index in candidates_ of beam_[base] + [token] (token < 0: beam_[base] itself), created if
  // missing. An extension that equals another prefix of the beam maps to that prefix's entry.
  int FindOrAdd(int base, int token);
  int& Slot(int64_t key);
  Prefix Materialize(const Candidate& c, int frame) const;

  CtcPrefixBeamSearchConfig config_;
  Status config_status_;
  bool fused_ = false;  // an LM (with lm_weight > 0) or hotwords are fused in
  int vocab_ = -1;      // fixed by the first chunk after Reset()
  int num_frames_decoded_ = 0;
  std::vector<Prefix> beam_;  // sorted best first
  // Scratch, reused across frames.
  std::vector<Prefix> next_beam_;
  std::vector<Candidate> candidates_;
  std::vector<int64_t> slot_keys_;  // open-addressing table (base, token) -> candidates_ index
  std::vector<int> slot_values_;    // >= 0: candidate; <= -2: alias of beam prefix -(v + 2)
  std::vector<int> candidate_ids_;  // this frame's top-k tokens, best first
  std::vector<int> order_;
  std::vector<float> scores_;
};

}  // namespace u2
