#include "u2/engine/hotwords.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "u2/decode/symbol_table.h"
#include "u2/util/option_registry.h"

namespace u2 {
namespace {

constexpr float kMaxBoost = 20.0f;

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// "phrase[:boost]" -> entry.
StatusOr<HotwordEntry> ParseEntry(std::string_view entry, float default_boost) {
  HotwordEntry out;
  out.boost = default_boost;
  std::string_view phrase = Trim(entry);
  if (const size_t colon = phrase.rfind(':'); colon != std::string_view::npos) {
    const std::string_view number = Trim(phrase.substr(colon + 1));
    float boost = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), boost);
    if (!number.empty() && ec == std::errc() && end == number.data() + number.size()) {
      if (!std::isfinite(boost) || std::fabs(boost) > kMaxBoost) {
        return InvalidArgument("hotword '" + std::string(entry) + "': boost must be in [-20, 20], got " +
                               std::string(number));
      }
      out.boost = boost;
      phrase = Trim(phrase.substr(0, colon));
    } else if (ec == std::errc::result_out_of_range) {
      return InvalidArgument("hotword '" + std::string(entry) + "': boost " + std::string(number) +
                             " is out of range");
    }
  }
  if (phrase.empty()) return InvalidArgument("hotword '" + std::string(entry) + "' has no phrase");
  out.phrase = std::string(phrase);
  return out;
}

}  // namespace

void HotwordsConfig::Register(OptionRegistry* r) {
  r->Add("hotwords-file", &file,
         "default hotword list, one 'phrase[:boost]' per line (requests may give their own)");
  r->Add("hotwords-boost", &boost, "hotword bonus per token (natural log) for phrases without their own");
  r->Add("max-hotwords", &max_phrases, "most phrases in one hotword list");
  r->Add("max-hotword-tokens", &max_phrase_tokens, "most model tokens in one hotword phrase");
}

Status HotwordsConfig::Validate() const {
  if (!std::isfinite(boost) || std::fabs(boost) > kMaxBoost) {
    return InvalidArgument("hotwords boost must be in [-20, 20], got " + std::to_string(boost));
  }
  if (max_phrases < 1 || max_phrases > 100000) {
    return InvalidArgument("max_hotwords must be in [1, 100000], got " + std::to_string(max_phrases));
  }
  if (max_phrase_tokens < 1 || max_phrase_tokens > 1024) {
    return InvalidArgument("max_hotword_tokens must be in [1, 1024], got " +
                           std::to_string(max_phrase_tokens));
  }
  if (cache_size < 0) return InvalidArgument("hotword cache size must be >= 0");
  return Status::Ok();
}

std::string HotwordsConfig::ToString() const {
  std::ostringstream os;
  os << "HotwordsConfig(file=" << (file.empty() ? "none" : file) << ", boost=" << boost
     << ", max_phrases=" << max_phrases << ", max_phrase_tokens=" << max_phrase_tokens
     << ", cache_size=" << cache_size << ")";
  return os.str();
}

StatusOr<std::vector<HotwordEntry>> ParseHotwordList(std::string_view text, float default_boost,
                                                     int max_phrases) {
  std::vector<HotwordEntry> entries;
  auto add = [&](std::string_view entry) -> Status {
    const std::string_view t = Trim(entry);
    if (t.empty() || t.front() == '#') return Status::Ok();
    if (static_cast<int>(entries.size()) >= max_phrases) {
      return InvalidArgument("too many hotwords: at most " + std::to_string(max_phrases) + " per list");
    }
    U2_ASSIGN_OR_RETURN(HotwordEntry e, ParseEntry(t, default_boost));
    entries.push_back(std::move(e));
    return Status::Ok();
  };
  const std::string_view trimmed = Trim(text);
  if (!trimmed.empty() && trimmed.front() == '[') {
    const nlohmann::json list = nlohmann::json::parse(trimmed, nullptr, /*allow_exceptions=*/false);
    if (list.is_discarded() || !list.is_array()) {
      return InvalidArgument("hotwords: a list starting with '[' must be a JSON array of strings");
    }
    for (const nlohmann::json& item : list) {
      if (!item.is_string())
        return InvalidArgument("hotwords: every element of the JSON array must be a string");
      U2_RETURN_IF_ERROR(add(item.get_ref<const std::string&>()));
    }
    return entries;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    U2_RETURN_IF_ERROR(add(text.substr(start, end - start)));
    start = end + 1;
  }
  return entries;
}

HotwordCompiler::HotwordCompiler(const SymbolTable& symbols, const HotwordsConfig& config)
    : symbols_(symbols), config_(config) {}

StatusOr<std::shared_ptr<const ContextGraph>> HotwordCompiler::Build(std::string_view list) const {
  U2_ASSIGN_OR_RETURN(std::vector<HotwordEntry> entries,
                      ParseHotwordList(list, config_.boost, config_.max_phrases));
  if (entries.empty()) return std::shared_ptr<const ContextGraph>();
  std::vector<ContextPhrase> phrases;
  phrases.reserve(entries.size());
  for (const HotwordEntry& e : entries) {
    auto tokens = symbols_.Tokenize(e.phrase);
    if (!tokens.ok()) return tokens.status().WithContext("hotword '" + e.phrase + "'");
    if (static_cast<int>(tokens->size()) > config_.max_phrase_tokens) {
      return InvalidArgument("hotword '" + e.phrase.substr(0, 80) + "' is " + std::to_string(tokens->size()) +
                             " tokens long; the limit is " + std::to_string(config_.max_phrase_tokens));
    }
    phrases.push_back({std::move(*tokens), e.boost});
  }
  // Character units with a word marker: whole words only (decode/context_graph.h).
  int separator = -1;
  if (symbols_.word_marking() == SymbolTable::WordMarking::kMarkerUnit)
    separator = *symbols_.Id("\xE2\x96\x81");
  return ContextGraph::Build(phrases, separator);
}

StatusOr<std::shared_ptr<const ContextGraph>> HotwordCompiler::Compile(std::string_view list) const {
  if (config_.cache_size > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if (const auto it = index_.find(list); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  U2_ASSIGN_OR_RETURN(std::shared_ptr<const ContextGraph> graph, Build(list));
  if (config_.cache_size > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.find(list) == index_.end()) {
      lru_.emplace_front(std::string(list), graph);
      index_.emplace(lru_.front().first, lru_.begin());
      while (static_cast<int>(lru_.size()) > config_.cache_size) {
        index_.erase(lru_.back().first);
        lru_.pop_back();
      }
    }
  }
  return graph;
}

}  // namespace u2
