// Character and word error rates of transcripts, computed with the rules of WeNet's own scoring script.
//
// The script is tools/compute-wer.py of wenet-e2e/wenet, run the way WeNet's recipes run it
// (examples/aishell/s0/run.sh and examples/librispeech/s0/run.sh: `compute-wer.py --char=1 --v=1
// REF HYP`, with its defaults: case-insensitive, tags removed, no ignore or split file).
// Three unit modes, one normalization and one alignment:
//  * ScoringUnit::kLetter, the CER this project reports (CharacterErrors): letter-level CER, i.e.
//    WeNet's character scoring for CJK, and per letter for alphabetic text, which is how this
//    project reports CER for character-unit English models (docs/accuracy.md, the train/ reports,
//    the tests' bounds). Exactly the --char=1 rules below except that every kept character is a
//    unit of its own, ASCII included: "Hello, world!" is H E L L O W O R L D ("," and "!" are in
//    the script's list, so skipped), "don't" is D O N ' T, "我用iPhone" is 我 用 I P H O N E. A
//    '<' still takes the span --char=1 gives it (to the next '>', or to the end of the ASCII run),
//    so "<unk>" is removed whole. On text with no ASCII character but space, tab, CR and LF
//    (Chinese, Japanese, ...) the units are kCharacter's.
//  * ScoringUnit::kCharacter, compute-wer.py --char=1 exactly (WenetCharErrors): characters of
//    category Lo (letters without case: CJK ideographs, kana, hangul, ...) are one unit each. Any
//    other character starts a unit that runs on over the ASCII characters after it up to a space,
//    tab, CR, LF or non-ASCII character; a unit that starts with '<' also ends after the next '>',
//    so "<unk><noise>" is two. So an ASCII word is one unit ("我用iPhone手机" is 我 用 IPHONE 手 机;
//    for English text this is what WeNet's LibriSpeech recipe reports as WER), "don't" is one unit,
//    and punctuation inside or after a word stays part of it ("hello," is one unit). Skipped where a
//    unit would start: space, tab, CR, LF, space separators (category Zs, e.g. U+3000) and the
//    script's punctuation list ! , ? 、 。 ！ ， ； ？ ： 「 」 ︰ 『 』 《 》 (only there: "a,b" is one
//    unit with --char=1; with kLetter every character starts a unit, so the list is skipped
//    everywhere).
//  * ScoringUnit::kWord, compute-wer.py --char=0 (WordErrors, the WER: WeNet's word scoring): the
//    text split at Python's whitespace (str.split()).
//  * Then each unit is upper-cased, every "<...>" in it is deleted (from '<' to the next '>', or to
//    the unit's end), and a unit left empty is dropped: "<unk>" and "<noise>" count nowhere.
//  * Alignment: edit distance with substitution, deletion and insertion cost 1. Where alignments
//    of equal cost differ in their S/D/I split, the script's choice is kept (at each cell a deletion
//    first, then an insertion, then a match or substitution, each only if strictly cheaper), so
//    S, D and I equal the script's, not just their sum: "A B" vs "B A" is D=1 I=1, not S=2.
//  * N counts the reference's units; the rate is (S + D + I) / N, and 0 when N is 0 (insertions
//    into an empty reference still count in I).
// kCharacter and kWord counts equal the script's "Overall" counts; kLetter's equal those of the
// script with that one change (tools/check_scoring_cases.py checks the tests' cases both ways).
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
  kLetter,     // the CER's: --char=1 with every kept character a unit (letters of English words too)
  kCharacter,  // compute-wer.py --char=1: Lo characters alone, other runs (ASCII words) whole
  kWord,       // compute-wer.py --char=0: whitespace-separated words
};

// The units `text` (UTF-8, without the utterance key) is scored in, normalized as described above:
// upper-cased, tags removed, empty units dropped.
std::vector<std::string> ScoringUnits(std::string_view text, ScoringUnit unit);
// Aligns two unit sequences with compute-wer.py's costs and choices among equal-cost alignments.
// O(|ref|*|hyp|) time, O(|hyp|) memory.
ErrorCounts AlignUnits(const std::vector<std::string>& ref, const std::vector<std::string>& hyp);

// The CER that TranscriptScorer, u2recognize and u2client print: letter-level (kLetter). For
// Chinese the counts of compute-wer.py --char=1; for English one unit per letter.
ErrorCounts CharacterErrors(std::string_view ref, std::string_view hyp);
// compute-wer.py --char=1 counts exactly (kCharacter): ASCII words whole.
ErrorCounts WenetCharErrors(std::string_view ref, std::string_view hyp);
// The WER: compute-wer.py --char=0 counts (whitespace-separated words).
ErrorCounts WordErrors(std::string_view ref, std::string_view hyp);
// Heuristic for "report WER too": at least half of the non-space code points are ASCII letters
// or digits (English and the like, not Chinese/Japanese). False for empty text.
bool IsSpaceSeparatedLanguage(std::string_view text);

}  // namespace u2
