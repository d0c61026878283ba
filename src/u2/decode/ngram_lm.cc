#include "u2/decode/ngram_lm.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace u2 {
namespace {

constexpr uint64_t kEmptyKey = ~uint64_t{0};

inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t Key(uint32_t node, int32_t word) {
  return (static_cast<uint64_t>(node) << 32) | static_cast<uint32_t>(word);
}

// KenLM's stand-in for a missing <unk>.
constexpr float kMissingUnkLog10Prob = -100.0f;

// Splits `line` at runs of spaces and tabs.
void SplitFields(std::string_view line, std::vector<std::string_view>* fields) {
  fields->clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) fields->push_back(line.substr(i, j - i));
    i = j;
  }
}

bool ParseFloat(std::string_view s, float* out) {
  // "-inf" appears in some toolkits' output for impossible words.
  if (s == "-inf" || s == "-Infinity") {
    *out = -INFINITY;
    return true;
  }
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && !std::isnan(*out);
}

bool ParseInt(std::string_view s, int64_t* out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

bool NgramLm::State::operator==(const State& o) const {
  if (length != o.length) return false;
  for (int i = 0; i < length; ++i)
    if (words[i] != o.words[i]) return false;
  return true;
}

// ---- KeyMap ----

void NgramLm::KeyMap::Reserve(size_t n) {
  size_t slots = 16;
  while (slots < 2 * n) slots *= 2;
  if (slots <= keys_.size()) return;
  std::vector<uint64_t> old_keys = std::move(keys_);
  std::vector<uint32_t> old_values = std::move(values_);
  keys_.assign(slots, kEmptyKey);
  values_.assign(slots, 0);
  size_ = 0;
  for (size_t i = 0; i < old_keys.size(); ++i) {
    if (old_keys[i] != kEmptyKey) *Insert(old_keys[i]) = old_values[i];
  }
}

void NgramLm::KeyMap::Grow() { Reserve(keys_.empty() ? 8 : keys_.size()); }

uint32_t* NgramLm::KeyMap::Insert(uint64_t key) {
  if (2 * (size_ + 1) > keys_.size()) Grow();
  const size_t mask = keys_.size() - 1;
  size_t i = Mix(key) & mask;
  while (keys_[i] != kEmptyKey && keys_[i] != key) i = (i + 1) & mask;
  if (keys_[i] == kEmptyKey) {
    keys_[i] = key;
    values_[i] = 0;
    ++size_;
  }
  return &values_[i];
}

const uint32_t* NgramLm::KeyMap::Find(uint64_t key) const {
  if (keys_.empty()) return nullptr;
  const size_t mask = keys_.size() - 1;
  size_t i = Mix(key) & mask;
  while (keys_[i] != kEmptyKey) {
    if (keys_[i] == key) return &values_[i];
    i = (i + 1) & mask;
  }
  return nullptr;
}

// ---- The ARPA reader ----

// Reads an ARPA text line by line from a stream, building the model as it goes.
class ArpaReader {
 public:
  // `input_bytes`: the text's size when known (-1: unknown), which bounds what \data\ may reserve.
  ArpaReader(std::istream* in, std::string source, int64_t input_bytes)
      : in_(in), source_(std::move(source)), input_bytes_(input_bytes) {}

  StatusOr<std::shared_ptr<const NgramLm>> Read() {
    auto lm = std::shared_ptr<NgramLm>(new NgramLm());
    lm_ = lm.get();
    U2_RETURN_IF_ERROR(ReadHeader());
    for (int n = 1; n <= lm_->order_; ++n) U2_RETURN_IF_ERROR(ReadSection(n));
    U2_RETURN_IF_ERROR(ReadEnd());
    U2_RETURN_IF_ERROR(Finish());
    return std::shared_ptr<const NgramLm>(std::move(lm));
  }

 private:
  Status Error(const std::string& what) const {
    return InvalidArgument(source_ + ":" + std::to_string(line_number_) + ": " + what);
  }

  // The next line without its end-of-line; false at the end of the input.
  bool NextLine() {
    if (!std::getline(*in_, line_)) return false;
    ++line_number_;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    return true;
  }
  bool NextNonBlankLine() {
    while (NextLine()) {
      if (!IsBlank(line_)) return true;
    }
    return false;
  }
  static bool IsBlank(std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; }

  Status ReadHeader() {
    // Anything before "\data\" is a comment (toolkits write their command line there).
    bool found = false;
    while (NextLine()) {
      if (line_ == "\\data\\") {
        found = true;
        break;
      }
    }
    if (!found) return InvalidArgument(source_ + ": not an ARPA file: no \\data\\ section");
    while (NextLine()) {
      if (IsBlank(line_)) {
        if (lm_->counts_.empty()) continue;
        break;
      }
      if (line_.rfind("\\", 0) == 0) {
        pending_header_ = true;  // a section header right after the counts
        break;
      }
      // "ngram N=count"
      std::string_view s = line_;
      if (s.rfind("ngram ", 0) != 0)
        return Error("expected 'ngram N=count' in \\data\\, got '" + line_ + "'");
      s.remove_prefix(6);
      const size_t eq = s.find('=');
      int64_t n = 0, count = 0;
      if (eq == std::string_view::npos || !ParseInt(s.substr(0, eq), &n) ||
          !ParseInt(s.substr(eq + 1), &count))
        return Error("bad n-gram count line '" + line_ + "'");
      if (n != static_cast<int64_t>(lm_->counts_.size()) + 1)
        return Error("n-gram counts must be listed in order 1, 2, ...; got order " + std::to_string(n));
      if (n > NgramLm::kMaxOrder)
        return Error("order " + std::to_string(n) + " is above the supported " +
                     std::to_string(NgramLm::kMaxOrder));
      if (count < 0 || count > (int64_t{1} << 31)) return Error("bad n-gram count " + std::to_string(count));
      lm_->counts_.push_back(count);
    }
    if (lm_->counts_.empty()) return Error("\\data\\ lists no n-gram counts");
    lm_->order_ = static_cast<int>(lm_->counts_.size());
    int64_t total = 0;
    for (int64_t c : lm_->counts_) total += c;
    if (lm_->counts_[0] == 0 || total == 0) return Error("the language model is empty (no 1-grams)");
    // Reserve by what the input can hold, never by the counts alone: a 40-byte file announcing
    // 2^31 n-grams must not allocate tens of GB. An n-gram line takes at least 4 bytes ("0 a\n");
    // a stream of unknown size reserves at most 2^20 and the tables grow as entries arrive.
    const int64_t plausible = input_bytes_ >= 0 ? input_bytes_ / 4 + 1 : int64_t{1} << 20;
    const auto reserve = static_cast<size_t>(std::min(total, plausible)) + 1;
    lm_->probs_.Reserve(reserve);
    lm_->children_.Reserve(reserve);
    lm_->backoff_.reserve(reserve);
    lm_->backoff_.push_back(0.0f);  // node 0: the empty context
    return Status::Ok();
  }

  Status ReadSection(int n) {
    // The header "\n-grams:", after any blank lines.
    std::string header = "\\";  // "\n-grams:" (built in steps: GCC 12 warns falsely on "\\" + ...)
    header += std::to_string(n);
    header += "-grams:";
    if (!pending_header_ && !NextNonBlankLine()) return Error("missing section " + header);
    pending_header_ = false;
    if (line_ != header) return Error("expected " + header + ", got '" + line_ + "'");
    int64_t entries = 0;
    const int64_t expected = lm_->counts_[static_cast<size_t>(n - 1)];
    while (NextLine()) {
      if (IsBlank(line_)) continue;
      if (line_[0] == '\\') {
        pending_header_ = true;
        break;
      }
      if (++entries > expected) {
        return Error("section " + header + " has more entries than the " + std::to_string(expected) +
                     " that \\data\\ announced");
      }
      U2_RETURN_IF_ERROR(ReadEntry(n));
    }
    if (entries != expected) {
      return Error("section " + header + " has " + std::to_string(entries) +
                   " entries but \\data\\ announced " + std::to_string(expected));
    }
    return Status::Ok();
  }

  Status ReadEntry(int n) {
    SplitFields(line_, &fields_);
    const bool highest = n == lm_->order_;
    if (static_cast<int>(fields_.size()) != n + 1 && static_cast<int>(fields_.size()) != n + 2) {
      return Error("a " + std::to_string(n) + "-gram line needs a log-probability, " + std::to_string(n) +
                   " word(s) and an optional back-off; got '" + line_ + "'");
    }
    float prob = 0, backoff = 0;
    if (!ParseFloat(fields_[0], &prob)) return Error("bad log-probability '" + std::string(fields_[0]) + "'");
    if (prob > 0) return Error("positive log-probability " + std::string(fields_[0]));
    if (static_cast<int>(fields_.size()) == n + 2) {
      if (highest) return Error("a back-off weight on the highest order (" + std::to_string(n) + "-grams)");
      if (!ParseFloat(fields_.back(), &backoff) || std::isinf(backoff))
        return Error("bad back-off weight '" + std::string(fields_.back()) + "'");
    }
    ids_.clear();
    for (int i = 1; i <= n; ++i) {
      const std::string_view w = fields_[static_cast<size_t>(i)];
      if (n == 1) {
        if (lm_->word_ids_.find(w) != lm_->word_ids_.end())
          return Error("duplicate 1-gram '" + std::string(w) + "'");
        const int32_t id = static_cast<int32_t>(lm_->words_.size());
        lm_->words_.emplace_back(w);
        lm_->word_ids_.emplace(std::string(w), id);
        ids_.push_back(id);
      } else {
        const auto it = lm_->word_ids_.find(w);
        if (it == lm_->word_ids_.end())
          return Error("word '" + std::string(w) + "' of a " + std::to_string(n) + "-gram is not a 1-gram");
        ids_.push_back(it->second);
      }
    }
    // The context node: the words before the last, newest first (created when an LM pruned it).
    uint32_t context = 0;
    for (int i = n - 2; i >= 0; --i) context = lm_->AddChild(context, ids_[static_cast<size_t>(i)]);
    const uint64_t key = Key(context, ids_.back());
    if (n > 1 && lm_->probs_.Find(key) != nullptr) return Error("duplicate " + std::to_string(n) + "-gram");
    *lm_->probs_.Insert(key) = std::bit_cast<uint32_t>(prob);
    // The n-gram as a context for the next order, with its back-off.
    if (!highest) {
      uint32_t node = 0;
      for (int i = n - 1; i >= 0; --i) node = lm_->AddChild(node, ids_[static_cast<size_t>(i)]);
      lm_->backoff_[node] = backoff;
    }
    return Status::Ok();
  }

  Status ReadEnd() {
    if (!pending_header_ && !NextNonBlankLine()) return Error("missing \\end\\");
    if (line_ != "\\end\\") return Error("expected \\end\\, got '" + line_ + "'");
    return Status::Ok();
  }

  Status Finish() {
    auto find = [&](const char* w) {
      const auto it = lm_->word_ids_.find(std::string_view(w));
      return it == lm_->word_ids_.end() ? -1 : it->second;
    };
    lm_->bos_id_ = find("<s>");
    lm_->eos_id_ = find("</s>");
    lm_->unk_id_ = find("<unk>");
    if (lm_->bos_id_ < 0) return InvalidArgument(source_ + ": the 1-grams have no <s>");
    if (lm_->eos_id_ < 0) return InvalidArgument(source_ + ": the 1-grams have no </s>");
    if (lm_->unk_id_ < 0) {
      lm_->unk_id_ = static_cast<int32_t>(lm_->words_.size());
      lm_->words_.emplace_back("<unk>");
      lm_->word_ids_.emplace("<unk>", lm_->unk_id_);
      *lm_->probs_.Insert(Key(0, lm_->unk_id_)) = std::bit_cast<uint32_t>(kMissingUnkLog10Prob);
    }
    return Status::Ok();
  }

  std::istream* in_;
  std::string source_;
  int64_t input_bytes_;
  NgramLm* lm_ = nullptr;
  std::string line_;
  int64_t line_number_ = 0;
  bool pending_header_ = false;  // line_ holds a section header not yet consumed
  std::vector<std::string_view> fields_;
  std::vector<int32_t> ids_;
};

// ---- NgramLm ----

StatusOr<std::shared_ptr<const NgramLm>> NgramLm::LoadArpa(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open language model '" + path + "'");
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ArpaReader(&in, path, ec ? int64_t{-1} : static_cast<int64_t>(size)).Read();
}

StatusOr<std::shared_ptr<const NgramLm>> NgramLm::FromArpaText(std::string_view text,
                                                               const std::string& source) {
  std::istringstream in{std::string(text)};
  return ArpaReader(&in, source, static_cast<int64_t>(text.size())).Read();
}

int64_t NgramLm::num_ngrams(int n) const {
  return n >= 1 && n <= order_ ? counts_[static_cast<size_t>(n - 1)] : 0;
}

int32_t NgramLm::WordId(std::string_view word) const {
  const auto it = word_ids_.find(word);
  return it == word_ids_.end() ? unk_id_ : it->second;
}

NgramLm::State NgramLm::BeginSentence() const {
  State s;
  if (order_ > 1) {
    s.words[0] = bos_id_;
    s.length = 1;
  }
  return s;
}

int64_t NgramLm::Child(uint32_t node, int32_t word) const {
  const uint32_t* v = children_.Find(Key(node, word));
  return v ? static_cast<int64_t>(*v) : -1;
}

uint32_t NgramLm::AddChild(uint32_t node, int32_t word) {
  uint32_t* v = children_.Insert(Key(node, word));
  if (*v == 0) {  // new (node 0 is the root, never anyone's child)
    *v = static_cast<uint32_t>(backoff_.size());
    backoff_.push_back(0.0f);
  }
  return *v;
}

float NgramLm::Score(const State& state, int32_t word, State* next) const {
  if (word < 0 || word >= vocab_size()) word = unk_id_;
  // Walk the context newest word first: nodes[j] is the context of the last j words.
  std::array<uint32_t, kMaxOrder> nodes;
  nodes[0] = 0;
  int listed = 0;
  for (int i = state.length - 1; i >= 0; --i) {
    const int64_t child = Child(nodes[listed], state.words[i]);
    if (child < 0) break;
    nodes[++listed] = static_cast<uint32_t>(child);
  }
  // The longest listed context that predicts `word`, plus the back-offs of the longer ones.
  float logp = kMissingUnkLog10Prob;
  int match = listed;
  for (; match >= 0; --match) {
    if (const uint32_t* p = probs_.Find(Key(nodes[match], word))) {
      logp = std::bit_cast<float>(*p);
      break;
    }
  }
  for (int j = match + 1; j <= listed; ++j) logp += backoff_[nodes[j]];

  State out;
  const int keep = std::min<int>(state.length, order_ - 2);  // older words kept besides `word`
  if (order_ > 1) {
    for (int i = 0; i < keep; ++i) out.words[i] = state.words[state.length - keep + i];
    out.words[keep] = word;
    out.length = keep + 1;
  }
  *next = out;
  return logp;
}

float NgramLm::ScoreSentence(std::string_view sentence, bool bos, bool eos,
                             std::vector<float>* per_word) const {
  std::vector<std::string_view> words;
  SplitFields(sentence, &words);
  State state = bos ? BeginSentence() : NullContext();
  float total = 0;
  if (per_word) per_word->clear();
  auto add = [&](int32_t id) {
    const float s = Score(state, id, &state);
    total += s;
    if (per_word) per_word->push_back(s);
  };
  for (std::string_view w : words) add(WordId(w));
  if (eos) add(eos_id_);
  return total;
}

}  // namespace u2
