// Attention rescoring: hand-computed combinations of CTC and decoder scores (docs/wenet-numerics.md §5.6).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "u2/decode/rescoring.h"

namespace u2 {
namespace {

std::vector<CtcHypothesis> Hyps(const std::vector<float>& ctc_scores) {
  std::vector<CtcHypothesis> hyps;
  for (size_t i = 0; i < ctc_scores.size(); ++i) {
    CtcHypothesis h;
    h.tokens = std::vector<int>(i + 1, 3);
    h.score = ctc_scores[i];
    hyps.push_back(h);
  }
  return hyps;
}

std::vector<size_t> Order(const std::vector<RescoredHypothesis>& ranked) {
  std::vector<size_t> order;
  for (const auto& r : ranked) order.push_back(r.index);
  return order;
}

TEST(AttentionRescoring, BidirectionalHandComputed) {
  // ctc_weight .5, reverse_weight .3, rescoring_weight 1:
  //   hyp 0: att = .7*-5 + .3*-4 = -4.7; final = -4.7 + .5*-1 = -5.2
  //   hyp 1: att = .7*-3 + .3*-6 = -3.9; final = -3.9 + .5*-2 = -4.9
  //   hyp 2: att = .7*-4 + .3*-1 = -3.1; final = -3.1 + .5*-3 = -4.6
  const auto hyps = Hyps({-1, -2, -3});
  const std::vector<float> l2r{-5, -3, -4}, r2l{-4, -6, -1};
  auto ranked = RankByAttentionRescoring(hyps, l2r, r2l, {.ctc_weight = 0.5f, .reverse_weight = 0.3f});
  ASSERT_TRUE(ranked.ok()) << ranked.status().ToString();
  EXPECT_EQ(Order(*ranked), (std::vector<size_t>{2, 1, 0}));
  const double expected_final[] = {-5.2, -4.9, -4.6}, expected_att[] = {-4.7, -3.9, -3.1};
  for (const auto& r : *ranked) {
    EXPECT_NEAR(r.final_score, expected_final[r.index], 1e-5);
    EXPECT_NEAR(r.attention_score, expected_att[r.index], 1e-5);
  }
}

TEST(AttentionRescoring, ReverseWeightZeroUsesLeftToRightAloneAndTiesKeepLowerIndex) {
  // att = L2R (no (1 - rw) factor); r2l is not read and may be empty.
  //   final = l2r + .5*ctc = [-5 - .5, -4 - 1, -4 - 1.5] = [-5.5, -5, -5.5]: hyps 0 and 2 tie exactly.
  const auto hyps = Hyps({-1, -2, -3});
  const std::vector<float> l2r{-5, -4, -4};
  auto ranked = RankByAttentionRescoring(hyps, l2r, {}, {.ctc_weight = 0.5f, .reverse_weight = 0.0f});
  ASSERT_TRUE(ranked.ok());
  EXPECT_EQ(Order(*ranked), (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ((*ranked)[0].attention_score, -4.0f);
  EXPECT_EQ((*ranked)[1].final_score, -5.5f);
  EXPECT_EQ((*ranked)[2].final_score, -5.5f);
}

TEST(AttentionRescoring, CtcWeightZeroIgnoresInfiniteCtcScores) {
  // A padded candidate with CTC score -inf must not become NaN when ctc_weight = 0.
  const auto hyps = Hyps({-INFINITY, -1});
  const std::vector<float> l2r{-1, -2};
  auto ranked = RankByAttentionRescoring(hyps, l2r, {}, {.ctc_weight = 0.0f});
  ASSERT_TRUE(ranked.ok());
  EXPECT_EQ(Order(*ranked), (std::vector<size_t>{0, 1}));
  EXPECT_EQ((*ranked)[0].final_score, -1.0f);
  EXPECT_EQ((*ranked)[1].final_score, -2.0f);
}

TEST(AttentionRescoring, RescoringWeightZeroRanksByCtc) {
  // Attention scores pointing the other way are ignored: final = .5*ctc.
  const auto hyps = Hyps({-3, -1, -2});
  const std::vector<float> l2r{-1, -9, -5};
  auto ranked = RankByAttentionRescoring(hyps, l2r, {}, {.ctc_weight = 0.5f, .rescoring_weight = 0.0f});
  ASSERT_TRUE(ranked.ok());
  EXPECT_EQ(Order(*ranked), (std::vector<size_t>{1, 2, 0}));
  EXPECT_EQ((*ranked)[0].final_score, -0.5f);
}

TEST(AttentionRescoring, NanRanksLast) {
  const auto hyps = Hyps({0, 0});
  const std::vector<float> l2r{NAN, -100};
  auto ranked = RankByAttentionRescoring(hyps, l2r, {}, {});
  ASSERT_TRUE(ranked.ok());
  EXPECT_EQ(Order(*ranked), (std::vector<size_t>{1, 0}));
}

TEST(AttentionRescoring, EmptyAndBadInput) {
  auto empty = RankByAttentionRescoring({}, {}, {}, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());

  const auto hyps = Hyps({-1, -2});
  const std::vector<float> one{-1}, two{-1, -2};
  EXPECT_EQ(RankByAttentionRescoring(hyps, one, {}, {}).status().code(), StatusCode::kInvalidArgument);
  // reverse_weight > 0 needs r2l scores.
  EXPECT_EQ(RankByAttentionRescoring(hyps, two, {}, {.reverse_weight = 0.5f}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RankByAttentionRescoring(hyps, two, one, {.reverse_weight = 0.5f}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE((RescoringWeights{.reverse_weight = 1.5f}).Validate().ok());
  EXPECT_FALSE((RescoringWeights{.ctc_weight = -1}).Validate().ok());
  EXPECT_FALSE((RescoringWeights{.ctc_weight = NAN}).Validate().ok());
  EXPECT_FALSE((RescoringWeights{.rescoring_weight = INFINITY}).Validate().ok());
  EXPECT_EQ(RankByAttentionRescoring(hyps, two, two, {.reverse_weight = -0.1f}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_NE(RescoringWeights{}.ToString().find("ctc_weight=0.5"), std::string::npos);
}

// The PyTorch reference's rescoring (wenet attention_rescoring) on the fixtures: its n-best CTC
// scores and decoder scores in, its final scores and chosen hypothesis out.
TEST(AttentionRescoring, MatchesPyTorchFixtures) {
  int checked = 0;
  double max_error = 0;
  for (const std::string& variant : testing::FixtureVariants()) {
    const auto fixture = testing::OpenFixture(variant);
    ASSERT_NE(fixture, nullptr);
    const nlohmann::json ref = testing::ReadFixtureJson(variant);
    const RescoringWeights weights{.ctc_weight = ref.at("ctc_weight").get<float>(),
                                   .reverse_weight = ref.at("reverse_weight").get<float>()};
    for (size_t u = 0; u < ref.at("utts").size(); ++u) {
      const auto& utt = ref["utts"][u];
      std::vector<CtcHypothesis> hyps;
      for (const auto& h : utt.at("prefix_beam")) {
        CtcHypothesis hyp;
        hyp.tokens = h.at("tokens").get<std::vector<int>>();
        hyp.score = h.at("score").get<float>();
        hyps.push_back(hyp);
      }
      std::string prefix = "u";
      prefix += std::to_string(u);
      auto l2r = fixture->ReadFloat32(prefix + ".l2r_score");
      auto r2l = fixture->ReadFloat32(prefix + ".r2l_score");
      ASSERT_TRUE(l2r.ok() && r2l.ok()) << variant << " " << u;
      auto ranked = RankByAttentionRescoring(hyps, *l2r, *r2l, weights);
      ASSERT_TRUE(ranked.ok()) << ranked.status().ToString();
      const auto& expected = utt.at("rescoring");
      ASSERT_FALSE(ranked->empty());
      EXPECT_EQ((*ranked)[0].index, expected.at("index").get<size_t>()) << variant << " " << u;
      EXPECT_EQ(hyps[(*ranked)[0].index].tokens, expected.at("tokens").get<std::vector<int>>());
      const auto scores = expected.at("scores").get<std::vector<double>>();
      ASSERT_EQ(scores.size(), ranked->size());
      for (const auto& r : *ranked) {
        EXPECT_NEAR(r.final_score, scores[r.index], 1e-4 * std::max(1.0, std::abs(scores[r.index])))
            << variant << " " << u << " hyp " << r.index;
        max_error = std::max(max_error, std::abs(r.final_score - scores[r.index]));
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "no fixtures under " << U2_FIXTURES_DIR;
  std::printf("checked %d utterances; max |final - reference| = %.3g\n", checked, max_error);
}

}  // namespace
}  // namespace u2
