// Text -> BPE pieces the way WeNet's Python does it (wenet/text/bpe_tokenizer.py BpeTokenizer
// .text2tokens with tokenize_utils.py tokenize_by_bpe_model), for the text people type into a BPE
// model: hotword phrases and an LM's words (SymbolTable::Tokenize).
//
// WeNet's steps, restated:
//   1. strip whitespace at both ends (Python's whitespace: Unicode spaces included);
//   2. with a non-language symbol list (non_lang_syms.txt): upper-case the text and split it at
//      "[..]", "<..>" and "{..}"; a part that is one of the listed symbols is a token as it is;
//   3. every other part: upper-case, split out each CJK character (U+4E00..U+9FFF) as a token of
//      its own, and give each remaining stretch to sentencepiece's Encode (encode_as_pieces);
//      parts and stretches that are only whitespace are dropped.
// Upper-casing is Python's str.upper: full Unicode case mapping ("ß" -> "SS"), done here with the
// C.UTF-8 locale's mapping and Unicode's one-to-many special cases (ASCII only where the C.UTF-8
// locale is missing).
//
// sentencepiece itself is Debian's libsentencepiece behind our module libu2_sentencepiece.so
// (decode/sentencepiece/u2_sentencepiece.h says why it is a module), loaded at run time.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

struct BpeTokenizerOptions {
  // WeNet's non-language symbols file (model dir's non_lang_syms.txt), one symbol a line; empty:
  // none (then "<NOISE>" is spelled with pieces like any other text, as WeNet does without one).
  std::string non_lang_syms;
  // The module file. Empty: $U2_SENTENCEPIECE_MODULE when set, else libu2_sentencepiece.so in
  // ../lib or the folder of the running program (an installed layout, build/apps -> build/lib),
  // else where this build put it.
  std::string module;
  // How the module is kept apart from the program's own libraries. kAuto: kDeepBind, except in
  // sanitizer builds (the sanitizers refuse RTLD_DEEPBIND), which use kNamespace.
  // kDeepBind: dlopen(RTLD_LOCAL | RTLD_DEEPBIND), sentencepiece binds to its own symbols first.
  // kNamespace: dlmopen(LM_ID_NEWLM), a link namespace of its own (with its own C/C++ runtime).
  enum class Isolation { kAuto, kDeepBind, kNamespace };
  Isolation isolation = Isolation::kAuto;
};

class BpeTokenizer {
 public:
  // Loads the sentencepiece model at `model_path`. Errors: no module found (NotFound, naming the
  // places looked at), a module that cannot be loaded or is of another version
  // (FailedPrecondition), a missing model or symbols file (NotFound), a model sentencepiece
  // refuses (InvalidArgument, with its message).
  static StatusOr<std::shared_ptr<const BpeTokenizer>> Load(const std::string& model_path,
                                                            const BpeTokenizerOptions& options = {});
  ~BpeTokenizer();
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // WeNet's text2tokens (above). An empty result for text that is only whitespace;
  // InvalidArgument for text that is not UTF-8. Thread-safe.
  StatusOr<std::vector<std::string>> Pieces(std::string_view text) const;

  // The module file in use.
  const std::string& module_path() const;

 private:
  struct Impl;
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace u2
