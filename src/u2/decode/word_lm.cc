#include "u2/decode/word_lm.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

constexpr std::string_view kWordMarker = "\xE2\x96\x81";  // U+2581
constexpr float kLn10 = static_cast<float>(std::numbers::ln10);

}  // namespace

Status LmFusionWeights::Validate() const {
  if (!std::isfinite(lm_weight) || lm_weight < 0 || lm_weight > 10) {
    return InvalidArgument("lm_weight must be in [0, 10], got " + std::to_string(lm_weight));
  }
  if (!std::isfinite(word_bonus) || word_bonus < -20 || word_bonus > 20) {
    return InvalidArgument("word_bonus must be in [-20, 20], got " + std::to_string(word_bonus));
  }
  return Status::Ok();
}

std::string LmFusionWeights::ToString() const {
  std::ostringstream os;
  os << "LmFusionWeights{lm_weight=" << lm_weight << ", word_bonus=" << word_bonus << "}";
  return os.str();
}

StatusOr<std::shared_ptr<const WordLm>> WordLm::Create(std::shared_ptr<const NgramLm> lm,
                                                       const SymbolTable& symbols) {
  if (!lm) return InvalidArgument("no language model");
  auto out = std::shared_ptr<WordLm>(new WordLm());
  out->lm_ = std::move(lm);
  out->every_token_is_a_word_ = symbols.word_marking() == SymbolTable::WordMarking::kNone;
  out->roles_.assign(static_cast<size_t>(symbols.size()), Role::kPiece);
  out->pieces_.assign(static_cast<size_t>(symbols.size()), std::string());
  for (int id = 0; id < symbols.size(); ++id) {
    const std::string& t = symbols.Token(id);
    Role& role = out->roles_[static_cast<size_t>(id)];
    std::string& piece = out->pieces_[static_cast<size_t>(id)];
    if (id == symbols.blank_id() || id == symbols.sos_eos_id()) {
      role = Role::kNone;
    } else if (t == kWordMarker) {
      role = Role::kSeparator;
    } else if (t.size() > kWordMarker.size() && t.compare(0, kWordMarker.size(), kWordMarker) == 0) {
      role = Role::kWordStart;
      piece = t.substr(kWordMarker.size());
    } else {
      piece = t;
    }
  }
  // The LM must speak the model's units: count its words the units can spell.
  const NgramLm& ngram = *out->lm_;
  int words = 0, spelled = 0;
  out->trie_best_.push_back(-INFINITY);  // the root
  NgramLm::State unused;
  out->unk_unigram_ = ngram.Score(NgramLm::NullContext(), ngram.unk_id(), &unused);
  for (int32_t w = 0; w < ngram.vocab_size(); ++w) {
    if (w == ngram.bos_id() || w == ngram.eos_id() || w == ngram.unk_id()) continue;
    ++words;
    const float unigram = ngram.Score(NgramLm::NullContext(), w, &unused);
    int32_t node = 0;
    for (unsigned char c : ngram.Word(w)) {
      auto [it, inserted] = out->trie_children_.try_emplace((static_cast<uint64_t>(node) << 8) | c,
                                                            static_cast<int32_t>(out->trie_best_.size()));
      if (inserted) out->trie_best_.push_back(-INFINITY);
      node = it->second;
      out->trie_best_[static_cast<size_t>(node)] =
          std::max(out->trie_best_[static_cast<size_t>(node)], unigram);
    }
    // Spelled exactly: Tokenize lower-cases for a lower-case table, the LM's word must not need it.
    const auto ids = symbols.Tokenize(ngram.Word(w));
    if (ids.ok() && symbols.Detokenize(*ids) == ngram.Word(w)) ++spelled;
  }
  if (words > 0 && 2 * spelled < words) {
    return InvalidArgument("only " + std::to_string(spelled) + " of the language model's " +
                           std::to_string(words) +
                           " words can be spelled with this model's units (an LM for another case, script or "
                           "language?)");
  }
  return std::shared_ptr<const WordLm>(std::move(out));
}

WordLm::State WordLm::Start() const {
  State s;
  s.words = lm_->BeginSentence();
  return s;
}

float WordLm::ScoreWord(NgramLm::State* words, std::span<const int> prefix, int32_t begin, size_t end,
                        const LmFusionWeights& weights) const {
  std::string word;
  for (size_t i = static_cast<size_t>(begin); i < end; ++i) word += pieces_[static_cast<size_t>(prefix[i])];
  const float log10p = lm_->Score(*words, lm_->WordId(word), words);
  return weights.lm_weight * kLn10 * log10p + weights.word_bonus;
}

int32_t WordLm::Spell(int32_t node, const std::string& piece) const {
  for (unsigned char c : piece) {
    if (node < 0) return -1;
    const auto it = trie_children_.find((static_cast<uint64_t>(node) << 8) | c);
    node = it == trie_children_.end() ? -1 : it->second;
  }
  return node;
}

float WordLm::LookAhead(int32_t node, const LmFusionWeights& weights) const {
  const float log10p = node > 0 ? trie_best_[static_cast<size_t>(node)] : unk_unigram_;
  return weights.lm_weight * kLn10 * log10p;
}

float WordLm::Extend(const State& from, std::span<const int> prefix, int token,
                     const LmFusionWeights& weights, State* to) const {
  *to = from;
  if (token < 0 || static_cast<size_t>(token) >= roles_.size()) return 0.0f;
  const Role role = roles_[static_cast<size_t>(token)];
  if (role == Role::kNone) return 0.0f;
  if (every_token_is_a_word_) {
    const std::span<const int> one(&token, 1);
    return ScoreWord(&to->words, one, 0, 1, weights);
  }
  float delta = 0.0f;
  if (role != Role::kPiece || from.word_start < 0) {
    // A separator or a word-starting piece closes the open word; its look-ahead gives way to
    // its real score.
    if (from.word_start >= 0) {
      delta += ScoreWord(&to->words, prefix, from.word_start, prefix.size(), weights) - from.look_ahead;
    }
    to->word_start = -1;
    to->spelling = 0;
    to->look_ahead = 0.0f;
    if (role == Role::kSeparator) return delta;
    to->word_start = static_cast<int32_t>(prefix.size());  // a piece opens a word
  }
  to->spelling = Spell(to->spelling, pieces_[static_cast<size_t>(token)]);
  to->look_ahead = LookAhead(to->spelling, weights);
  return delta + to->look_ahead - (to->word_start == from.word_start ? from.look_ahead : 0.0f);
}

float WordLm::End(const State& state, std::span<const int> prefix, const LmFusionWeights& weights) const {
  NgramLm::State words = state.words;
  float delta = 0.0f;
  if (state.word_start >= 0) {
    delta += ScoreWord(&words, prefix, state.word_start, prefix.size(), weights) - state.look_ahead;
  }
  NgramLm::State unused;
  delta += weights.lm_weight * kLn10 * lm_->Score(words, lm_->eos_id(), &unused);
  return delta;
}

}  // namespace u2
