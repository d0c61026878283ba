// Kaldi-style two-column list files: "key value..." per line (wav.scp: utt path; text: utt transcript).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

struct TableEntry {
  std::string key;
  std::string value;  // the rest of the line after the first run of whitespace, trailing space trimmed
};

// Blank lines are skipped; a line with a key and no value is an error for wav.scp-style files
// (allow_empty_value = false) and an empty transcript for text files (allow_empty_value = true).
// Duplicate keys are an error naming both lines.
StatusOr<std::vector<TableEntry>> ReadTableFile(const std::string& path, bool allow_empty_value);

// A wav.scp: "utt path" per line. A relative path is taken relative to the folder of the list
// itself, so a data set's list works from any working directory.
StatusOr<std::vector<TableEntry>> ReadWavScp(const std::string& path);

}  // namespace u2
