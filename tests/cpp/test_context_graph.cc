// Hotwords: the Aho-Corasick context graph (bonuses, cancelled partial matches, shared prefixes,
// failure links), the list parser and compiler (limits, unknown characters, the cache), and
// spelling phrases with a model's units.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "u2/decode/context_graph.h"
#include "u2/decode/symbol_table.h"
#include "u2/engine/hotwords.h"

namespace u2 {
namespace {

std::shared_ptr<const ContextGraph> Graph(const std::vector<ContextPhrase>& phrases) {
  auto g = ContextGraph::Build(phrases);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? *g : nullptr;
}

// Steps through `tokens` from the start; returns the summed score including the final take-back.
float Walk(const ContextGraph& g, const std::vector<int>& tokens, std::vector<float>* steps = nullptr,
           bool finish = true) {
  int32_t state = g.start();
  float total = 0;
  for (int t : tokens) {
    const float d = g.Step(state, t, &state);
    if (steps) steps->push_back(d);
    total += d;
  }
  return finish ? total + g.FinalScore(state) : total;
}

TEST(ContextGraph, CompletePhraseEarnsBoostPerToken) {
  const auto g = Graph({{{1, 2, 3}, 2.0f}});
  std::vector<float> steps;
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2, 3}, &steps), 6.0f);
  EXPECT_EQ(steps, (std::vector<float>{2.0f, 2.0f, 2.0f}));
  // Occurrences anywhere, any number of times.
  EXPECT_FLOAT_EQ(Walk(*g, {5, 1, 2, 3, 5, 1, 2, 3}), 12.0f);
}

TEST(ContextGraph, PartialMatchIsTakenBack) {
  const auto g = Graph({{{1, 2, 3}, 2.0f}});
  std::vector<float> steps;
  // 1 2 then a token that breaks the match: the 4 earned so far is given back at once.
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2, 7}, &steps), 0.0f);
  EXPECT_EQ(steps, (std::vector<float>{2.0f, 2.0f, -4.0f}));
  // Ending in the middle of a match: FinalScore gives it back.
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2}, nullptr, /*finish=*/false), 4.0f);
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2}), 0.0f);
}

TEST(ContextGraph, FailureLinkRestartsInsideABrokenMatch) {
  // "1 1 2": after 1 1 the match "1 2" restarts from the second 1 (longest suffix that is a node).
  const auto g = Graph({{{1, 2}, 1.5f}});
  std::vector<float> steps;
  EXPECT_FLOAT_EQ(Walk(*g, {1, 1, 2}, &steps), 3.0f);
  EXPECT_EQ(steps, (std::vector<float>{1.5f, 0.0f, 1.5f}));
}

TEST(ContextGraph, SharedPrefixesAndALongerPhraseKeepTheShorterOnesBonus) {
  // "1 2" and "1 2 3 4": completing "1 2" keeps 2 * 1.0 even when "1 2 3 4" breaks off later.
  const auto g = Graph({{{1, 2}, 1.0f}, {{1, 2, 3, 4}, 1.0f}});
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2}), 2.0f);
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2, 3}), 2.0f);     // "3" taken back at the end
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2, 3, 9}), 2.0f);  // ... or when the match breaks
  EXPECT_FLOAT_EQ(Walk(*g, {1, 2, 3, 4}), 4.0f);
  // Two phrases sharing a first token: the shared node gets the larger boost.
  const auto h = Graph({{{1, 2}, 1.0f}, {{1, 3}, 3.0f}});
  EXPECT_FLOAT_EQ(Walk(*h, {1, 3}), 6.0f);
  EXPECT_FLOAT_EQ(Walk(*h, {1, 2}), 4.0f);
  EXPECT_EQ(h->num_nodes(), 4);
  EXPECT_EQ(h->num_phrases(), 2);
}

TEST(ContextGraph, TotalNeverExceedsCompletePhrasesOnRandomWalks) {
  // Whatever the tokens, the final score is the boosts of complete occurrences only: here one
  // phrase, so a multiple of its full bonus, never a fraction of it.
  const auto g = Graph({{{1, 2, 1, 3}, 0.5f}});
  uint32_t seed = 7;
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> tokens;
    for (int i = 0; i < 12; ++i) {
      seed = seed * 1664525u + 1013904223u;
      tokens.push_back(1 + static_cast<int>((seed >> 24) % 3));
    }
    const float total = Walk(*g, tokens);
    const float units = total / 2.0f;
    EXPECT_NEAR(units, std::round(units), 1e-5) << trial;
    EXPECT_GE(total, -1e-5) << trial;
  }
}

TEST(ContextGraph, WithAWordSeparatorOnlyWholeWordsEarn) {
  // Separator 9; the phrase "1 2" (a word) and the phrase "3 9 4" (two words).
  auto built = ContextGraph::Build(std::vector<ContextPhrase>{{{1, 2}, 1.0f}, {{3, 9, 4}, 2.0f}}, 9);
  ASSERT_TRUE(built.ok());
  const ContextGraph& g = **built;
  EXPECT_FLOAT_EQ(Walk(g, {1, 2}), 2.0f);              // the whole utterance: the end is a boundary
  EXPECT_FLOAT_EQ(Walk(g, {5, 9, 1, 2, 9, 6}), 2.0f);  // a word among others
  EXPECT_FLOAT_EQ(Walk(g, {1, 2, 6}), 0.0f);           // a longer word beginning with it: nothing
  EXPECT_FLOAT_EQ(Walk(g, {6, 1, 2}), 0.0f);           // ... or ending with it
  EXPECT_FLOAT_EQ(Walk(g, {3, 9, 4}), 4.0f);           // separators earn nothing themselves
  EXPECT_FLOAT_EQ(Walk(g, {3, 4}), 0.0f);              // the two words run together: nothing
  // Before the end, a completed word waits for its boundary: its bonus is still open.
  std::vector<float> steps;
  Walk(g, {1, 2}, &steps, /*finish=*/false);
  EXPECT_EQ(steps, (std::vector<float>{1.0f, 1.0f}));
}

TEST(ContextGraph, RejectsEmptyPhrasesAndBadBoosts) {
  EXPECT_FALSE(ContextGraph::Build(std::vector<ContextPhrase>{{{}, 1.0f}}).ok());
  EXPECT_FALSE(ContextGraph::Build(std::vector<ContextPhrase>{{{1, -2}, 1.0f}}).ok());
  EXPECT_FALSE(ContextGraph::Build(std::vector<ContextPhrase>{{{1}, NAN}}).ok());
}

// ---- Spelling phrases with a model's units ----

SymbolTable Table(const std::string& text) {
  auto t = SymbolTable::FromText(text);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

const char* kCharUnits =
    "<blank> 0\n<unk> 1\n' 2\n\xE2\x96\x81 3\na 4\nb 5\nc 6\nn 7\ne 8\nw 9\n<sos/eos> 10\n";

TEST(Tokenize, CharacterUnitsWithAWordMarker) {
  const SymbolTable t = Table(kCharUnits);
  EXPECT_EQ(t.word_marking(), SymbolTable::WordMarking::kMarkerUnit);
  auto ids = t.Tokenize("  New  cab ");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<int>{7, 8, 9, 3, 6, 4, 5}));  // lower-cased, one marker between words
  EXPECT_EQ(t.Detokenize(*ids), "new cab");
  auto bad = t.Tokenize("new cap");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'p'"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(t.Tokenize("   ").ok());
  // Specials are never spelled from text.
  EXPECT_FALSE(t.Tokenize("<sos/eos>").ok());
}

TEST(Tokenize, BpeUnitsAndUnitsWithoutMarker) {
  const SymbolTable bpe =
      Table("<blank> 0\n<unk> 1\n\xE2\x96\x81HE 2\nLLO 3\n\xE2\x96\x81H 4\nE 5\nL 6\nO 7\n<sos/eos> 8\n");
  EXPECT_EQ(bpe.word_marking(), SymbolTable::WordMarking::kMarkerPrefix);
  auto ids = bpe.Tokenize("HELLO HOLE");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<int>{2, 3, 4, 7, 6, 5}));
  EXPECT_FALSE(bpe.Tokenize("hello").ok());  // upper-case units: no lower-casing, 'h' is unknown

  const SymbolTable zh = Table("<blank> 0\n<unk> 1\n\xE4\xBD\xA0 2\n\xE5\xA5\xBD 3\n<sos/eos> 4\n");  // 你 好
  EXPECT_EQ(zh.word_marking(), SymbolTable::WordMarking::kNone);
  auto zh_ids = zh.Tokenize("\xE4\xBD\xA0 \xE5\xA5\xBD");
  ASSERT_TRUE(zh_ids.ok());
  EXPECT_EQ(*zh_ids, (std::vector<int>{2, 3}));
  auto zh_bad = zh.Tokenize("\xE4\xBD\xA0\xE4\xBB\xAC");  // 你们: 们 is not a unit
  ASSERT_FALSE(zh_bad.ok());
  EXPECT_NE(zh_bad.status().message().find("\xE4\xBB\xAC"), std::string::npos);
}

// ---- Lists and the compiler ----

TEST(HotwordList, ParsesLinesBoostsCommentsAndJson) {
  auto list = ParseHotwordList("new cab\n# a comment\n\n  cab:4.5 \nw:x\n", 2.0f, 10);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].phrase, "new cab");
  EXPECT_FLOAT_EQ((*list)[0].boost, 2.0f);
  EXPECT_EQ((*list)[1].phrase, "cab");
  EXPECT_FLOAT_EQ((*list)[1].boost, 4.5f);
  EXPECT_EQ((*list)[2].phrase, "w:x");  // not a number after ':': part of the phrase
  auto json = ParseHotwordList(R"(["new cab:1", "abc"])", 2.0f, 10);
  ASSERT_TRUE(json.ok());
  ASSERT_EQ(json->size(), 2u);
  EXPECT_FLOAT_EQ((*json)[0].boost, 1.0f);
}

TEST(HotwordList, ClearErrors) {
  auto expect_error = [](std::string_view text, const char* what) {
    auto list = ParseHotwordList(text, 2.0f, 3);
    ASSERT_FALSE(list.ok()) << text;
    EXPECT_EQ(list.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(list.status().message().find(what), std::string::npos) << list.status().message();
  };
  expect_error("a\nb\nc\nd\n", "too many hotwords");
  expect_error("cab:1e9", "boost must be in");
  expect_error("cab:-21", "boost must be in");
  expect_error(":3", "has no phrase");
  expect_error("[1, 2]", "must be a string");
  expect_error("[\"a\", ", "JSON array");
}

TEST(HotwordCompiler, CompilesCachesAndRefusesUnknownCharacters) {
  const SymbolTable t = Table(kCharUnits);
  HotwordsConfig config;
  config.max_phrase_tokens = 7;
  config.cache_size = 2;
  HotwordCompiler compiler(t, config);
  auto a = compiler.Compile("new cab\nabc:1");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(*a);
  EXPECT_EQ((*a)->num_phrases(), 2);
  // The same list again is the same graph.
  auto again = compiler.Compile("new cab\nabc:1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(a->get(), again->get());
  // Empty list: no biasing.
  auto none = compiler.Compile("# nothing\n");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  auto oov = compiler.Compile("cab\nzebra");
  ASSERT_FALSE(oov.ok());
  EXPECT_NE(oov.status().message().find("hotword 'zebra'"), std::string::npos) << oov.status().message();
  auto too_long = compiler.Compile("abcabcab");
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("the limit is 7"), std::string::npos);
  // The cache holds two lists: after two others, the first is compiled anew.
  ASSERT_TRUE(compiler.Compile("cab").ok());
  ASSERT_TRUE(compiler.Compile("ab").ok());
  auto recompiled = compiler.Compile("new cab\nabc:1");
  ASSERT_TRUE(recompiled.ok());
  EXPECT_NE(recompiled->get(), a->get());
}

TEST(HotwordCompiler, AHundredThousandPhrasesAreRefusedQuickly) {
  const SymbolTable t = Table(kCharUnits);
  HotwordCompiler compiler(t, HotwordsConfig{});
  std::string list;
  for (int i = 0; i < 100000; ++i) list += "cab\n";
  auto g = compiler.Compile(list);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("at most 1024"), std::string::npos) << g.status().message();
}

}  // namespace
}  // namespace u2
