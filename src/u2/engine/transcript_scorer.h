// Accumulates CER (and WER for space-separated languages) over a test set; shared by
// u2recognize and u2client so both score exactly the same way (u2/util/error_rate.h). CER is
// letter-level (CharacterErrors: WeNet's tools/compute-wer.py --char=1 rules with every character a
// unit, so CJK characters and the letters of English words alike), WER is `compute-wer.py --char=0`
// (WordErrors), over the utterances scored.
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
  // e.g. "CER 3.21 % (N=405 C=392 S=10 D=2 I=1) | WER 9.50 % (N=... ) over 12 utterances": each
  // rate and its counts in the layout of compute-wer.py's "Overall ->" line.
  std::string Summary() const;

 private:
  std::unordered_map<std::string, std::string> references_;
  ErrorCounts chars_, words_;
  int num_scored_ = 0;
  bool space_separated_ = false;
};

}  // namespace u2
