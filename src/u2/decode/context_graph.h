// Hotword (context) biasing: an Aho-Corasick automaton over token ids that a search steps through
// token by token, one state per hypothesis, to reward hypotheses that spell given phrases.
//
// Scoring. Each phrase has a boost b (natural-log units per token). A hypothesis earns b for each
// token that extends a match of the phrase, so a complete phrase of n tokens earns n * b. A match
// that breaks off before the phrase is complete gives back what it earned: the automaton falls
// back to the longest suffix of the tokens that starts some phrase, and the score moves to that
// suffix's partial bonus. At the end of an utterance an unfinished match is given back entirely
// (FinalScore), so a hypothesis never keeps credit for half a phrase. Once a phrase is complete
// its bonus is kept, also when a longer phrase it begins ("new york" in "new york city") breaks
// off later. Phrases sharing tokens share automaton nodes; a node's per-token bonus is the
// largest boost among the phrases through it. A phrase that ends inside a longer match that is
// still open (phrase "york" inside an unfinished "new yorker") is not credited separately.
//
// Word boundaries. Given the model's word-separator token (a character model's "▁"), phrases
// match whole words only: each phrase is wrapped in separators (which earn nothing), the search
// starts as if after a separator, and the end of the utterance counts as one. "good enough" then
// earns nothing inside "goodenough", and "art" nothing inside "start".
//
// Immutable once built; any number of searches may step through one graph concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

struct ContextPhrase {
  std::vector<int> tokens;  // non-empty, token ids >= 0
  float boost = 0;          // per token, natural-log units; finite
};

class ContextGraph {
 public:
  // InvalidArgument for an empty phrase, a negative token id or a non-finite boost.
  // `word_separator` >= 0: match whole words only (above).
  static StatusOr<std::shared_ptr<const ContextGraph>> Build(std::span<const ContextPhrase> phrases,
                                                             int word_separator = -1);

  // The state a search starts in.
  int32_t start() const { return start_; }
  // Moves from `state` over `token`; returns the score change and stores the new state in *next.
  float Step(int32_t state, int token, int32_t* next) const;
  // The score to add if the utterance ends in `state`: a phrase it completes is kept (with word
  // boundaries), the bonus of an unfinished match is given back.
  float FinalScore(int32_t state) const;

  int num_phrases() const { return num_phrases_; }
  int num_nodes() const { return static_cast<int>(nodes_.size()); }

 private:
  struct Node {
    int32_t parent = -1;
    int32_t fail = 0;  // longest proper suffix that is also a node
    int token = -1;    // the token on the edge from the parent
    bool phrase_end = false;
    float token_bonus = 0;  // bonus of the edge into this node
    float path_bonus = 0;   // sum of token bonuses from the root
    float kept_bonus = 0;   // path_bonus of the deepest phrase end on the path (this node included)
    float open_bonus = 0;   // path_bonus - kept_bonus: what an unfinished match has earned
  };
  ContextGraph() = default;
  int32_t Child(int32_t node, int token) const;

  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> children_;  // (node << 32 | token) -> child
  int num_phrases_ = 0;
  int word_separator_ = -1;
  int32_t start_ = 0;
};

}  // namespace u2
