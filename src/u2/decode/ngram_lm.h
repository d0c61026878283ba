// A back-off n-gram language model read from an ARPA file, queried word by word with the state
// (the words before) kept by the caller, so a search can hold one state per prefix.
//
// Probabilities follow the ARPA back-off rule, as KenLM computes them:
//   log10 P(w | h1..hk) = prob(h1..hk w)                         if that n-gram is listed,
//                       = backoff(h1..hk) + log10 P(w | h2..hk)   otherwise,
// where a context that is not listed has backoff 0. A word not in the vocabulary is "<unk>"; a
// file without "<unk>" gets one with log10 probability -100 (KenLM's substitute). A sentence
// starts in the context "<s>" and is closed by scoring "</s>".
//
// Storage: a hash trie over word ids. Every listed n-gram is a node reached from the root by its
// words newest first (so one walk from the newest context word finds every shorter context's
// back-off on the way), and its probability is keyed by (node of its context, its last word).
// Memory: about 80 bytes per n-gram (1.3 M n-grams: ~100 MB, read in ~1 s).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

class NgramLm {
 public:
  static constexpr int kMaxOrder = 8;

  // The words a prediction depends on: the last order-1 words, oldest first.
  struct State {
    std::array<int32_t, kMaxOrder - 1> words{};
    int32_t length = 0;
    bool operator==(const State& o) const;
  };

  // Reads an ARPA file. Errors (InvalidArgument/DataLoss, naming the file and line): a missing
  // \data\ header or n-gram section, counts that disagree with the entries, numbers that do not
  // parse, positive or NaN log-probabilities, an order above kMaxOrder, a back-off on the highest
  // order, no n-grams at all, no "<s>" or "</s>". NotFound if the file cannot be opened.
  static StatusOr<std::shared_ptr<const NgramLm>> LoadArpa(const std::string& path);
  // The same parser over in-memory text; `source` names it in error messages.
  static StatusOr<std::shared_ptr<const NgramLm>> FromArpaText(std::string_view text,
                                                               const std::string& source = "<arpa>");

  int order() const { return order_; }
  // Number of listed n-grams of order n (1-based), as the \data\ section counted them.
  int64_t num_ngrams(int n) const;
  int vocab_size() const { return static_cast<int>(words_.size()); }

  // The id of `word`; unk_id() when the LM does not know it.
  int32_t WordId(std::string_view word) const;
  const std::string& Word(int32_t id) const { return words_[static_cast<size_t>(id)]; }
  int32_t unk_id() const { return unk_id_; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

  // The state at the start of a sentence ("<s>"), and the empty context.
  State BeginSentence() const;
  static State NullContext() { return {}; }

  // log10 P(word | state); `next` (may alias `state`) receives the state after the word.
  float Score(const State& state, int32_t word, State* next) const;
  // Sum of log10 P over the whitespace-separated words of `sentence` (with "<s>" before and
  // "</s>" after when asked), as KenLM's Model.score. `per_word` receives each term.
  float ScoreSentence(std::string_view sentence, bool bos = true, bool eos = true,
                      std::vector<float>* per_word = nullptr) const;

 private:
  // Open-addressing map from a 64-bit key (context node << 32 | word) to a 32-bit value.
  class KeyMap {
   public:
    void Reserve(size_t n);
    // Inserts (key, value) or overwrites; returns the value slot.
    uint32_t* Insert(uint64_t key);
    const uint32_t* Find(uint64_t key) const;
    size_t size() const { return size_; }

   private:
    void Grow();
    std::vector<uint64_t> keys_;  // kEmptyKey marks a free slot
    std::vector<uint32_t> values_;
    size_t size_ = 0;
  };
  friend class ArpaReader;

  NgramLm() = default;
  // The node of the context reached by prepending `word` to `node`'s words (an older word); -1
  // when not listed. Node 0 is the empty context.
  int64_t Child(uint32_t node, int32_t word) const;
  uint32_t AddChild(uint32_t node, int32_t word);

  int order_ = 0;
  std::vector<int64_t> counts_;
  std::vector<std::string> words_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> word_ids_;
  int32_t unk_id_ = -1, bos_id_ = -1, eos_id_ = -1;
  KeyMap children_;             // (node, older word) -> child node
  std::vector<float> backoff_;  // per node, log10
  KeyMap probs_;                // (context node, word) -> log10 probability (float bits)
};

}  // namespace u2
