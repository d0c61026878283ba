// Hotword lists as people write them -> context graphs over a model's tokens (decode/context_graph.h).
//
// A list is one phrase per line, each optionally followed by ":boost" (natural-log units per
// token; the default boost otherwise), or a JSON array of such strings:
//     u2serve
//     kubernetes cluster:4.5
//     ["new york:2", "wenet"]
// Blank lines and lines starting with '#' are skipped. Phrases are spelled with the model's units
// (SymbolTable::Tokenize; a BPE model's as WeNet's BpeTokenizer spells text): a character or piece
// the units do not cover is an error naming it.
//
// Compiled graphs are cached (least recently used out), so a client sending the same list with
// every request pays for compiling it once, and requests with the same list share one graph.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "u2/decode/context_graph.h"
#include "u2/util/status.h"

namespace u2 {

class OptionRegistry;
class SymbolTable;

struct HotwordsConfig {
  std::string file;    // a default list (one phrase[:boost] per line); empty: none
  float boost = 2.0f;  // per token, for phrases without their own (chosen on dev: docs/language-models.md)
  int max_phrases = 1024;      // per list
  int max_phrase_tokens = 64;  // per phrase, in model tokens
  int cache_size = 64;         // compiled lists kept

  void Register(OptionRegistry* r);
  Status Validate() const;
  std::string ToString() const;
};

// One entry of a list.
struct HotwordEntry {
  std::string phrase;
  float boost = 0;
};

// Parses a list (see above). Errors name the entry: a boost that is not a number or outside
// [-20, 20], more than `max_phrases` entries, malformed JSON.
StatusOr<std::vector<HotwordEntry>> ParseHotwordList(std::string_view text, float default_boost,
                                                     int max_phrases);

class HotwordCompiler {
 public:
  // `symbols` must outlive the compiler.
  HotwordCompiler(const SymbolTable& symbols, const HotwordsConfig& config);

  // The graph of `list` (cached). An empty list (nothing but blanks and comments) gives null:
  // no biasing. Thread-safe.
  StatusOr<std::shared_ptr<const ContextGraph>> Compile(std::string_view list) const;
  const HotwordsConfig& config() const { return config_; }

 private:
  StatusOr<std::shared_ptr<const ContextGraph>> Build(std::string_view list) const;

  const SymbolTable& symbols_;
  HotwordsConfig config_;
  mutable std::mutex mu_;
  // Most recently used first.
  mutable std::list<std::pair<std::string, std::shared_ptr<const ContextGraph>>> lru_;
  mutable std::unordered_map<std::string_view, decltype(lru_)::iterator> index_;
};

}  // namespace u2
