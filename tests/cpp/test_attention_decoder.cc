// Attention-decoder (rescoring) scores against the PyTorch fixtures, and batched == one by one.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>

#include "support/fixtures.h"
#include "u2/model/asr_model.h"
#include "u2/model/decoder.h"

namespace u2 {
namespace {

// "u{u}.{suffix}" (built by appending: GCC 12 warns falsely on "literal" + std::string).
std::string UttKey(size_t u, const char* suffix) {
  std::string k = "u";
  k += std::to_string(u);
  k += '.';
  k += suffix;
  return k;
}

using testing::FixtureModelDir;
using testing::FixtureVariants;
using testing::MaxRelativeError;

struct VariantData {
  std::shared_ptr<const AsrModel> model;
  std::vector<std::vector<float>> fbank;
  std::vector<FeatureView> feats;
  std::vector<std::vector<std::vector<int>>> nbest;  // [utt][hyp] tokens
  std::vector<std::vector<float>> l2r, r2l;
};

bool LoadVariant(const std::string& variant, VariantData* d) {
  auto model = AsrModel::Load(FixtureModelDir(variant));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return false;
  d->model = *model;
  auto ref = testing::OpenFixture(variant);
  if (!ref) return false;
  const int n = static_cast<int>(testing::ReadFixtureJson(variant)["utts"].size());
  for (int u = 0; u < n; ++u) {
    const std::string p = UttKey(u, "");
    d->fbank.push_back(*ref->ReadFloat32(p + "fbank"));
    const auto toks = ref->Get(p + "nbest_tokens");
    EXPECT_TRUE(toks.ok());
    if (!toks.ok()) return false;
    const int K = static_cast<int>(toks->shape[0]);
    const int L = static_cast<int>(toks->shape[1]);
    const std::vector<int32_t> flat = *ref->ReadInt32(p + "nbest_tokens");
    std::vector<std::vector<int>> hyps(K);
    for (int k = 0; k < K; ++k) {
      for (int t = 0; t < L && flat[k * L + t] >= 0; ++t) hyps[k].push_back(flat[k * L + t]);
    }
    d->nbest.push_back(hyps);
    d->l2r.push_back(*ref->ReadFloat32(p + "l2r_score"));
    d->r2l.push_back(*ref->ReadFloat32(p + "r2l_score"));
  }
  for (const auto& f : d->fbank) d->feats.push_back({f.data(), static_cast<int>(f.size() / 80), 80});
  return true;
}

TEST(AttentionDecoder, ScoresMatchPyTorchBatched) {
  int variants_with_decoder = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    VariantData d;
    ASSERT_TRUE(LoadVariant(variant, &d));
    if (!d.model->config().HasDecoder()) continue;
    ++variants_with_decoder;
    auto enc = d.model->Encode(d.feats);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    auto scores = d.model->ScoreHypotheses(*enc, d.nbest);
    ASSERT_TRUE(scores.ok()) << scores.status().ToString();
    ASSERT_EQ(scores->size(), d.nbest.size());
    double worst_l2r = 0, worst_r2l = 0;
    for (size_t u = 0; u < d.nbest.size(); ++u) {
      const double e = MaxRelativeError((*scores)[u].l2r, d.l2r[u]);
      EXPECT_LT(e, 1e-4) << "utt " << u << " l2r";
      worst_l2r = std::max(worst_l2r, e);
      if (d.model->config().HasRightDecoder()) {
        const double er = MaxRelativeError((*scores)[u].r2l, d.r2l[u]);
        EXPECT_LT(er, 1e-4) << "utt " << u << " r2l";
        worst_r2l = std::max(worst_r2l, er);
      } else {
        EXPECT_TRUE((*scores)[u].r2l.empty());
      }
    }
    std::printf("[%s] decoder scores max rel err: l2r %.3g, r2l %.3g\n", variant.c_str(), worst_l2r,
                worst_r2l);
  }
  EXPECT_GT(variants_with_decoder, 0);
}

TEST(AttentionDecoder, BatchedEqualsOneByOne) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    VariantData d;
    ASSERT_TRUE(LoadVariant(variant, &d));
    if (!d.model->config().HasDecoder()) continue;
    auto enc = d.model->Encode(d.feats);
    ASSERT_TRUE(enc.ok());
    auto batched = d.model->ScoreHypotheses(*enc, d.nbest);
    ASSERT_TRUE(batched.ok());
    double worst = 0;
    for (size_t u = 0; u < d.nbest.size(); ++u) {
      auto enc1 = d.model->Encode({&d.feats[u], 1});
      ASSERT_TRUE(enc1.ok());
      for (size_t k = 0; k < d.nbest[u].size(); ++k) {
        std::vector<std::vector<std::vector<int>>> one = {{d.nbest[u][k]}};
        auto s = d.model->ScoreHypotheses(*enc1, one);
        ASSERT_TRUE(s.ok());
        worst = std::max(worst, std::abs(double(s->at(0).l2r[0]) - (*batched)[u].l2r[k]) /
                                    std::max(1.0, std::abs(double((*batched)[u].l2r[k]))));
        if (d.model->config().HasRightDecoder()) {
          worst = std::max(worst, std::abs(double(s->at(0).r2l[0]) - (*batched)[u].r2l[k]) /
                                      std::max(1.0, std::abs(double((*batched)[u].r2l[k]))));
        }
      }
    }
    EXPECT_LT(worst, 1e-5);
    std::printf("[%s] decoder batched vs one-by-one: max rel diff %.3g\n", variant.c_str(), worst);
  }
}

DecoderSequence Seq(int utterance, std::vector<int> inputs) {
  DecoderSequence s;
  s.utterance = utterance;
  s.inputs = inputs;
  s.targets.assign(inputs.begin() + 1, inputs.end());
  s.targets.push_back(99);
  return s;
}

// Hand-checked: sos=9; hypotheses of utterance 0: [a b c], [a b d], [a e], [a b] (a prefix of
// the first), [a b c] again; utterance 1: [a b]. Rows: 0 sos, 1 a, 2 b, 3 c | 4 d | 5 e |
// (none) | (none) | utterance 1: 6 sos, 7 a, 8 b.
TEST(DecoderRowPlan, SharesPrefixesWithinAnUtterance) {
  const std::vector<DecoderSequence> seqs = {Seq(0, {9, 1, 2, 3}), Seq(0, {9, 1, 2, 4}), Seq(0, {9, 1, 5}),
                                             Seq(0, {9, 1, 2}),    Seq(0, {9, 1, 2, 3}), Seq(1, {9, 1, 2})};
  const DecoderRowPlan plan = PlanDecoderRows(seqs);
  EXPECT_EQ(plan.tokens, (std::vector<int>{9, 1, 2, 3, 4, 5, 9, 1, 2}));
  ASSERT_EQ(plan.runs.size(), 4u);
  const std::vector<std::array<int, 3>> want_runs = {{0, 4, 0}, {4, 1, 3}, {5, 1, 2}, {6, 3, 0}};
  for (size_t k = 0; k < plan.runs.size(); ++k) {
    EXPECT_EQ(plan.runs[k].row, want_runs[k][0]) << k;
    EXPECT_EQ(plan.runs[k].len, want_runs[k][1]) << k;
    EXPECT_EQ(plan.runs[k].pos, want_runs[k][2]) << k;
  }
  EXPECT_EQ(plan.run_sequence, (std::vector<int>{0, 1, 2, 5}));
  EXPECT_EQ(plan.path_start, (std::vector<int>{0, 4, 8, 11, 14, 18, 21}));
  EXPECT_EQ(plan.path_rows,
            (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 5, 0, 1, 2, 0, 1, 2, 3, 6, 7, 8}));
  EXPECT_TRUE(PlanDecoderRows({}).tokens.empty());
}

// Scoring hypotheses that share prefixes (and repeat, and are prefixes of one another) gives each
// the score it gets alone, for every variant's decoders (l2r shares prefixes, r2l shares suffixes).
TEST(AttentionDecoder, SharedPrefixesScoreAsAlone) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    VariantData d;
    ASSERT_TRUE(LoadVariant(variant, &d));
    if (!d.model->config().HasDecoder()) continue;
    const int V = d.model->config().vocab_size;
    auto tok = [&](int i) { return 3 + (i * 7) % (V - 3); };
    std::vector<std::vector<std::vector<int>>> nbest(d.feats.size());
    for (size_t u = 0; u < nbest.size(); ++u) {
      std::vector<int> base;
      for (int t = 0; t < 9; ++t) base.push_back(tok(t + static_cast<int>(u)));
      auto& hyps = nbest[u];
      hyps.push_back(base);
      auto changed = base;
      changed[6] = tok(40);
      hyps.push_back(changed);  // shares 6 tokens with base
      changed = base;
      changed[1] = tok(41);
      hyps.push_back(changed);  // shares 1 token with base, and its suffix
      hyps.push_back(std::vector<int>(base.begin(), base.begin() + 4));  // a prefix of base
      hyps.push_back(base);                                              // a repeat
      hyps.push_back({});                                                // empty
    }
    auto enc = d.model->Encode(d.feats);
    ASSERT_TRUE(enc.ok());
    auto together = d.model->ScoreHypotheses(*enc, nbest);
    ASSERT_TRUE(together.ok()) << together.status().ToString();
    double worst = 0;
    for (size_t u = 0; u < nbest.size(); ++u) {
      auto enc1 = d.model->Encode({&d.feats[u], 1});
      ASSERT_TRUE(enc1.ok());
      for (size_t k = 0; k < nbest[u].size(); ++k) {
        std::vector<std::vector<std::vector<int>>> one = {{nbest[u][k]}};
        auto s = d.model->ScoreHypotheses(*enc1, one);
        ASSERT_TRUE(s.ok());
        auto rel = [](double a, double b) { return std::abs(a - b) / std::max(1.0, std::abs(b)); };
        worst = std::max(worst, rel((*together)[u].l2r[k], s->at(0).l2r[0]));
        if (d.model->config().HasRightDecoder()) {
          worst = std::max(worst, rel((*together)[u].r2l[k], s->at(0).r2l[0]));
        }
      }
      EXPECT_EQ((*together)[u].l2r[0], (*together)[u].l2r[4]);  // the repeat: the very same rows
    }
    EXPECT_LT(worst, 1e-5);
    std::printf("[%s] shared prefixes vs alone: max rel diff %.3g\n", variant.c_str(), worst);
  }
}

TEST(AttentionDecoder, EmptyHypothesisAndBadInput) {
  const auto variants = FixtureVariants();
  ASSERT_FALSE(variants.empty());
  VariantData d;
  ASSERT_TRUE(LoadVariant(variants.back(), &d));
  ASSERT_TRUE(d.model->config().HasDecoder());
  auto enc = d.model->Encode({&d.feats[0], 1});
  ASSERT_TRUE(enc.ok());
  // The empty hypothesis scores log p(eos | sos): finite and negative.
  std::vector<std::vector<std::vector<int>>> empty = {{{}}};
  auto s = d.model->ScoreHypotheses(*enc, empty);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(std::isfinite(s->at(0).l2r[0]));
  EXPECT_LT(s->at(0).l2r[0], 0.0f);
  // Out-of-range token id and mismatched utterance count are errors.
  std::vector<std::vector<std::vector<int>>> bad = {{{1, d.model->config().vocab_size}}};
  auto b = d.model->ScoreHypotheses(*enc, bad);
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("token id"), std::string::npos) << b.status().ToString();
  std::vector<std::vector<std::vector<int>>> two = {{{1}}, {{2}}};
  EXPECT_FALSE(d.model->ScoreHypotheses(*enc, two).ok());
  // A malformed EncoderOutput (rows beyond encoder_out) is an error, not a crash.
  EncoderOutput broken = *enc;
  broken.lengths[0] += 5;
  auto br = d.model->ScoreHypotheses(broken, empty);
  EXPECT_FALSE(br.ok());
  EXPECT_NE(br.status().message().find("outside"), std::string::npos) << br.status().ToString();
  // No hypotheses at all: empty score lists.
  std::vector<std::vector<std::vector<int>>> none = {{}};
  auto n = d.model->ScoreHypotheses(*enc, none);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->at(0).l2r.empty());
}

}  // namespace
}  // namespace u2
