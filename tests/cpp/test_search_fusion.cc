// LM shallow fusion and hotword biasing inside the CTC prefix beam search, on hand-made posterior
// matrices: the LM flips the best path, a hotword flips it, a partial hotword match leaves the
// final scores alone, every fused score equals an independent computation (brute force over all
// alignments + the LM's sentence score + the graph walked over the tokens), chunked search equals
// one call, concurrent searches with different hotwords keep their own biasing, and the attention
// rescoring formula adds the fused scores.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numbers>
#include <random>
#include <thread>
#include <vector>

#include "u2/decode/context_graph.h"
#include "u2/decode/ctc_search.h"
#include "u2/decode/ngram_lm.h"
#include "u2/decode/rescoring.h"
#include "u2/decode/symbol_table.h"
#include "u2/decode/word_lm.h"

namespace u2 {
namespace {

// ids: 0 <blank>, 1 <unk>, 2 ▁, 3 a, 4 b, 5 <sos/eos>
constexpr int kVocab = 6;
constexpr int kSep = 2, kA = 3, kB = 4;
const char* kUnits = "<blank> 0\n<unk> 1\n\xE2\x96\x81 2\na 3\nb 4\n<sos/eos> 5\n";

// Words: a, b, ab, ba; "b" is far likelier than "a" alone, and "ab" after "a" is cheap.
const char* kArpa = R"(\data\
ngram 1=7
ngram 2=2

\1-grams:
-1.0	<s>	-0.3
-0.8	</s>
-3.0	a	-0.2
-0.3	b	-0.2
-1.5	ab	-0.1
-1.7	ba	-0.1
-2.0	<unk>

\2-grams:
-0.1	a ab
-0.4	ab </s>

\end\
)";

struct Fixture {
  SymbolTable symbols;
  std::shared_ptr<const NgramLm> ngram;
  std::shared_ptr<const WordLm> lm;
};

const Fixture& F() {
  static const Fixture f = [] {
    Fixture f{*SymbolTable::FromText(kUnits), *NgramLm::FromArpaText(kArpa), nullptr};
    auto lm = WordLm::Create(f.ngram, f.symbols);
    EXPECT_TRUE(lm.ok()) << lm.status().ToString();
    f.lm = *lm;
    return f;
  }();
  return f;
}

struct LogProbs {
  std::vector<float> data;
  int frames = 0;
  LogProbView View() const { return {data.data(), frames, kVocab}; }
  LogProbView Slice(int b, int e) const { return {data.data() + b * kVocab, e - b, kVocab}; }
};

// Rows of probabilities over the 6 ids (normalised here).
LogProbs FromProbs(const std::vector<std::vector<double>>& rows) {
  LogProbs lp;
  for (const auto& r : rows) {
    double sum = 0;
    for (double p : r) sum += p;
    for (double p : r) lp.data.push_back(static_cast<float>(std::log(p / sum)));
    ++lp.frames;
  }
  return lp;
}

CtcPrefixBeamSearchConfig Config(int beam, float lm_weight, float word_bonus,
                                 std::shared_ptr<const ContextGraph> context = nullptr, bool with_lm = true) {
  CtcPrefixBeamSearchConfig c;
  c.beam = beam;
  c.first_beam = kVocab;
  if (with_lm) c.lm = F().lm;
  c.lm_weights = {lm_weight, word_bonus};
  c.context = std::move(context);
  return c;
}

std::vector<CtcHypothesis> Decode(const LogProbs& lp, const CtcPrefixBeamSearchConfig& config) {
  CtcPrefixBeamSearch search(config);
  EXPECT_TRUE(search.Search(lp.View()).ok());
  return search.NBest();
}

std::shared_ptr<const ContextGraph> Graph(std::vector<int> tokens, float boost) {
  auto g = ContextGraph::Build(std::vector<ContextPhrase>{{std::move(tokens), boost}});
  EXPECT_TRUE(g.ok());
  return *g;
}

constexpr float kLn10 = static_cast<float>(std::numbers::ln10);

// The fused LM score of a token sequence computed another way: the detokenized sentence's LM
// score (with <s> and </s>) and one bonus per word.
float LmOracle(const std::vector<int>& tokens, float lm_weight, float word_bonus) {
  const std::string text = F().symbols.Detokenize(tokens);
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    if (c != ' ' && !in_word) ++words;
    in_word = c != ' ';
  }
  return lm_weight * kLn10 * F().ngram->ScoreSentence(text) + word_bonus * words;
}

float ContextOracle(const ContextGraph& g, const std::vector<int>& tokens) {
  int32_t s = g.start();
  float total = 0;
  for (int t : tokens) total += g.Step(s, t, &s);
  return total + g.FinalScore(s);
}

TEST(SearchFusion, LanguageModelFlipsTheBestPath) {
  // One frame: acoustically "a" (.50) beats "b" (.40); the LM knows "b" is a far likelier word.
  const LogProbs lp = FromProbs({{0.08, 0.001, 0.001, 0.50, 0.40, 0.001}});
  const auto plain = Decode(lp, Config(10, 0.0f, 0.0f, nullptr, /*with_lm=*/false));
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain[0].tokens, (std::vector<int>{kA}));
  const auto fused = Decode(lp, Config(10, 0.5f, 0.0f));
  ASSERT_FALSE(fused.empty());
  EXPECT_EQ(fused[0].tokens, (std::vector<int>{kB}));
  // The acoustic score is untouched; the LM part is the sentence's.
  EXPECT_NEAR(fused[0].score, std::log(0.40 / 0.983), 1e-5);
  EXPECT_NEAR(fused[0].lm_score, LmOracle({kB}, 0.5f, 0.0f), 1e-4);
  // lm_weight 0 and word_bonus 0 switch fusion off entirely: the plain result.
  const auto off = Decode(lp, Config(10, 0.0f, 0.0f));
  ASSERT_EQ(off.size(), plain.size());
  for (size_t i = 0; i < off.size(); ++i) {
    EXPECT_EQ(off[i].tokens, plain[i].tokens);
    EXPECT_EQ(off[i].lm_score, 0.0f);
  }
}

TEST(SearchFusion, WordBonusFavoursMoreWords) {
  // "ab" as one word vs "a b": acoustically the separator is unlikely; a large word bonus buys it.
  const LogProbs lp = FromProbs({{0.01, 0.001, 0.001, 0.9, 0.05, 0.001},
                                 {0.50, 0.001, 0.30, 0.1, 0.05, 0.001},
                                 {0.01, 0.001, 0.001, 0.05, 0.9, 0.001}});
  const auto no_bonus = Decode(lp, Config(20, 0.01f, 0.0f));
  ASSERT_FALSE(no_bonus.empty());
  EXPECT_EQ(no_bonus[0].tokens, (std::vector<int>{kA, kB}));
  const auto bonus = Decode(lp, Config(20, 0.01f, 5.0f));
  ASSERT_FALSE(bonus.empty());
  EXPECT_EQ(bonus[0].tokens, (std::vector<int>{kA, kSep, kB}));
}

TEST(SearchFusion, HotwordFlipsTheBestPath) {
  const LogProbs lp = FromProbs({{0.08, 0.001, 0.001, 0.50, 0.40, 0.001}});
  const auto plain = Decode(lp, Config(10, 0, 0, nullptr, false));
  EXPECT_EQ(plain[0].tokens, (std::vector<int>{kA}));
  const auto biased = Decode(lp, Config(10, 0, 0, Graph({kB}, 1.0f), false));
  EXPECT_EQ(biased[0].tokens, (std::vector<int>{kB}));
  EXPECT_FLOAT_EQ(biased[0].context_score, 1.0f);
  EXPECT_NEAR(biased[0].FusedScore(), biased[0].score + 1.0f, 1e-6);
}

TEST(SearchFusion, PartialHotwordMatchDoesNotChangeFinalScores) {
  // The audio says "a b"; the hotword is "a b b", which three frames cannot spell (a repeated b
  // needs a blank between). Its first two tokens match, with a large bonus on the way, but the
  // phrase never completes: every final hypothesis has exactly the score and rank it has without
  // the hotword.
  const LogProbs lp = FromProbs({{0.05, 0.001, 0.001, 0.9, 0.05, 0.001},
                                 {0.50, 0.001, 0.001, 0.05, 0.4, 0.001},
                                 {0.90, 0.001, 0.001, 0.05, 0.05, 0.001}});
  const auto plain = Decode(lp, Config(100, 0, 0, nullptr, false));
  const auto partial = Decode(lp, Config(100, 0, 0, Graph({kA, kB, kB}, 3.0f), false));
  ASSERT_EQ(plain.size(), partial.size());
  std::map<std::vector<int>, float> plain_scores;
  for (const auto& h : plain) plain_scores[h.tokens] = h.FusedScore();
  for (const auto& h : partial) {
    ASSERT_TRUE(plain_scores.count(h.tokens));
    EXPECT_EQ(h.context_score, 0.0f);
    EXPECT_FLOAT_EQ(h.FusedScore(), plain_scores[h.tokens]);
  }
  EXPECT_EQ(partial[0].tokens, plain[0].tokens);
  // "a b" itself went through the partial match and came out with nothing extra.
  ASSERT_TRUE(plain_scores.count({kA, kB}));
}

// All alignments of a small matrix: the exact log P of every label sequence.
std::map<std::vector<int>, double> BruteForce(const LogProbs& lp) {
  std::map<std::vector<int>, double> out;
  std::vector<int> path(static_cast<size_t>(lp.frames), 0);
  while (true) {
    std::vector<int> labels;
    double logp = 0;
    int prev = -1;
    for (int t = 0; t < lp.frames; ++t) {
      const int s = path[static_cast<size_t>(t)];
      logp += lp.data[static_cast<size_t>(t * kVocab + s)];
      if (s != 0 && s != prev) labels.push_back(s);
      prev = s;
    }
    auto [it, inserted] = out.try_emplace(labels, logp);
    if (!inserted)
      it->second = std::max(it->second, logp) + std::log1p(std::exp(-std::fabs(it->second - logp)));
    int t = 0;
    while (t < lp.frames && ++path[static_cast<size_t>(t)] == kVocab) path[static_cast<size_t>(t++)] = 0;
    if (t == lp.frames) break;
  }
  return out;
}

TEST(SearchFusion, EveryFusedScoreMatchesAnIndependentComputation) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(0.01, 1.0);
  const auto graph =
      *ContextGraph::Build(std::vector<ContextPhrase>{{{kA, kB}, 1.5f}, {{kB, kSep, kA}, 0.7f}});
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::vector<double>> rows(4, std::vector<double>(kVocab));
    for (auto& r : rows)
      for (double& p : r) p = u(rng);
    const LogProbs lp = FromProbs(rows);
    const float w = 0.3f + 0.1f * static_cast<float>(trial % 5),
                bonus = -0.5f + 0.25f * static_cast<float>(trial % 4);
    // A beam wider than the number of label sequences: the search is exact.
    const auto nbest = Decode(lp, Config(1000, w, bonus, graph));
    const auto oracle = BruteForce(lp);
    ASSERT_EQ(nbest.size(), oracle.size()) << trial;
    double best_fused = -1e30;
    std::vector<int> best_tokens;
    for (const auto& [labels, logp] : oracle) {
      const double fused = logp + LmOracle(labels, w, bonus) + ContextOracle(*graph, labels);
      if (fused > best_fused) {
        best_fused = fused;
        best_tokens = labels;
      }
    }
    for (size_t i = 0; i < nbest.size(); ++i) {
      const CtcHypothesis& h = nbest[i];
      EXPECT_NEAR(h.score, oracle.at(h.tokens), 1e-4) << trial;
      EXPECT_NEAR(h.lm_score, LmOracle(h.tokens, w, bonus), 1e-3) << trial;
      EXPECT_NEAR(h.context_score, ContextOracle(*graph, h.tokens), 1e-5) << trial;
      if (i > 0) {
        EXPECT_GE(nbest[i - 1].FusedScore(), h.FusedScore()) << trial;
      }
    }
    EXPECT_EQ(nbest[0].tokens, best_tokens) << trial;
  }
}

TEST(SearchFusion, ChunkedSearchEqualsOneCall) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.01, 1.0);
  std::vector<std::vector<double>> rows(12, std::vector<double>(kVocab));
  for (auto& r : rows)
    for (double& p : r) p = u(rng);
  const LogProbs lp = FromProbs(rows);
  const auto config = Config(8, 0.6f, 0.5f, Graph({kA, kB}, 2.0f));
  const auto whole = Decode(lp, config);
  CtcPrefixBeamSearch chunked(config);
  for (int b = 0; b < lp.frames; b += 5)
    ASSERT_TRUE(chunked.Search(lp.Slice(b, std::min(b + 5, lp.frames))).ok());
  const auto parts = chunked.NBest();
  ASSERT_EQ(parts.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(parts[i].tokens, whole[i].tokens);
    EXPECT_FLOAT_EQ(parts[i].FusedScore(), whole[i].FusedScore());
  }
}

TEST(SearchFusion, ConcurrentSearchesKeepTheirOwnHotwords) {
  // Two threads decode the same audio over and over with different hotwords (and one LM): each
  // always gets the result it gets alone.
  const LogProbs lp =
      FromProbs({{0.08, 0.001, 0.001, 0.45, 0.45, 0.001}, {0.9, 0.001, 0.001, 0.05, 0.05, 0.001}});
  const auto for_a = Config(10, 0.1f, 0.0f, Graph({kA}, 4.0f));
  const auto for_b = Config(10, 0.1f, 0.0f, Graph({kB}, 4.0f));
  const auto alone_a = Decode(lp, for_a), alone_b = Decode(lp, for_b);
  ASSERT_EQ(alone_a[0].tokens, (std::vector<int>{kA}));
  ASSERT_EQ(alone_b[0].tokens, (std::vector<int>{kB}));
  int mismatches = 0;
  auto work = [&](const CtcPrefixBeamSearchConfig& c, const std::vector<CtcHypothesis>& expected, int* bad) {
    for (int i = 0; i < 300; ++i) {
      const auto got = Decode(lp, c);
      if (got[0].tokens != expected[0].tokens || got[0].FusedScore() != expected[0].FusedScore()) ++*bad;
    }
  };
  int bad_a = 0, bad_b = 0;
  std::thread ta(work, std::cref(for_a), std::cref(alone_a), &bad_a);
  std::thread tb(work, std::cref(for_b), std::cref(alone_b), &bad_b);
  ta.join();
  tb.join();
  mismatches = bad_a + bad_b;
  EXPECT_EQ(mismatches, 0);
}

TEST(SearchFusion, AttentionRescoringAddsTheFusedScores) {
  std::vector<CtcHypothesis> hyps(2);
  hyps[0].tokens = {kA};
  hyps[0].score = -1.0f;
  hyps[0].lm_score = -3.0f;
  hyps[1].tokens = {kB};
  hyps[1].score = -1.2f;
  hyps[1].lm_score = -0.5f;
  hyps[1].context_score = 0.25f;
  const std::vector<float> l2r{-2.0f, -2.1f};
  auto ranked = RankByAttentionRescoring(hyps, l2r, {}, RescoringWeights{.ctc_weight = 0.5f});
  ASSERT_TRUE(ranked.ok());
  // 0: -2.0 + 0.5 * -1.0 - 3.0 = -5.5;  1: -2.1 + 0.5 * -1.2 - 0.5 + 0.25 = -2.95
  EXPECT_EQ((*ranked)[0].index, 1u);
  EXPECT_NEAR((*ranked)[0].final_score, -2.95f, 1e-6);
  EXPECT_NEAR((*ranked)[1].final_score, -5.5f, 1e-6);
}

TEST(SearchFusion, WordLmRefusesAnLmItsUnitsCannotSpell) {
  const auto upper = *NgramLm::FromArpaText(
      "\\data\\\nngram 1=4\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n-1\tAB\n-1\tBA\n\n\\end\\\n");
  auto lm = WordLm::Create(upper, F().symbols);
  ASSERT_FALSE(lm.ok());
  EXPECT_NE(lm.status().message().find("0 of the language model's 2 words"), std::string::npos)
      << lm.status().message();
}

TEST(SearchFusion, AbsurdWeightsAreRefused) {
  for (const LmFusionWeights& w : {LmFusionWeights{-1.0f, 0.0f}, LmFusionWeights{11.0f, 0.0f},
                                   LmFusionWeights{1.0f, 100.0f}, LmFusionWeights{NAN, 0.0f}}) {
    CtcPrefixBeamSearch search(Config(10, w.lm_weight, w.word_bonus));
    const LogProbs lp = FromProbs({{0.5, 0.1, 0.1, 0.1, 0.1, 0.1}});
    EXPECT_FALSE(search.Search(lp.View()).ok()) << w.ToString();
  }
}

}  // namespace
}  // namespace u2

namespace u2 {
namespace {

// BPE-style units: a "▁"-prefixed piece starts a word. Walking WordLm over any token sequence
// (Extend per token, End at the end) must give the LM score of the detokenized sentence plus a
// bonus per word, look-aheads included and taken back.
TEST(SearchFusion, BpeWordBoundariesScoreLikeTheSentence) {
  const char* units =
      "<blank> 0\n<unk> 1\n\xE2\x96\x81"
      "a 2\n\xE2\x96\x81"
      "b 3\nb 4\na 5\n<sos/eos> 6\n";
  auto symbols = SymbolTable::FromText(units);
  ASSERT_TRUE(symbols.ok());
  ASSERT_EQ(symbols->word_marking(), SymbolTable::WordMarking::kMarkerPrefix);
  auto lm = WordLm::Create(F().ngram, *symbols);
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  const LmFusionWeights weights{0.7f, 0.4f};
  std::mt19937 rng(5);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> tokens;
    const int n = static_cast<int>(rng() % 7);
    for (int i = 0; i < n; ++i) tokens.push_back(2 + static_cast<int>(rng() % 4));
    if (!tokens.empty() && tokens[0] >= 4) tokens[0] -= 2;  // a sentence starts with a word start
    WordLm::State state = (*lm)->Start();
    float total = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      WordLm::State next;
      total += (*lm)->Extend(state, std::span<const int>(tokens.data(), i), tokens[i], weights, &next);
      state = next;
    }
    total += (*lm)->End(state, tokens, weights);
    const std::string text = symbols->Detokenize(tokens);
    int words = 0;
    bool in_word = false;
    for (char c : text) {
      if (c != ' ' && !in_word) ++words;
      in_word = c != ' ';
    }
    const float want =
        weights.lm_weight * kLn10 * F().ngram->ScoreSentence(text) + weights.word_bonus * words;
    EXPECT_NEAR(total, want, 1e-3) << "'" << text << "'";
  }
}

}  // namespace
}  // namespace u2
