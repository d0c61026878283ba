#include "u2/engine/transcript_scorer.h"

#include <cstdio>

#include "u2/util/table_file.h"

namespace u2 {

StatusOr<TranscriptScorer> TranscriptScorer::FromTextFile(const std::string& path) {
  U2_ASSIGN_OR_RETURN(std::vector<TableEntry> entries, ReadTableFile(path, /*allow_empty_value=*/true));
  TranscriptScorer scorer;
  int spaced = 0;
  for (auto& e : entries) {
    if (IsSpaceSeparatedLanguage(e.value)) ++spaced;
    scorer.references_.emplace(std::move(e.key), std::move(e.value));
  }
  // WER is reported when most references look like a space-separated language.
  scorer.space_separated_ = !entries.empty() && 2 * spaced > static_cast<int>(entries.size());
  return scorer;
}

bool TranscriptScorer::Add(const std::string& utt, const std::string& hypothesis) {
  auto it = references_.find(utt);
  if (it == references_.end()) return false;
  chars_ += CharacterErrors(it->second, hypothesis);
  words_ += WordErrors(it->second, hypothesis);
  ++num_scored_;
  return true;
}

namespace {
std::string Describe(const char* name, const ErrorCounts& c) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s %.2f %% (N=%lld C=%lld S=%lld D=%lld I=%lld)", name, c.Percent(),
                static_cast<long long>(c.reference_length), static_cast<long long>(c.corrects()),
                static_cast<long long>(c.substitutions), static_cast<long long>(c.deletions),
                static_cast<long long>(c.insertions));
  return buf;
}
}  // namespace

std::string TranscriptScorer::Summary() const {
  std::string s = Describe("CER", chars_);
  if (space_separated_) s += " | " + Describe("WER", words_);
  s += " over " + std::to_string(num_scored_) + " utterances";
  return s;
}

}  // namespace u2
