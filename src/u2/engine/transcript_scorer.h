// Accumulates CER (and WER for space-separated languages) over a test set; shared by
// u2recognize and u2client so both score exactly the same way.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "u2/util/error_rate.h"
#include "u2/util/status.h"

namespace u2 {

class TranscriptScorer {
 public:
  // Loads a Kaldi-style text file: "utt transcript" per line.
  static StatusOr<TranscriptScorer> FromTextFile(const std::string& path);

  // Scores one hypothesis; returns false if the reference has no entry for `utt`.
  bool Add(const std::string& utt, const std::string& hypothesis);

  const ErrorCounts& char_errors() const { return chars_; }
  const ErrorCounts& word_errors() const { return words_; }
  int num_scored() const { return num_scored_; }
  bool report_wer() const { return space_separated_; }
  // e.g. "CER 3.21 % (S=10 D=2 I=1 N=405, 12 utts) | WER 9.50 % (...)"
  std::string Summary() const;

 private:
  std::unordered_map<std::string, std::string> references_;
  ErrorCounts chars_, words_;
  int num_scored_ = 0;
  bool space_separated_ = false;
};

}  // namespace u2
