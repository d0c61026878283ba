// Shallow fusion of an n-gram LM into a CTC search: the LM scores the words that a model's tokens
// spell, as the tokens arrive, so a prefix's LM score is known the moment a word is complete.
//
// Words. A character model with a "▁" unit completes a word when "▁" follows it; a BPE model when
// the next "▁"-prefixed piece starts a new word; the end of the utterance completes the last word
// and scores "</s>". A model whose units mark no word boundary (Chinese characters) scores every
// token as a word: the LM is then a character LM (WeNet-Triton's char scorer does the same).
// A word's text is its pieces joined without the marker; words the LM does not know are "<unk>".
//
// Score. Each completed word adds  lm_weight * ln P(word | previous words) + word_bonus  to the
// prefix (natural log, so lm_weight is WeNet-Triton's alpha and word_bonus its beta).
//
// Look-ahead. A word still being spelled carries  lm_weight * ln P1(best)  where P1(best) is the
// largest unigram probability of the LM's words that begin with what is spelled so far (or the
// "<unk>" unigram when no word begins so); when the word completes, the real score replaces it.
// Without it, a prefix that never closes a word would never pay for its words, and the beam fills
// with run-together words ("thefilepasses") that lose only at the very end.
//
// The LM score of a prefix depends only on its tokens, so prefixes that merge in the search
// always agree on it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "u2/decode/ngram_lm.h"
#include "u2/util/status.h"

namespace u2 {

class SymbolTable;

struct LmFusionWeights {
  float lm_weight = 0.0f;   // alpha; 0 turns the LM off
  float word_bonus = 0.0f;  // beta, per word (natural-log units)

  // lm_weight in [0, 10], word_bonus in [-20, 20]: beyond that the LM or the bonus alone decides.
  Status Validate() const;
  std::string ToString() const;
};

class WordLm {
 public:
  // Binds `lm` to the model's units. InvalidArgument if fewer than half of the LM's words can be
  // spelled with the units (an LM in another case or script would score every word as "<unk>").
  static StatusOr<std::shared_ptr<const WordLm>> Create(std::shared_ptr<const NgramLm> lm,
                                                        const SymbolTable& symbols);

  // The LM part of a prefix's state: the words before, and where the open word starts.
  struct State {
    NgramLm::State words;
    int32_t word_start = -1;  // index in the prefix of the open word's first token; -1: none
    int32_t spelling = 0;     // the open word's node in the spelling trie; -1: no LM word so begins
    float look_ahead = 0.0f;  // the open word's weighted look-ahead, included in the prefix's score
  };
  State Start() const;
  // `prefix` + `token`: the fused score change (weights applied), and the state after it.
  float Extend(const State& from, std::span<const int> prefix, int token, const LmFusionWeights& weights,
               State* to) const;
  // What ending the utterance after `prefix` adds: its open word and "</s>".
  float End(const State& state, std::span<const int> prefix, const LmFusionWeights& weights) const;

  const NgramLm& lm() const { return *lm_; }

 private:
  enum class Role : uint8_t { kNone, kPiece, kWordStart, kSeparator };
  WordLm() = default;
  // Scores the word spelled by prefix[begin, end) after `words`; returns weighted.
  float ScoreWord(NgramLm::State* words, std::span<const int> prefix, int32_t begin, size_t end,
                  const LmFusionWeights& weights) const;

  // The open word after `piece` is appended to the one at `node` (-1 stays -1).
  int32_t Spell(int32_t node, const std::string& piece) const;
  float LookAhead(int32_t node, const LmFusionWeights& weights) const;

  std::shared_ptr<const NgramLm> lm_;
  bool every_token_is_a_word_ = false;
  // A byte trie of the LM's words; per node the best unigram log10 P of the words below it.
  std::unordered_map<uint64_t, int32_t> trie_children_;
  std::vector<float> trie_best_;
  float unk_unigram_ = 0.0f;
  std::vector<Role> roles_;
  std::vector<std::string> pieces_;  // per token: its text without the word marker
};

}  // namespace u2
