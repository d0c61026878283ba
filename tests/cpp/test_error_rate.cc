// CER/WER by Levenshtein alignment: hand-checked strings and a brute-force distance oracle.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "u2/util/error_rate.h"

namespace u2 {
namespace {

void ExpectCounts(const ErrorCounts& c, int64_t s, int64_t d, int64_t i, int64_t n) {
  EXPECT_EQ(c.substitutions, s);
  EXPECT_EQ(c.deletions, d);
  EXPECT_EQ(c.insertions, i);
  EXPECT_EQ(c.reference_length, n);
}

TEST(CharacterErrors, ChineseHandChecked) {
  ExpectCounts(CharacterErrors("你好世界", "你好世界"), 0, 0, 0, 4);
  // 你好世界 -> 你世界啊: delete 好, insert 啊 (cost 2; three substitutions would cost 3).
  const ErrorCounts c = CharacterErrors("你好世界", "你世界啊");
  ExpectCounts(c, 0, 1, 1, 4);
  EXPECT_DOUBLE_EQ(c.Rate(), 0.5);
  // One substitution: 好 -> 号.
  ExpectCounts(CharacterErrors("你好", "你号"), 1, 0, 0, 2);
}

TEST(CharacterErrors, SpacesAreIgnored) {
  ExpectCounts(CharacterErrors("你 好  世界", "你好世 界"), 0, 0, 0, 4);
  ExpectCounts(CharacterErrors("a b", "ab"), 0, 0, 0, 2);
  ExpectCounts(CharacterErrors("abc", "abd"), 1, 0, 0, 3);
}

TEST(CharacterErrors, EmptySides) {
  const ErrorCounts ins = CharacterErrors("", "你好");
  ExpectCounts(ins, 0, 0, 2, 0);
  EXPECT_TRUE(std::isinf(ins.Rate()));
  const ErrorCounts del = CharacterErrors("你好", "");
  ExpectCounts(del, 0, 2, 0, 2);
  EXPECT_DOUBLE_EQ(del.Rate(), 1.0);
  const ErrorCounts none = CharacterErrors("", "  ");
  ExpectCounts(none, 0, 0, 0, 0);
  EXPECT_DOUBLE_EQ(none.Rate(), 0.0);
}

TEST(CharacterErrors, InvalidUtf8CountsPerByte) {
  ExpectCounts(CharacterErrors("\xff", "\xfe"), 1, 0, 0, 1);
  ExpectCounts(CharacterErrors("\xff", "\xff"), 0, 0, 0, 1);
  // A truncated 3-byte sequence is two invalid units, not one character.
  ExpectCounts(CharacterErrors("\xe4\xbd", "\xe4\xbd\xa0"), 1, 1, 0, 2);
  // An invalid byte never equals the code point of the same value (U+00FF is "\xc3\xbf").
  ExpectCounts(CharacterErrors("\xc3\xbf", "\xff"), 1, 0, 0, 1);
}

TEST(WordErrors, HandChecked) {
  // the cat sat -> the bat sat on: cat->bat, +on.
  const ErrorCounts c = WordErrors("the cat sat", "the bat sat on");
  ExpectCounts(c, 1, 0, 1, 3);
  EXPECT_DOUBLE_EQ(c.Rate(), 2.0 / 3.0);
  // Equal-cost alignments prefer substitutions.
  ExpectCounts(WordErrors("a b", "c d"), 2, 0, 0, 2);
  ExpectCounts(WordErrors("  hello\tworld \n", "hello world"), 0, 0, 0, 2);
  ExpectCounts(WordErrors("one two three", "two three"), 0, 1, 0, 3);
  ExpectCounts(WordErrors("", ""), 0, 0, 0, 0);
  ExpectCounts(WordErrors("", "x y"), 0, 0, 2, 0);
}

TEST(ErrorCounts, Accumulate) {
  ErrorCounts total;
  total += CharacterErrors("你好", "你号");  // 1 of 2
  total += WordErrors("a b c", "a c");       // 1 of 3
  ExpectCounts(total, 1, 1, 0, 5);
  EXPECT_EQ(total.errors(), 2);
  EXPECT_DOUBLE_EQ(total.Rate(), 0.4);
}

// Plain recursive edit distance (memoised) over bytes of ASCII strings.
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

TEST(CharacterErrors, MatchesBruteForceDistance) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(0, 8), letter(0, 2);
  for (int rep = 0; rep < 500; ++rep) {
    std::string ref, hyp;
    for (int n = len(rng); n > 0; --n) ref += static_cast<char>('a' + letter(rng));
    for (int n = len(rng); n > 0; --n) hyp += static_cast<char>('a' + letter(rng));
    const ErrorCounts c = CharacterErrors(ref, hyp);
    EXPECT_EQ(c.errors(), EditDistance(ref, hyp)) << ref << " / " << hyp;
    EXPECT_EQ(c.reference_length, static_cast<int64_t>(ref.size()));
    // The split is consistent with the lengths: |hyp| = |ref| - D + I.
    EXPECT_EQ(static_cast<int64_t>(hyp.size()), c.reference_length - c.deletions + c.insertions);
  }
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
