// The model's token table (units.txt): "token id" per line, ids 0..V-1 (docs/wenet-numerics.md §1.4).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

class BpeTokenizer;

class SymbolTable {
 public:
  // Reads a units file. Errors name the file and line: missing/unreadable file (NotFound), a line
  // that is not "token id", an id that is not a non-negative integer, a duplicate id or token, ids
  // that do not cover 0..V-1 (InvalidArgument). Blank lines are skipped; CRLF endings are accepted.
  static StatusOr<SymbolTable> Load(const std::string& path);
  // Same parser over in-memory text; `source` names it in error messages.
  static StatusOr<SymbolTable> FromText(std::string_view text, const std::string& source = "<text>");
  static StatusOr<SymbolTable> FromLines(std::span<const std::string> lines,
                                         const std::string& source = "<lines>");

  int size() const { return static_cast<int>(tokens_.size()); }
  // The token for `id`; an empty string for ids outside [0, size()).
  const std::string& Token(int id) const;
  std::optional<int> Id(std::string_view token) const;

  // "<blank>"'s id, else 0 (WeNet's blank is always 0).
  int blank_id() const { return blank_id_; }
  // "<unk>"'s id, else -1 (no such token).
  int unk_id() const { return unk_id_; }
  // "<sos/eos>"'s id, else size() - 1 (old recipes' rule). A model's own setting (train.yaml
  // special_tokens, carried by the converter) takes precedence: see SetSosEosId.
  int sos_eos_id() const { return sos_eos_id_; }
  Status SetSosEosId(int id);

  // ids -> text, the way WeNet's Python does it: concatenate the tokens, turn each "▁" (U+2581,
  // the BPE word marker) into a space, and trim spaces at both ends. The blank and sos/eos ids are
  // skipped (they never belong in a transcript); "<unk>" is kept verbatim, so an unknown word stays
  // visible. Ids outside [0, size()) are skipped; the engine checks the model's vocab against
  // size() at load time, so they only occur on a mismatched table.
  // Char models without "▁" thus come out exactly as Triton's plain concatenation.
  // This is WeNet's Python rule (BpeTokenizer.tokens2text: "".join(tokens).replace("▁", " ")
  // .strip()), so for BPE and mixed CJK + BPE units: a space appears exactly where a "▁" was,
  // never inserted between a CJK character and an English word ("你好" "▁IT" "'" "S" "▁OKAY" "的"
  // -> "你好 IT'S OKAY的"), consecutive "▁" give consecutive spaces, and non-language symbols
  // ("<NOISE>") stay as they are. WeNet's C++ runtime (post_processor ProcessBlank) differs: it
  // collapses consecutive spaces and lower-cases the text; we follow the Python recipes'
  // transcripts, which the WER of the recipes is computed on.
  std::string Detokenize(std::span<const int> ids) const;

  // text -> ids, the inverse for phrases a user types (hotwords) and an LM's words.
  // With a BPE tokenizer (SetBpeTokenizer: a model directory with bpe.model) the text becomes
  // pieces exactly as WeNet's BpeTokenizer makes them (decode/bpe_tokenizer.h: upper-cased, CJK
  // characters and non-language symbols apart, the rest through sentencepiece), then ids.
  // Otherwise the text is split at whitespace and each word spelled with the longest units that
  // match, left to right. Words are joined the way the units mark them: a lone "▁" unit between
  // words (character models with a word marker), "▁" before each word (BPE units that start with
  // "▁", also when a bare "▁" unit exists too, as in WeNet's BPE unit lists), or nothing (units
  // without a marker, e.g. Chinese characters). A table without upper-case ASCII letters gets the
  // text in lower case.
  // InvalidArgument names a character (or BPE piece) no unit covers, and empty text. WeNet would
  // read such a piece as <unk>: a phrase or word with <unk> in it can only match what the model
  // cannot spell, so it is refused instead.
  StatusOr<std::vector<int>> Tokenize(std::string_view text) const;
  // Spells Tokenize's text with WeNet's BPE rules and `bpe`'s sentencepiece model; null: the
  // greedy spelling with the units.
  void SetBpeTokenizer(std::shared_ptr<const BpeTokenizer> bpe) { bpe_ = std::move(bpe); }
  const BpeTokenizer* bpe_tokenizer() const { return bpe_.get(); }
  // How this table marks word boundaries (see Tokenize).
  enum class WordMarking { kMarkerUnit, kMarkerPrefix, kNone };
  WordMarking word_marking() const { return word_marking_; }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int> ids_;
  int blank_id_ = 0;
  int unk_id_ = -1;
  int sos_eos_id_ = -1;
  WordMarking word_marking_ = WordMarking::kNone;
  bool lower_case_ = false;  // no unit has an upper-case ASCII letter
  size_t longest_unit_ = 0;  // in bytes
  std::shared_ptr<const BpeTokenizer> bpe_;
};

}  // namespace u2
