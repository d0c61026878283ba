// Character and word error rates of transcripts, computed as WeNet's own scoring script computes them.
//
// The script is tools/compute-wer.py of wenet-e2e/wenet, run the way WeNet's recipes run it
// (examples/aishell/s0/run.sh and examples/librispeech/s0/run.sh: `compute-wer.py --char=1 --v=1
// REF HYP`, with its defaults: case-insensitive, tags removed, no ignore or split file).
// CharacterErrors gives that command's "Overall" counts, WordErrors those of the same command with
// --char=0. Followed, in detail:
//  * Units with --char=1 (ScoringUnit::kCharacter): characters of category Lo (letters without
//    case: CJK ideographs, kana, hangul, ...) are one unit each. Any other character starts a unit
//    that runs on over the ASCII characters after it up to a space, tab, CR, LF or non-ASCII
//    character; a unit that starts with '<' also ends after the next '>', so "<unk><noise>" is two.
//    So an ASCII word is one unit ("我用iPhone" is 我 用 IPHONE), "don't" is one unit, and
//    punctuation inside or after a word stays part of it ("hello," is one unit). Skipped where a
//    unit would start: space, tab, CR, LF, space separators (category Zs, e.g. U+3000) and the
//    script's punctuation list ! , ? 、 。 ！ ， ； ？ ： 「 」 ︰ 『 』 《 》 (only there: "a,b" is one
//    unit).
//  * Units with --char=0 (ScoringUnit::kWord): the text split at Python's whitespace (str.split()).
//  * Then each unit is upper-cased, every "<...>" in it is deleted (from '<' to the next '>', or to
//    the unit's end), and a unit left empty is dropped: "<unk>" and "<noise>" count nowhere.
//  * Alignment: edit distance with substitution, deletion and insertion cost 1. Where alignments
//    of equal cost differ in their S/D/I split, the script's choice is kept (at each cell a deletion
//    first, then an insertion, then a match or substitution, each only if strictly cheaper), so
//    S, D and I equal the script's, not just their sum: "A B" vs "B A" is D=1 I=1, not S=2.
//  * N counts the reference's units; the rate is (S + D + I) / N, and 0 when N is 0 (insertions
//    into an empty reference still count in I).
// Deliberate differences: only ASCII letters are upper-cased (the script uses Python's str.upper(),
// which also folds é, ß, Greek, ...); categories come from Unicode 14.0 (tools/gen_unicode_tables.py,
// the script uses its Python's unicodedata) and unassigned code points (category Cn), which the
// script skips, are kept like any other character; bytes that are not UTF-8 are each a character
// that is neither Lo nor a space (the script cannot read such a file), and control characters
// inside a unit are kept (the script stops with an error on them: it looks up their Unicode names).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace u2 {

struct ErrorCounts {
  int64_t substitutions = 0;
  int64_t deletions = 0;   // reference units missing from the hypothesis
  int64_t insertions = 0;  // hypothesis units not in the reference
  int64_t reference_length = 0;

  int64_t errors() const { return substitutions + deletions + insertions; }
  int64_t corrects() const { return reference_length - substitutions - deletions; }
  // errors / reference_length; 0 with an empty reference, as compute-wer.py reports it.
  double Rate() const;
  // errors * 100 / reference_length computed as compute-wer.py computes the figure it prints; 0
  // with an empty reference.
  double Percent() const;
  ErrorCounts& operator+=(const ErrorCounts& other);
};

enum class ScoringUnit {
  kCharacter,  // compute-wer.py --char=1: Lo characters alone, other runs (ASCII words) whole
  kWord,       // compute-wer.py --char=0: whitespace-separated words
};

// The units compute-wer.py scores `text` in (UTF-8, without the utterance key), normalized as
// described above: upper-cased, tags removed, empty units dropped.
std::vector<std::string> ScoringUnits(std::string_view text, ScoringUnit unit);
// Aligns two unit sequences with compute-wer.py's costs and choices among equal-cost alignments.
// O(|ref|*|hyp|) time, O(|hyp|) memory.
ErrorCounts AlignUnits(const std::vector<std::string>& ref, const std::vector<std::string>& hyp);

// The CER: compute-wer.py --char=1 counts. For Chinese these are characters; ASCII words are
// kept whole, so for English text this is what WeNet's English recipes report as WER.
ErrorCounts CharacterErrors(std::string_view ref, std::string_view hyp);
// The WER: compute-wer.py --char=0 counts (whitespace-separated words).
ErrorCounts WordErrors(std::string_view ref, std::string_view hyp);
// Heuristic for "report WER too": at least half of the non-space code points are ASCII letters
// or digits (English and the like, not Chinese/Japanese). False for empty text.
bool IsSpaceSeparatedLanguage(std::string_view text);

}  // namespace u2
