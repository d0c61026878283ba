// CTC greedy and prefix beam search on hand-checked matrices and against a brute-force oracle;
// the CTC endpointer on synthetic chunks; the search against the PyTorch fixtures.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "support/fixtures.h"
#include "u2/decode/ctc_search.h"
#include "u2/decode/endpoint.h"

namespace u2 {
namespace {

// Row-major log-probs built from per-frame probabilities.
struct LogProbs {
  std::vector<float> data;
  int frames = 0;
  int vocab = 0;
  LogProbView View() const { return {data.data(), frames, vocab}; }
  LogProbView Slice(int begin, int end) const { return {data.data() + begin * vocab, end - begin, vocab}; }
};

LogProbs FromProbs(const std::vector<std::vector<double>>& probs) {
  LogProbs lp;
  lp.frames = static_cast<int>(probs.size());
  lp.vocab = probs.empty() ? 0 : static_cast<int>(probs[0].size());
  for (const auto& row : probs) {
    for (double p : row) lp.data.push_back(static_cast<float>(std::log(p)));
  }
  return lp;
}

LogProbs RandomLogProbs(std::mt19937& rng, int frames, int vocab, float spread = 3.0f) {
  std::normal_distribution<float> normal(0.0f, spread);
  LogProbs lp;
  lp.frames = frames;
  lp.vocab = vocab;
  for (int t = 0; t < frames; ++t) {
    std::vector<double> logits(vocab);
    double m = -1e30;
    for (auto& x : logits) m = std::max(m, x = normal(rng));
    double sum = 0;
    for (double x : logits) sum += std::exp(x - m);
    for (double x : logits) lp.data.push_back(static_cast<float>(x - m - std::log(sum)));
  }
  return lp;
}

CtcPrefixBeamSearchConfig Config(int beam = 10, int first_beam = 10, int blank_id = 0) {
  CtcPrefixBeamSearchConfig c;
  c.beam = beam;
  c.first_beam = first_beam;
  c.blank_id = blank_id;
  return c;
}

std::vector<CtcHypothesis> RunSearch(const LogProbs& lp, int beam, int first_beam) {
  CtcPrefixBeamSearch search(Config(beam, first_beam));
  EXPECT_TRUE(search.Search(lp.View()).ok());
  return search.NBest();
}

// ---------------------------------------------------------------------------------------------
// Greedy

TEST(CtcGreedySearch, CollapsesRepeatsAndDropsBlanks) {
  // ids: 0 blank, 1 a, 2 b. Frame argmaxes: a a blank a b b -> "a a b" (the blank splits a|a).
  const LogProbs lp = FromProbs({{0.1, 0.6, 0.3},
                                 {0.1, 0.8, 0.1},  // the first a's peak (0.8 > 0.6)
                                 {0.7, 0.2, 0.1},
                                 {0.2, 0.5, 0.3},
                                 {0.1, 0.2, 0.7},  // b's peak (0.7 > 0.6)
                                 {0.2, 0.2, 0.6}});
  std::vector<int> times;
  EXPECT_EQ(CtcGreedySearch(lp.View(), 0, &times), (std::vector<int>{1, 1, 2}));
  EXPECT_EQ(times, (std::vector<int>{1, 3, 4}));
}

TEST(CtcGreedySearch, RepeatsWithoutBlankCollapse) {
  const LogProbs lp = FromProbs({{0.1, 0.9}, {0.2, 0.8}, {0.3, 0.7}});
  EXPECT_EQ(CtcGreedySearch(lp.View(), 0), (std::vector<int>{1}));
}

TEST(CtcGreedySearch, AllBlankAndEmptyGiveNothing) {
  const LogProbs blank = FromProbs({{0.9, 0.1}, {0.6, 0.4}});
  std::vector<int> times{7};
  EXPECT_TRUE(CtcGreedySearch(blank.View(), 0, &times).empty());
  EXPECT_TRUE(times.empty());
  EXPECT_TRUE(CtcGreedySearch(LogProbView{}, 0).empty());
  // A malformed view (frames but no data) is rejected without reading memory.
  EXPECT_TRUE(CtcGreedySearch(LogProbView{nullptr, 3, 2}, 0).empty());
}

TEST(CtcGreedySearch, NonZeroBlankId) {
  // blank = 2: argmaxes 0 2 0 1 -> "0 0 1".
  const LogProbs lp = FromProbs({{0.6, 0.1, 0.3}, {0.1, 0.1, 0.8}, {0.5, 0.2, 0.3}, {0.1, 0.8, 0.1}});
  EXPECT_EQ(CtcGreedySearch(lp.View(), 2), (std::vector<int>{0, 0, 1}));
}

// ---------------------------------------------------------------------------------------------
// Prefix beam search: hand-computed prefix probabilities

TEST(CtcPrefixBeamSearch, HandCheckedTwoFramesThreeTokens) {
  // ids: 0 blank, 1 a, 2 b.   t0: (.5, .3, .2)   t1: (.4, .4, .2)
  // The 9 alignments and the label sequence each collapses to:
  //   --: ""  .20   -a: a .20   -b: b .10
  //   a-: a   .12   aa: a .12   ab: ab .06
  //   b-: b   .08   ba: ba .08  bb: b .04
  // P(a) = .44, P(b) = .22, P("") = .20, P(ba) = .08, P(ab) = .06  (sum 1).
  // Viterbi: a .20 via "-a" (a at frame 1); b .10 via "-b" (frame 1); ba .08 (frames 0, 1).
  const LogProbs lp = FromProbs({{0.5, 0.3, 0.2}, {0.4, 0.4, 0.2}});
  const auto nbest = RunSearch(lp, 10, 3);
  ASSERT_EQ(nbest.size(), 5u);
  const std::vector<std::vector<int>> tokens{{1}, {2}, {}, {2, 1}, {1, 2}};
  const std::vector<double> probs{0.44, 0.22, 0.20, 0.08, 0.06};
  for (size_t i = 0; i < nbest.size(); ++i) {
    EXPECT_EQ(nbest[i].tokens, tokens[i]) << i;
    EXPECT_NEAR(nbest[i].score, std::log(probs[i]), 1e-5) << i;
  }
  EXPECT_NEAR(nbest[0].viterbi_score, std::log(0.20), 1e-5);
  EXPECT_EQ(nbest[0].times, (std::vector<int>{1}));
  EXPECT_NEAR(nbest[1].viterbi_score, std::log(0.10), 1e-5);
  EXPECT_EQ(nbest[3].times, (std::vector<int>{0, 1}));
}

TEST(CtcPrefixBeamSearch, HandCheckedRepeatNeedsBlank) {
  // ids: 0 blank, 1 a.   t0: (.7, .3)   t1: (.3, .7)   t2: (.4, .6)
  //   ---: ""  .084   --a: a .126   -a-: a .196   -aa: a .294
  //   a--: a   .036   a-a: aa .054  aa-: a .084   aaa: a .126
  // P(a) = .862, P("") = .084, P(aa) = .054 (only "a-a": a repeat needs a blank between).
  // Viterbi of a: .294 via "-aa"; a's run spans frames 1-2 and peaks at frame 1 (.7 > .6).
  const LogProbs lp = FromProbs({{0.7, 0.3}, {0.3, 0.7}, {0.4, 0.6}});
  const auto nbest = RunSearch(lp, 10, 2);
  ASSERT_EQ(nbest.size(), 3u);
  EXPECT_EQ(nbest[0].tokens, (std::vector<int>{1}));
  EXPECT_NEAR(nbest[0].score, std::log(0.862), 1e-5);
  EXPECT_NEAR(nbest[0].viterbi_score, std::log(0.294), 1e-5);
  EXPECT_EQ(nbest[0].times, (std::vector<int>{1}));
  EXPECT_EQ(nbest[1].tokens, (std::vector<int>{}));
  EXPECT_NEAR(nbest[1].score, std::log(0.084), 1e-5);
  EXPECT_EQ(nbest[2].tokens, (std::vector<int>{1, 1}));
  EXPECT_NEAR(nbest[2].score, std::log(0.054), 1e-5);
  EXPECT_NEAR(nbest[2].viterbi_score, std::log(0.054), 1e-5);
  EXPECT_EQ(nbest[2].times, (std::vector<int>{0, 2}));
}

TEST(CtcPrefixBeamSearch, BeamPruningCanLoseTheTrueBest) {
  // ids: 0 blank, 1 a, 2 b.   t0: (.4, .35, .25)   t1: (.6, .2, .2)
  // Exact: P(a) = .4*.2 + .35*.6 + .35*.2 = .36 is the best; P(b) = .28, P("") = .24.
  // With beam 1 only "" (.4) survives frame 0, so frame 1 sees "" -> "" .24, a .08, b .08 and
  // the search returns "" with .24: the documented cost of pruning, as in WeNet.
  const LogProbs lp = FromProbs({{0.4, 0.35, 0.25}, {0.6, 0.2, 0.2}});
  const auto exact = RunSearch(lp, 10, 3);
  ASSERT_FALSE(exact.empty());
  EXPECT_EQ(exact[0].tokens, (std::vector<int>{1}));
  EXPECT_NEAR(exact[0].score, std::log(0.36), 1e-5);

  const auto pruned = RunSearch(lp, 1, 3);
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_TRUE(pruned[0].tokens.empty());
  EXPECT_NEAR(pruned[0].score, std::log(0.24), 1e-5);
}

TEST(CtcPrefixBeamSearch, FirstBeamLimitsCandidateTokens) {
  // first_beam 1: only each frame's argmax is expanded. t0 argmax a, t1 argmax b.
  // Prefixes: "ab" with .5*.6 = .30, nothing else.
  const LogProbs lp = FromProbs({{0.3, 0.5, 0.2}, {0.1, 0.3, 0.6}});
  const auto nbest = RunSearch(lp, 10, 1);
  ASSERT_EQ(nbest.size(), 1u);
  EXPECT_EQ(nbest[0].tokens, (std::vector<int>{1, 2}));
  EXPECT_NEAR(nbest[0].score, std::log(0.30), 1e-5);
}

TEST(CtcPrefixBeamSearch, EqualScoresKeepFirstAppearance) {
  // a and b have identical columns, so P(a) == P(b) exactly:
  //   t0: "" .5, a .25, b .25 (beam 3 keeps all three, a before b);
  //   t1: P(a) = P(b) = .5*.25 + .25*.5 + .25*.25 = .3125, P("") = .25, P(ab) = P(ba) = .0625.
  // a first appears before b (expanded from the earlier beam entry), so it ranks first.
  const LogProbs lp = FromProbs({{0.5, 0.25, 0.25}, {0.5, 0.25, 0.25}});
  const auto nbest = RunSearch(lp, 3, 3);
  ASSERT_EQ(nbest.size(), 3u);
  EXPECT_EQ(nbest[0].tokens, (std::vector<int>{1}));
  EXPECT_EQ(nbest[1].tokens, (std::vector<int>{2}));
  EXPECT_EQ(nbest[2].tokens, (std::vector<int>{}));
  EXPECT_EQ(nbest[0].score, nbest[1].score);
  EXPECT_NEAR(nbest[0].score, std::log(0.3125), 1e-5);
  EXPECT_NEAR(nbest[2].score, std::log(0.25), 1e-5);
}

TEST(CtcPrefixBeamSearch, ZeroProbabilityPrefixesAreNotKept) {
  // Frame 0 is certainly a (P(blank) = 0), so "a" has no alignment ending in blank and "aa" is
  // impossible after frame 1; only "a" and "ab" remain (not a beam padded with -inf entries).
  LogProbs lp = FromProbs({{1.0, 1.0, 1.0}, {0.5, 0.3, 0.2}});
  lp.data[0] = -INFINITY, lp.data[1] = 0.0f, lp.data[2] = -INFINITY;
  const auto nbest = RunSearch(lp, 10, 3);
  ASSERT_EQ(nbest.size(), 2u);
  EXPECT_EQ(nbest[0].tokens, (std::vector<int>{1}));
  EXPECT_NEAR(nbest[0].score, std::log(0.8), 1e-5);
  EXPECT_EQ(nbest[1].tokens, (std::vector<int>{1, 2}));
  EXPECT_NEAR(nbest[1].score, std::log(0.2), 1e-5);
}

TEST(CtcPrefixBeamSearch, StartStateAndReset) {
  CtcPrefixBeamSearch search({});
  auto nbest = search.NBest();
  ASSERT_EQ(nbest.size(), 1u);
  EXPECT_TRUE(nbest[0].tokens.empty());
  EXPECT_EQ(nbest[0].score, 0.0f);
  const LogProbs lp = FromProbs({{0.1, 0.9}});
  ASSERT_TRUE(search.Search(lp.View()).ok());
  EXPECT_EQ(search.num_frames_decoded(), 1);
  EXPECT_EQ(search.NBest()[0].tokens, (std::vector<int>{1}));
  search.Reset();
  EXPECT_EQ(search.num_frames_decoded(), 0);
  EXPECT_TRUE(search.NBest()[0].tokens.empty());
  // An empty chunk changes nothing.
  ASSERT_TRUE(search.Search(LogProbView{}).ok());
  EXPECT_EQ(search.num_frames_decoded(), 0);
}

TEST(CtcPrefixBeamSearch, RejectsBadConfigAndInput) {
  const LogProbs lp = FromProbs({{0.5, 0.5}});
  EXPECT_FALSE(Config(0).Validate().ok());
  EXPECT_FALSE(Config(10, 0).Validate().ok());
  EXPECT_FALSE(Config(10, 10, -1).Validate().ok());
  EXPECT_NE(CtcPrefixBeamSearchConfig{}.ToString().find("beam=10"), std::string::npos);

  CtcPrefixBeamSearch bad_config(Config(0));
  EXPECT_EQ(bad_config.Search(lp.View()).code(), StatusCode::kInvalidArgument);

  CtcPrefixBeamSearch search(Config(10, 10, 2));
  EXPECT_EQ(search.Search(lp.View()).code(), StatusCode::kInvalidArgument);  // blank outside vocab
  CtcPrefixBeamSearch ok({});
  EXPECT_EQ(ok.Search(LogProbView{nullptr, 2, 2}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ok.Search(LogProbView{lp.data.data(), -1, 2}).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(ok.Search(lp.View()).ok());
  const LogProbs wider = FromProbs({{0.4, 0.3, 0.3}});
  EXPECT_EQ(ok.Search(wider.View()).code(), StatusCode::kInvalidArgument);  // vocab changed
  EXPECT_EQ(ok.num_frames_decoded(), 1);
}

// ---------------------------------------------------------------------------------------------
// Prefix beam search against a brute-force oracle

struct OracleEntry {
  double prob = 0;
  double viterbi = -1;
  std::vector<int> times;  // peak frame per token on the best alignment
};

// Enumerates all V^T alignments in double, collapses each (merge repeats, drop blanks), and sums
// probabilities per label sequence.
std::map<std::vector<int>, OracleEntry> BruteForce(const LogProbs& lp) {
  std::map<std::vector<int>, OracleEntry> out;
  std::vector<int> path(lp.frames, 0);
  while (true) {
    double logp = 0;
    std::vector<int> labels, times;
    std::vector<double> peak;
    for (int t = 0; t < lp.frames; ++t) {
      const int u = path[t];
      const double p = lp.data[t * lp.vocab + u];
      logp += p;
      if (u == 0) continue;
      if (t > 0 && path[t - 1] == u) {
        if (p > peak.back()) peak.back() = p, times.back() = t;
      } else {
        labels.push_back(u), times.push_back(t), peak.push_back(p);
      }
    }
    OracleEntry& e = out[labels];
    e.prob += std::exp(logp);
    if (std::exp(logp) > e.viterbi) e.viterbi = std::exp(logp), e.times = times;
    int t = 0;
    while (t < lp.frames && ++path[t] == lp.vocab) path[t++] = 0;
    if (t == lp.frames) break;
  }
  return out;
}

TEST(CtcPrefixBeamSearch, MatchesBruteForceWithoutPruning) {
  std::mt19937 rng(1234);
  int cases = 0;
  for (int vocab = 2; vocab <= 4; ++vocab) {
    for (int frames = 1; frames <= 7; ++frames) {
      for (int rep = 0; rep < 4; ++rep, ++cases) {
        const LogProbs lp = RandomLogProbs(rng, frames, vocab, rep % 2 ? 1.0f : 3.0f);
        const auto oracle = BruteForce(lp);
        const auto nbest = RunSearch(lp, 100000, vocab);
        ASSERT_EQ(nbest.size(), oracle.size()) << "V=" << vocab << " T=" << frames;
        std::vector<double> oracle_sorted;
        for (const auto& [labels, e] : oracle) oracle_sorted.push_back(std::log(e.prob));
        std::sort(oracle_sorted.rbegin(), oracle_sorted.rend());
        for (size_t i = 0; i < nbest.size(); ++i) {
          const auto it = oracle.find(nbest[i].tokens);
          ASSERT_NE(it, oracle.end());
          const double tol = 1e-5 * std::max(1.0, std::abs(std::log(it->second.prob)));
          // Same order as the oracle: the i-th best score is the i-th largest probability.
          EXPECT_NEAR(nbest[i].score, oracle_sorted[i], tol)
              << "V=" << vocab << " T=" << frames << " i=" << i;
          EXPECT_NEAR(nbest[i].score, std::log(it->second.prob), tol);
          EXPECT_NEAR(nbest[i].viterbi_score, std::log(it->second.viterbi), tol);
          EXPECT_EQ(nbest[i].times, it->second.times);
        }
      }
    }
  }
  EXPECT_EQ(cases, 84);
}

TEST(CtcPrefixBeamSearch, ChunkedEqualsWhole) {
  std::mt19937 rng(99);
  const LogProbs lp = RandomLogProbs(rng, 40, 7, 2.0f);
  const auto whole = RunSearch(lp, 4, 3);
  CtcPrefixBeamSearch chunked(Config(4, 3));
  const int cuts[] = {0, 1, 6, 6, 19, 33, 40};
  for (size_t i = 0; i + 1 < std::size(cuts); ++i)
    ASSERT_TRUE(chunked.Search(lp.Slice(cuts[i], cuts[i + 1])).ok());
  EXPECT_EQ(chunked.num_frames_decoded(), 40);
  const auto parts = chunked.NBest();
  ASSERT_EQ(parts.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(parts[i].tokens, whole[i].tokens);
    EXPECT_EQ(parts[i].score, whole[i].score);
    EXPECT_EQ(parts[i].viterbi_score, whole[i].viterbi_score);
    EXPECT_EQ(parts[i].times, whole[i].times);
  }
  // Best first, at most beam, times increasing and within range.
  ASSERT_EQ(whole.size(), 4u);
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i > 0) {
      EXPECT_GE(whole[i - 1].score, whole[i].score);
    }
    EXPECT_LE(whole[i].viterbi_score, whole[i].score);
    ASSERT_EQ(whole[i].times.size(), whole[i].tokens.size());
    for (size_t k = 0; k < whole[i].times.size(); ++k) {
      EXPECT_LT(whole[i].times[k], 40);
      if (k > 0) {
        EXPECT_GT(whole[i].times[k], whole[i].times[k - 1]);
      }
    }
  }
}

// The PyTorch reference n-best (wenet's search.ctc_prefix_beam_search, double precision) on the
// committed fixtures' CTC log-probs.
TEST(CtcPrefixBeamSearch, MatchesPyTorchFixtures) {
  int checked = 0;
  double max_error = 0;
  for (const std::string& variant : testing::FixtureVariants()) {
    const auto fixture = testing::OpenFixture(variant);
    ASSERT_NE(fixture, nullptr);
    const nlohmann::json ref = testing::ReadFixtureJson(variant);
    const int beam = ref.at("beam").get<int>();
    for (size_t u = 0; u < ref.at("utts").size(); ++u) {
      const auto& utt = ref["utts"][u];
      std::string name = "u";
      name += std::to_string(u);
      name += ".ctc_logp";
      auto view = fixture->Get(name);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      auto logp = fixture->ReadFloat32(name);
      ASSERT_TRUE(logp.ok());
      ASSERT_EQ(view->shape.size(), 2u);
      const LogProbs lp{*logp, static_cast<int>(view->shape[0]), static_cast<int>(view->shape[1])};
      EXPECT_EQ(CtcGreedySearch(lp.View(), 0), utt.at("greedy").get<std::vector<int>>())
          << variant << " " << u;
      const auto nbest = RunSearch(lp, beam, beam);
      const auto& expected = utt.at("prefix_beam");
      ASSERT_EQ(nbest.size(), expected.size()) << variant << " " << u;
      for (size_t i = 0; i < nbest.size(); ++i) {
        EXPECT_EQ(nbest[i].tokens, expected[i].at("tokens").get<std::vector<int>>())
            << variant << " " << u << " " << i;
        const double score = expected[i].at("score").get<double>();
        EXPECT_NEAR(nbest[i].score, score, 1e-4 * std::max(1.0, std::abs(score)))
            << variant << " " << u << " " << i;
        max_error = std::max(max_error, std::abs(nbest[i].score - score));
      }
      ++checked;
    }
  }
  // The fixtures are committed; an empty set means they went missing, not that all is well.
  EXPECT_GT(checked, 0) << "no fixtures under " << U2_FIXTURES_DIR;
  std::printf("checked %d utterances; max |score - reference| = %.3g\n", checked, max_error);
}

// ---------------------------------------------------------------------------------------------
// Endpointer: frame shift 40 ms, so rule2 needs 25 silent frames, rule1 125, rule3 500 frames.

// `frames` frames of P(blank) = p_blank (0.9: silence; 0.3: speech), vocab 2.
LogProbs Frames(int frames, double p_blank) {
  return FromProbs(std::vector<std::vector<double>>(frames, {p_blank, 1 - p_blank}));
}

bool Accept(CtcEndpointer& ep, const LogProbs& chunk, bool decoded) {
  auto fired = ep.AcceptChunk(chunk.View(), decoded);
  EXPECT_TRUE(fired.ok()) << fired.status().ToString();
  return fired.ok() && *fired;
}

TEST(CtcEndpointer, Rule2SilenceAfterSpeech) {
  CtcEndpointer ep({});
  EXPECT_FALSE(Accept(ep, Frames(10, 0.3), true));
  EXPECT_FALSE(Accept(ep, Frames(24, 0.9), true));  // 960 ms
  EXPECT_TRUE(Accept(ep, Frames(1, 0.9), true));    // 1000 ms
  // Without a decoded transcript rule2 does not apply.
  CtcEndpointer quiet({});
  EXPECT_FALSE(Accept(quiet, Frames(25, 0.9), false));
  EXPECT_EQ(quiet.trailing_blank_frames(), 25);
}

TEST(CtcEndpointer, Rule1LongSilenceWithNothingDecoded) {
  CtcEndpointer ep({});
  EXPECT_FALSE(Accept(ep, Frames(124, 0.9), false));  // 4960 ms
  EXPECT_TRUE(Accept(ep, Frames(1, 0.9), false));     // 5000 ms
}

TEST(CtcEndpointer, Rule3MaximumUtteranceLength) {
  CtcEndpointer ep({});
  EXPECT_FALSE(Accept(ep, Frames(499, 0.3), true));  // 19960 ms of speech, no silence
  EXPECT_TRUE(Accept(ep, Frames(1, 0.3), false));    // 20000 ms
  EXPECT_EQ(ep.decoded_frames(), 500);
  ep.Reset();
  EXPECT_EQ(ep.decoded_frames(), 0);
  EXPECT_FALSE(Accept(ep, Frames(1, 0.3), true));
}

TEST(CtcEndpointer, SilenceBrokenLaterInTheChunkDoesNotFire) {
  CtcEndpointer ep({});
  // 30 silent frames (1200 ms: rule2's threshold is crossed at frame 25), then speech, in one chunk.
  LogProbs chunk = Frames(30, 0.9);
  const LogProbs speech = Frames(1, 0.3);
  chunk.data.insert(chunk.data.end(), speech.data.begin(), speech.data.end());
  chunk.frames = 31;
  EXPECT_FALSE(Accept(ep, chunk, true));
  EXPECT_EQ(ep.trailing_blank_frames(), 0);
  // The counter is per frame across chunks; the rules are checked at each chunk's end.
  EXPECT_FALSE(Accept(ep, Frames(24, 0.9), true));
  EXPECT_TRUE(Accept(ep, Frames(8, 0.9), true));  // crossed at this chunk's first frame, fires at its end
}

TEST(CtcEndpointer, ThresholdIsOnBlankProbability) {
  EndpointConfig config;
  config.rule2 = {true, 80, 0};  // 2 frames
  CtcEndpointer ep(config);
  EXPECT_FALSE(Accept(ep, Frames(2, 0.79), true));  // below 0.8: speech
  EXPECT_TRUE(Accept(ep, Frames(2, 0.81), true));
  config.blank_threshold = 0.5f;
  CtcEndpointer lower(config);
  EXPECT_TRUE(Accept(lower, Frames(2, 0.6), true));
}

TEST(CtcEndpointer, RejectsBadConfigAndInput) {
  EndpointConfig bad;
  bad.frame_shift_ms = 0;
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_FALSE(CtcEndpointer(bad).AcceptChunk(Frames(1, 0.9).View(), true).ok());
  bad = {};
  bad.blank_threshold = 1.5f;
  EXPECT_FALSE(bad.Validate().ok());
  bad = {};
  bad.rule1.min_trailing_silence_ms = -1;
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_NE(EndpointConfig{}.ToString().find("min_utterance_length_ms=20000"), std::string::npos);

  EndpointConfig wide;
  wide.blank_id = 5;
  CtcEndpointer ep(wide);
  EXPECT_FALSE(ep.AcceptChunk(Frames(3, 0.9).View(), true).ok());
  EXPECT_EQ(ep.decoded_frames(), 0);
  CtcEndpointer ok({});
  EXPECT_FALSE(ok.AcceptChunk(LogProbView{nullptr, 4, 2}, true).ok());
}

}  // namespace
}  // namespace u2
