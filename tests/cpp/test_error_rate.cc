// CER/WER with WeNet's tools/compute-wer.py rules. Every WenetCharErrors and WordErrors count below is
// what the real script printed for the same reference and hypothesis ("WER: ... N= C= S= D= I=" per
// utterance, "Overall -> ..." for the test set), run as docs/accuracy.md ("How CER and WER are
// computed") says: `compute-wer.py --char=1 --v=1 ref hyp` (WeNet's recipes) and --char=0. The
// CharacterErrors counts (the letter-level CER) are those of the same script with every kept
// character a unit; tools/check_scoring_cases.py re-checks all three kinds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "u2/engine/transcript_scorer.h"
#include "u2/util/error_rate.h"

namespace u2 {
namespace {

void ExpectCounts(const ErrorCounts& c, int64_t s, int64_t d, int64_t i, int64_t n) {
  EXPECT_EQ(c.substitutions, s);
  EXPECT_EQ(c.deletions, d);
  EXPECT_EQ(c.insertions, i);
  EXPECT_EQ(c.reference_length, n);
}

using Units = std::vector<std::string>;

TEST(ScoringUnits, CharacterModeKeepsAsciiWordsWholeAndSplitsCjk) {
  EXPECT_EQ(ScoringUnits("我用iPhone手机", ScoringUnit::kCharacter),
            (Units{"我", "用", "IPHONE", "手", "机"}));
  // Punctuation is part of the word it follows; the script's list is skipped only where a unit starts.
  EXPECT_EQ(ScoringUnits("hello, world!", ScoringUnit::kCharacter), (Units{"HELLO,", "WORLD!"}));
  EXPECT_EQ(ScoringUnits("hello , world !", ScoringUnit::kCharacter), (Units{"HELLO", "WORLD"}));
  EXPECT_EQ(ScoringUnits("你好，世界。", ScoringUnit::kCharacter), (Units{"你", "好", "世", "界"}));
  // Curly quotes are not in the list (and not Lo): each is a unit of its own.
  EXPECT_EQ(ScoringUnits("他说“你好”", ScoringUnit::kCharacter), (Units{"他", "说", "“", "你", "好", "”"}));
  // U+3000 (ideographic space, Zs) separates; "<a" ... "b>" is not a tag across a space.
  EXPECT_EQ(ScoringUnits("你\u3000好", ScoringUnit::kCharacter), (Units{"你", "好"}));
  EXPECT_EQ(ScoringUnits("a<b c>d", ScoringUnit::kCharacter), (Units{"A", "C>D"}));
  EXPECT_EQ(ScoringUnits("don't", ScoringUnit::kCharacter), (Units{"DON'T"}));
}

TEST(ScoringUnits, WordModeSplitsAtWhitespaceOnly) {
  EXPECT_EQ(ScoringUnits("我用iPhone手机", ScoringUnit::kWord), (Units{"我用IPHONE手机"}));
  EXPECT_EQ(ScoringUnits("hello , world !", ScoringUnit::kWord), (Units{"HELLO", ",", "WORLD", "!"}));
  // Python's str.split() whitespace: U+3000 and U+0085 too.
  EXPECT_EQ(ScoringUnits("a\u3000b\u0085c\td", ScoringUnit::kWord), (Units{"A", "B", "C", "D"}));
}

TEST(ScoringUnits, TagsAreRemoved) {
  for (ScoringUnit mode : {ScoringUnit::kCharacter, ScoringUnit::kWord}) {
    EXPECT_EQ(ScoringUnits("<unk> hello <noise>", mode), (Units{"HELLO"}));
    EXPECT_EQ(ScoringUnits("hello<unk>world", mode), (Units{"HELLOWORLD"}));
    EXPECT_EQ(ScoringUnits("<unk><noise>hi", mode), (Units{"HI"}));
    EXPECT_EQ(ScoringUnits("hello <unk", mode), (Units{"HELLO"}));  // an unclosed tag runs to the end
    EXPECT_EQ(ScoringUnits("<UNK>", mode), (Units{}));
  }
  // With --char=1 a unit starting with '<' ends at its '>', so the comma after it starts a unit
  // and is skipped; with --char=0 it stays.
  EXPECT_EQ(ScoringUnits("<unk>,hello", ScoringUnit::kCharacter), (Units{"HELLO"}));
  EXPECT_EQ(ScoringUnits("<unk>,hello", ScoringUnit::kWord), (Units{",HELLO"}));
}

// kLetter: the --char=1 rules with every kept character a unit of its own, ASCII letters too.
TEST(ScoringUnits, LetterModeSplitsAsciiWordsIntoLetters) {
  EXPECT_EQ(ScoringUnits("Hi you", ScoringUnit::kLetter), (Units{"H", "I", "Y", "O", "U"}));
  EXPECT_EQ(ScoringUnits("我用iPhone手机", ScoringUnit::kLetter),
            (Units{"我", "用", "I", "P", "H", "O", "N", "E", "手", "机"}));
  // Every character starts a unit, so the script's list (! , ?) is skipped inside words too;
  // other punctuation ('.', the apostrophe) is a unit.
  EXPECT_EQ(ScoringUnits("ok, go!", ScoringUnit::kLetter), (Units{"O", "K", "G", "O"}));
  EXPECT_EQ(ScoringUnits("a,b?c", ScoringUnit::kLetter), (Units{"A", "B", "C"}));
  EXPECT_EQ(ScoringUnits("don't.", ScoringUnit::kLetter), (Units{"D", "O", "N", "'", "T", "."}));
  // Tab, CR, LF and U+3000 separate; nothing else of Python's whitespace is a separator here.
  EXPECT_EQ(ScoringUnits("a\tb\r\nc\u3000d", ScoringUnit::kLetter), (Units{"A", "B", "C", "D"}));
}

TEST(ScoringUnits, LetterModeRemovesTagsWhole) {
  EXPECT_EQ(ScoringUnits("<unk> hi <noise>", ScoringUnit::kLetter), (Units{"H", "I"}));
  EXPECT_EQ(ScoringUnits("hi<unk>yo", ScoringUnit::kLetter), (Units{"H", "I", "Y", "O"}));
  EXPECT_EQ(ScoringUnits("<unk><noise>hi", ScoringUnit::kLetter), (Units{"H", "I"}));
  EXPECT_EQ(ScoringUnits("<UNK>", ScoringUnit::kLetter), (Units{}));
  EXPECT_EQ(ScoringUnits("你<unk>好", ScoringUnit::kLetter), (Units{"你", "好"}));
  // An unclosed '<' runs to the end of its ASCII run, as with --char=1: "<b" goes, "c>d" stays.
  EXPECT_EQ(ScoringUnits("hi <unk", ScoringUnit::kLetter), (Units{"H", "I"}));
  EXPECT_EQ(ScoringUnits("a<b c>d", ScoringUnit::kLetter), (Units{"A", "C", ">", "D"}));
  EXPECT_EQ(ScoringUnits("a<b你c", ScoringUnit::kLetter), (Units{"A", "你", "C"}));
}

// Without ASCII letters the letter-level units are exactly WeNet's --char=1 units.
TEST(ScoringUnits, LetterModeEqualsCharacterModeOnCjk) {
  for (const char* text :
       {"今天天气很好", "你好，世界。", "他说“你好”", "，你好", "你\u3000好", "「こんにちは」《书》",
        "한국어 문장", "ＡＢＣ１２３", "<unk>你好<noise>", "我 们 　 走"}) {
    const Units letters = ScoringUnits(text, ScoringUnit::kLetter);
    EXPECT_FALSE(letters.empty()) << text;
    EXPECT_EQ(letters, ScoringUnits(text, ScoringUnit::kCharacter)) << text;
  }
  // And not on English, where --char=1 keeps words whole.
  EXPECT_NE(ScoringUnits("hello", ScoringUnit::kLetter), ScoringUnits("hello", ScoringUnit::kCharacter));
}

// English: case, punctuation, apostrophes, tags. The --char=1 (WenetCharErrors) and --char=0
// counts are the script's.
TEST(ErrorRates, EnglishAsComputeWer) {
  ExpectCounts(WenetCharErrors("HELLO WORLD", "hello world"), 0, 0, 0, 2);
  ExpectCounts(WordErrors("HELLO WORLD", "hello world"), 0, 0, 0, 2);
  ExpectCounts(WenetCharErrors("hello world", "hello, world!"), 2, 0, 0, 2);
  ExpectCounts(WordErrors("hello world", "hello, world!"), 2, 0, 0, 2);
  ExpectCounts(WenetCharErrors("hello world", "hello , world !"), 0, 0, 0, 2);
  ExpectCounts(WordErrors("hello world", "hello , world !"), 0, 0, 2, 2);
  ExpectCounts(WenetCharErrors("DON'T stop", "don't stop"), 0, 0, 0, 2);
  ExpectCounts(WenetCharErrors("don't stop", "dont stop"), 1, 0, 0, 2);
  ExpectCounts(WordErrors("don't stop", "dont stop"), 1, 0, 0, 2);
  ExpectCounts(WenetCharErrors("a,b", "a b"), 1, 0, 1, 1);
  ExpectCounts(WenetCharErrors("<unk> hello <noise>", "hello"), 0, 0, 0, 1);
  ExpectCounts(WordErrors("<unk> hello <noise>", "hello"), 0, 0, 0, 1);
  ExpectCounts(WenetCharErrors("hello<unk>world", "helloworld"), 0, 0, 0, 1);
  ExpectCounts(WenetCharErrors("a<b c>d", "a c>d"), 0, 0, 0, 2);
}

TEST(ErrorRates, MixedChineseEnglishAsComputeWer) {
  ExpectCounts(WenetCharErrors("我用iPhone手机", "我用 iphone 手机"), 0, 0, 0, 5);
  ExpectCounts(WordErrors("我用iPhone手机", "我用 iphone 手机"), 1, 0, 2, 1);
  ExpectCounts(WenetCharErrors("OK好的", "ok 好的"), 0, 0, 0, 3);
  ExpectCounts(WenetCharErrors("今天天气很好", "今天天汽很好"), 1, 0, 0, 6);
  ExpectCounts(WenetCharErrors("你好，世界。", "你好世界"), 0, 0, 0, 4);
  ExpectCounts(WenetCharErrors("他说“你好”", "他说你好"), 0, 2, 0, 6);
  ExpectCounts(WenetCharErrors("，你好", "你好"), 0, 0, 0, 2);
  ExpectCounts(WenetCharErrors("你\u3000好", "你好"), 0, 0, 0, 2);
  ExpectCounts(WordErrors("你\u3000好", "你好"), 1, 1, 0, 2);
  // 你好世界 -> 你世界啊: delete 好, insert 啊.
  const ErrorCounts c = WenetCharErrors("你好世界", "你世界啊");
  ExpectCounts(c, 0, 1, 1, 4);
  EXPECT_DOUBLE_EQ(c.Rate(), 0.5);
}

TEST(ErrorRates, EmptySides) {
  // compute-wer.py: "WER: 0.00 % N=0 C=0 S=0 D=0 I=2": the rate of an empty reference is 0.
  const ErrorCounts ins = WenetCharErrors("", "a b");
  ExpectCounts(ins, 0, 0, 2, 0);
  EXPECT_EQ(ins.Rate(), 0.0);
  EXPECT_EQ(ins.Percent(), 0.0);
  ExpectCounts(WordErrors("", "a b"), 0, 0, 2, 0);
  const ErrorCounts del = WenetCharErrors("a b", "");
  ExpectCounts(del, 0, 2, 0, 2);
  EXPECT_DOUBLE_EQ(del.Rate(), 1.0);
  ExpectCounts(WordErrors("a b", ""), 0, 2, 0, 2);
  ExpectCounts(WenetCharErrors("<unk>", ""), 0, 0, 0, 0);  // a tag alone is an empty reference
  ExpectCounts(WenetCharErrors("", "  "), 0, 0, 0, 0);
  ExpectCounts(WordErrors("", ""), 0, 0, 0, 0);
}

// The CER (CharacterErrors, kLetter): one unit per letter of English words, per CJK character.
TEST(ErrorRates, LetterLevelEnglish) {
  ExpectCounts(CharacterErrors("the cat", "the bat"), 1, 0, 0, 6);          // --char=1: 1 of 2 words
  ExpectCounts(CharacterErrors("hello world", "helo world"), 0, 1, 0, 10);  // one letter missing
  ExpectCounts(CharacterErrors("hello world", "helloo world"), 0, 0, 1, 10);
  ExpectCounts(CharacterErrors("sat", "sit on"), 1, 0, 2, 3);
  // Spaces are not units: a missing word gap costs nothing, unlike with --char=1 (S=1 D=1).
  ExpectCounts(CharacterErrors("hello world", "helloworld"), 0, 0, 0, 10);
  // The S/D/I split is the script's: "ab" vs "ba" is D=1 I=1, as "a b" vs "b a" with --char=1.
  ExpectCounts(CharacterErrors("ab", "ba"), 0, 1, 1, 2);
  ExpectCounts(CharacterErrors("acc", "cab"), 1, 1, 1, 3);
}

TEST(ErrorRates, LetterLevelCaseTagsAndPunctuation) {
  ExpectCounts(CharacterErrors("HELLO WORLD", "hello world"), 0, 0, 0, 10);
  ExpectCounts(CharacterErrors("Don't Stop", "don't stop"), 0, 0, 0, 9);
  ExpectCounts(CharacterErrors("don't stop", "dont stop"), 0, 1, 0, 9);  // the apostrophe is a unit
  ExpectCounts(CharacterErrors("<unk> hello <noise>", "hello"), 0, 0, 0, 5);
  ExpectCounts(CharacterErrors("hello", "<unk>hello<noise>"), 0, 0, 0, 5);
  ExpectCounts(CharacterErrors("hello<unk>world", "helloworld"), 0, 0, 0, 10);
  ExpectCounts(CharacterErrors("hello world", "hello, world!"), 0, 0, 0, 10);  // ! , ? skipped
  ExpectCounts(CharacterErrors("hello world", "hello. world?"), 0, 0, 1, 10);  // '.' is not
  ExpectCounts(CharacterErrors("a,b", "a b"), 0, 0, 0, 2);
}

TEST(ErrorRates, LetterLevelMixedChineseEnglish) {
  ExpectCounts(CharacterErrors("我用iPhone手机", "我用 iphone 手机"), 0, 0, 0, 10);
  ExpectCounts(CharacterErrors("我用iPhone手机", "我用iPhane手机"), 1, 0, 0, 10);
  ExpectCounts(CharacterErrors("我用iPhone手机", "我用Phone手机"), 0, 1, 0, 10);
  ExpectCounts(CharacterErrors("OK好的", "ok 好的"), 0, 0, 0, 4);
  ExpectCounts(CharacterErrors("OK好的", "OK好"), 0, 1, 0, 4);
}

// On Chinese the CER is compute-wer.py --char=1's (the same pairs as above).
TEST(ErrorRates, LetterLevelChineseAsComputeWer) {
  ExpectCounts(CharacterErrors("今天天气很好", "今天天汽很好"), 1, 0, 0, 6);
  ExpectCounts(CharacterErrors("你好，世界。", "你好世界"), 0, 0, 0, 4);
  ExpectCounts(CharacterErrors("他说“你好”", "他说你好"), 0, 2, 0, 6);
  ExpectCounts(CharacterErrors("你\u3000好", "你好"), 0, 0, 0, 2);
  ExpectCounts(CharacterErrors("你好世界", "你世界啊"), 0, 1, 1, 4);
}

TEST(ErrorRates, LetterLevelEmptySides) {
  const ErrorCounts ins = CharacterErrors("", "ab c");
  ExpectCounts(ins, 0, 0, 3, 0);
  EXPECT_EQ(ins.Rate(), 0.0);
  EXPECT_EQ(ins.Percent(), 0.0);
  const ErrorCounts del = CharacterErrors("ab c", "");
  ExpectCounts(del, 0, 3, 0, 3);
  EXPECT_DOUBLE_EQ(del.Percent(), 100.0);
  ExpectCounts(CharacterErrors("<unk>", ""), 0, 0, 0, 0);
  ExpectCounts(CharacterErrors("", " , "), 0, 0, 0, 0);
  ExpectCounts(CharacterErrors("", ""), 0, 0, 0, 0);
}

// Where alignments of the minimum cost split differently, the script's choice (deletion, then
// insertion, then diagonal) decides; preferring substitutions would give S=2 and S=3 here.
TEST(ErrorRates, SubstitutionDeletionInsertionSplitAsComputeWer) {
  ExpectCounts(WordErrors("a b", "b a"), 0, 1, 1, 2);
  ExpectCounts(WenetCharErrors("a b", "b a"), 0, 1, 1, 2);
  ExpectCounts(WordErrors("a b", "b c"), 0, 1, 1, 2);
  ExpectCounts(WordErrors("a c c", "c a b"), 1, 1, 1, 3);
  ExpectCounts(WordErrors("a b", "c d"), 2, 0, 0, 2);
  ExpectCounts(WordErrors("the cat sat", "the bat sat on"), 1, 0, 1, 3);
  ExpectCounts(WordErrors("one two three", "two three"), 0, 1, 0, 3);
}

TEST(ErrorRates, InvalidUtf8CountsPerByte) {
  for (auto errors : {CharacterErrors, WenetCharErrors}) {
    ExpectCounts(errors("\xff", "\xfe"), 1, 0, 0, 1);
    ExpectCounts(errors("\xff", "\xff"), 0, 0, 0, 1);
    // A truncated 3-byte sequence is two invalid units, not the character 你.
    ExpectCounts(errors("\xe4\xbd", "\xe4\xbd\xa0"), 1, 1, 0, 2);
    // An invalid byte never equals the code point of the same value (U+00FF is "\xc3\xbf").
    ExpectCounts(errors("\xc3\xbf", "\xff"), 1, 0, 0, 1);
  }
}

TEST(ErrorCounts, AccumulateAndPercent) {
  ErrorCounts total;
  total += CharacterErrors("你好", "你号");  // 1 of 2
  total += WordErrors("a b c", "a c");       // 1 of 3
  ExpectCounts(total, 1, 1, 0, 5);
  EXPECT_EQ(total.errors(), 2);
  EXPECT_EQ(total.corrects(), 3);
  EXPECT_DOUBLE_EQ(total.Rate(), 0.4);
  EXPECT_DOUBLE_EQ(total.Percent(), 40.0);
}

// Plain recursive edit distance (memoised) over the letters of ASCII strings.
int EditDistance(const std::string& a, const std::string& b) {
  std::vector<std::vector<int>> memo(a.size() + 1, std::vector<int>(b.size() + 1, -1));
  std::function<int(size_t, size_t)> d = [&](size_t i, size_t j) -> int {
    if (i == a.size()) return static_cast<int>(b.size() - j);
    if (j == b.size()) return static_cast<int>(a.size() - i);
    int& m = memo[i][j];
    if (m >= 0) return m;
    return m = std::min({d(i + 1, j + 1) + (a[i] != b[j]), d(i + 1, j) + 1, d(i, j + 1) + 1});
  };
  return d(0, 0);
}

// The script's choices among equal-cost alignments never change the total: it is the distance.
TEST(ErrorRates, TotalIsTheEditDistance) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(0, 8), letter(0, 2);
  auto spaced = [](const std::string& s) {
    std::string out;
    for (char c : s) out += std::string(out.empty() ? "" : " ") + c;
    return out;
  };
  for (int rep = 0; rep < 500; ++rep) {
    std::string ref, hyp;
    for (int n = len(rng); n > 0; --n) ref += static_cast<char>('a' + letter(rng));
    for (int n = len(rng); n > 0; --n) hyp += static_cast<char>('a' + letter(rng));
    // Letters as --char=1 words, and the letter-level CER of the word itself.
    for (const ErrorCounts& c : {WenetCharErrors(spaced(ref), spaced(hyp)), CharacterErrors(ref, hyp)}) {
      EXPECT_EQ(c.errors(), EditDistance(ref, hyp)) << ref << " / " << hyp;
      EXPECT_EQ(c.reference_length, static_cast<int64_t>(ref.size()));
      // The split is consistent with the lengths: |hyp| = |ref| - D + I.
      EXPECT_EQ(static_cast<int64_t>(hyp.size()), c.reference_length - c.deletions + c.insertions);
    }
  }
}

// The test-set summary: compute-wer.py's "Overall ->" lines for these five utterances are
// "53.85 % N=13 C=8 S=3 D=2 I=2" (--char=1) and "57.14 % N=14 C=8 S=3 D=3 I=2" (--char=0). The CER
// is letter-level: 10 + 9 + 3 + 11 + 10 letters; C->B and +O +N in utt2, "acc" vs "cab" as the words
// above, ONE deleted in utt4.
TEST(TranscriptScorer, SummaryMatchesComputeWerOverall) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("u2_test_error_rate_text_" + std::to_string(::getpid()));
  {
    std::ofstream out(path);
    out << "utt1 HELLO WORLD\nutt2 the cat sat\nutt3 a c c\nutt4 <unk> one two three\nutt5 hello , world\n";
  }
  auto scorer = TranscriptScorer::FromTextFile(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(scorer.ok()) << scorer.status().ToString();
  EXPECT_TRUE(scorer->Add("utt1", "hello world"));
  EXPECT_TRUE(scorer->Add("utt2", "the bat sat on"));
  EXPECT_TRUE(scorer->Add("utt3", "c a b"));
  EXPECT_TRUE(scorer->Add("utt4", "two three"));
  EXPECT_TRUE(scorer->Add("utt5", "hello world!"));
  EXPECT_FALSE(scorer->Add("utt6", "not in the reference"));
  EXPECT_TRUE(scorer->report_wer());
  EXPECT_EQ(scorer->Summary(),
            "CER 20.93 % (N=43 C=37 S=2 D=4 I=3) | WER 57.14 % (N=14 C=8 S=3 D=3 I=2) over 5 utterances");
  // The --char=1 counts of the same pairs, summed: the script's Overall line.
  ErrorCounts wenet;
  for (const auto& [ref, hyp] :
       std::vector<std::pair<const char*, const char*>>{{"HELLO WORLD", "hello world"},
                                                        {"the cat sat", "the bat sat on"},
                                                        {"a c c", "c a b"},
                                                        {"<unk> one two three", "two three"},
                                                        {"hello , world", "hello world!"}})
    wenet += WenetCharErrors(ref, hyp);
  ExpectCounts(wenet, 3, 2, 2, 13);
  EXPECT_EQ(wenet.corrects(), 8);
}

TEST(IsSpaceSeparatedLanguage, Heuristic) {
  EXPECT_TRUE(IsSpaceSeparatedLanguage("hello world"));
  EXPECT_TRUE(IsSpaceSeparatedLanguage("HELLO"));
  EXPECT_FALSE(IsSpaceSeparatedLanguage("你好世界"));
  EXPECT_FALSE(IsSpaceSeparatedLanguage("你好吗 ok"));
  EXPECT_FALSE(IsSpaceSeparatedLanguage(""));
  EXPECT_FALSE(IsSpaceSeparatedLanguage("   "));
}

}  // namespace
}  // namespace u2
