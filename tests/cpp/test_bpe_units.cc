// BPE units: word marking of WeNet's BPE unit lists, ids -> text (WeNet's detokenization) on
// hand-made BPE, CJK and mixed sequences, per-word times and confidences for BPE pieces.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/fixtures.h"
#include "u2/decode/symbol_table.h"
#include "u2/decode/word_timing.h"

namespace u2 {
namespace {

const std::string kBpeDir = std::string(U2_TEST_DATA_DIR) + "/bpe";

TEST(BpeUnits, UnitsWithABareMarkerAreMarkedByPrefix) {
  // WeNet's BPE units (tests/data/bpe/units.txt, made by tools/make_bpe_fixture.py) hold a bare
  // "▁" piece too: words are still "▁"-prefixed pieces, so hotwords do not wait for a separate
  // marker unit (engine/hotwords.cc uses whole-word matching only for kMarkerUnit).
  auto t = SymbolTable::Load(kBpeDir + "/units.txt");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE(t->Id("\xE2\x96\x81").has_value());
  EXPECT_EQ(t->word_marking(), SymbolTable::WordMarking::kMarkerPrefix);
  auto ids = t->Tokenize("HELLO WORLD");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(t->Detokenize(*ids), "HELLO WORLD");
  EXPECT_EQ(t->Token(ids->front()), "\xE2\x96\x81HELLO");
}

// ---- ids -> text: WeNet's rule (SymbolTable::Detokenize) on hand-made units.
const char* kMixedUnits =
    "<blank> 0\n<unk> 1\n\xE2\x96\x81 2\n\xE2\x96\x81HE 3\nLLO 4\n\xE2\x96\x81WORLD 5\n"
    "\xE2\x96\x81IT 6\n' 7\nS 8\n\xE2\x96\x81OKAY 9\n\xE4\xBD\xA0 10\n\xE5\xA5\xBD 11\n\xE7\x9A\x84 12\n"
    "<NOISE> 13\n<sos/eos> 14\n";

std::string Text(const std::vector<int>& ids) {
  static const SymbolTable t = *SymbolTable::FromText(kMixedUnits);
  return t.Detokenize(ids);
}

TEST(BpeUnitsDetokenize, EnglishPiecesBecomeWords) {
  EXPECT_EQ(Text({3, 4, 5}), "HELLO WORLD");
  EXPECT_EQ(Text({6, 7, 8, 9}), "IT'S OKAY");
  // Blanks and sos/eos never show; ids outside the table are skipped.
  EXPECT_EQ(Text({0, 3, 0, 4, 14, 5, 99, -1}), "HELLO WORLD");
}

TEST(BpeUnitsDetokenize, CjkOnly) { EXPECT_EQ(Text({10, 11, 12}), "你好的"); }

TEST(BpeUnitsDetokenize, MixedCjkAndEnglishSpaceOnlyWhereAMarkerIs) {
  // WeNet joins the tokens and turns each "▁" into a space: a CJK character before an English
  // word is followed by a space (the word's "▁"), an English word before a CJK character is not.
  EXPECT_EQ(Text({10, 11, 6, 7, 8, 9, 12}), "你好 IT'S OKAY的");
  EXPECT_EQ(Text({3, 4, 10, 11, 5}), "HELLO你好 WORLD");
}

TEST(BpeUnitsDetokenize, LeadingTrailingAndConsecutiveMarkers) {
  EXPECT_EQ(Text({2, 3, 4, 2}), "HELLO");         // trimmed at both ends
  EXPECT_EQ(Text({2, 2, 5}), "WORLD");            // several leading markers
  EXPECT_EQ(Text({3, 4, 2, 5}), "HELLO  WORLD");  // "▁" + "▁WORLD": two spaces, as WeNet's Python
  EXPECT_EQ(Text({3, 4, 2, 2}), "HELLO");         // trailing markers
  EXPECT_EQ(Text({2, 2}), "");                    // nothing but markers
  EXPECT_EQ(Text({}), "");
}

TEST(BpeUnitsDetokenize, NonLanguageSymbolsAndUnkStayVerbatim) {
  EXPECT_EQ(Text({3, 4, 13, 5}), "HELLO<NOISE> WORLD");
  EXPECT_EQ(Text({13}), "<NOISE>");
  EXPECT_EQ(Text({3, 4, 1, 5}), "HELLO<unk> WORLD");
}

// ---- Word times and confidences: one entry per word, not per piece.
TEST(BpeUnitsWordTiming, PiecesJoinIntoWords) {
  const SymbolTable t = *SymbolTable::FromText(kMixedUnits);
  WordTimingConfig config;  // 40 ms frames, 100 ms gap
  // ▁HE LLO ▁WORLD ▁ 你 好 ▁IT ' S
  const std::vector<int> tokens = {3, 4, 5, 2, 10, 11, 6, 7, 8};
  const std::vector<int> frames = {10, 11, 20, 24, 30, 32, 40, 41, 42};
  const std::vector<float> conf = {0.9f, 0.7f, 0.5f, 1.0f, 0.4f, 0.6f, 0.3f, 0.6f, 0.9f};
  const auto words = AlignWords(tokens, frames, t, config, conf);
  ASSERT_EQ(words.size(), 5u);
  EXPECT_EQ(words[0].word, "HELLO");
  EXPECT_EQ(words[0].start_ms, 300);  // 10 * 40 - 100
  EXPECT_EQ(words[0].end_ms, 440);    // LLO's end: its next peak is 360 ms away -> its own peak
  EXPECT_FLOAT_EQ(words[0].confidence, 0.8f);
  EXPECT_EQ(words[1].word, "WORLD");
  EXPECT_FLOAT_EQ(words[1].confidence, 0.5f);
  EXPECT_EQ(words[2].word, "你");
  EXPECT_EQ(words[3].word, "好");
  EXPECT_EQ(words[4].word, "IT'S");
  EXPECT_NEAR(words[4].confidence, 0.6f, 1e-6);
  EXPECT_EQ(words[4].end_ms, 42 * 40);
}

}  // namespace
}  // namespace u2
