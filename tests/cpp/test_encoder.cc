// Encoder + CTC against the PyTorch fixtures (tests/fixtures/README.md), for every variant:
// per-layer outputs, encoder output, CTC log-probs, chunk-masked outputs, and batch invariance.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>

#include "support/fixtures.h"
#include "u2/model/asr_model.h"

namespace u2 {
namespace {

using testing::FixtureModelDir;
using testing::FixtureVariants;
using testing::MaxAbsError;
using testing::MaxRelativeError;

struct Utterance {
  std::vector<float> fbank;
  int frames = 0;
};

std::vector<Utterance> LoadUtterances(const SafeTensorsFile& ref, int count) {
  std::vector<Utterance> out;
  for (int u = 0; u < count; ++u) {
    auto view = ref.Get("u" + std::to_string(u) + ".fbank");
    if (!view.ok()) break;
    Utterance x;
    x.frames = static_cast<int>(view->shape[0]);
    x.fbank = *ref.ReadFloat32("u" + std::to_string(u) + ".fbank");
    out.push_back(std::move(x));
  }
  return out;
}

std::vector<float> Ref(const SafeTensorsFile& ref, const std::string& name) {
  auto v = ref.ReadFloat32(name);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : std::vector<float>{};
}

int NumUtterances(const std::string& variant) {
  return static_cast<int>(testing::ReadFixtureJson(variant)["utts"].size());
}

TEST(EncoderFixtures, VariantsExist) { EXPECT_GE(FixtureVariants().size(), 4u); }

TEST(EncoderFixtures, MatchesPyTorchLayerByLayer) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const auto utts = LoadUtterances(*ref, NumUtterances(variant));
    ASSERT_FALSE(utts.empty());
    const int D = (*model)->config().encoder.output_size;
    double worst_layer = 0, worst_out = 0, worst_ctc = 0;
    for (size_t u = 0; u < utts.size(); ++u) {
      const std::string p = "u" + std::to_string(u) + ".";
      FeatureView f{utts[u].fbank.data(), utts[u].frames, 80};
      EncodeOptions opts;
      opts.capture_layers = true;
      auto enc = (*model)->Encode({&f, 1}, opts);
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      const auto ref_out = Ref(*ref, p + "encoder_out");
      ASSERT_EQ(enc->lengths[0] * D, static_cast<int>(ref_out.size()));
      const double e_embed = MaxRelativeError(enc->embed[0], Ref(*ref, p + "embed"));
      EXPECT_LT(e_embed, 1e-4) << p << "embed";
      worst_layer = std::max(worst_layer, e_embed);
      for (int j = 0; j < (*model)->config().encoder.num_blocks; ++j) {
        const double e = MaxRelativeError(enc->layers[0][j], Ref(*ref, p + "layer" + std::to_string(j)));
        EXPECT_LT(e, 1e-4) << p << "layer" << j;
        worst_layer = std::max(worst_layer, e);
      }
      const double e_out = MaxRelativeError(enc->EncoderFrames(0), ref_out);
      EXPECT_LT(e_out, 1e-4) << p << "encoder_out";
      const double e_ctc = MaxAbsError(enc->ctc_log_probs[0], Ref(*ref, p + "ctc_logp"));
      EXPECT_LT(e_ctc, 1e-4) << p << "ctc_logp";
      worst_out = std::max(worst_out, e_out);
      worst_ctc = std::max(worst_ctc, e_ctc);
    }
    std::printf("[%s] max rel err: embed/layers %.3g, encoder_out %.3g; ctc_logp max abs err %.3g\n",
                variant.c_str(), worst_layer, worst_out, worst_ctc);
  }
}

TEST(EncoderFixtures, ChunkMaskedMatchesPyTorch) {
  const std::regex name_re(R"(u(\d+)\.chunk(\d+)_left(-?\d+)\.encoder_out)");
  int checked = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const auto utts = LoadUtterances(*ref, NumUtterances(variant));
    double worst = 0;
    for (const std::string& name : ref->Names()) {
      std::smatch m;
      if (!std::regex_match(name, m, name_re)) continue;
      const int u = std::stoi(m[1]);
      ASSERT_LT(u, static_cast<int>(utts.size()));
      EncodeOptions opts;
      opts.decoding_chunk_size = std::stoi(m[2]);
      opts.num_decoding_left_chunks = std::stoi(m[3]);
      FeatureView f{utts[u].fbank.data(), utts[u].frames, 80};
      auto enc = (*model)->Encode({&f, 1}, opts);
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      const double e = MaxRelativeError(enc->EncoderFrames(0), Ref(*ref, name));
      EXPECT_LT(e, 1e-4) << name;
      // The chunk mask must matter, or this test would not test it.
      FeatureView g = f;
      auto full = (*model)->Encode({&g, 1});
      ASSERT_TRUE(full.ok());
      if (opts.decoding_chunk_size < enc->lengths[0]) {
        EXPECT_GT(MaxAbsError(full->EncoderFrames(0), Ref(*ref, name)), 1e-3) << name;
      }
      worst = std::max(worst, e);
      ++checked;
    }
    if ((*model)->config().encoder.use_dynamic_chunk) {
      std::printf("[%s] chunk-masked encoder_out max rel err %.3g\n", variant.c_str(), worst);
    }
  }
  EXPECT_GT(checked, 0) << "no chunk-masked references found";
}

// All utterances of a variant in one batch must give each utterance's batch-size-1 result. The
// batch is packed (no padding), so the only differences left are OpenBLAS choosing other kernels
// for another number of rows: float rounding, ~1e-7 relative.
void CheckBatchInvariance(const EncodeOptions& base_opts) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const auto utts = LoadUtterances(*ref, NumUtterances(variant));
    ASSERT_GE(utts.size(), 2u);
    std::vector<FeatureView> feats;
    for (const Utterance& u : utts) feats.push_back({u.fbank.data(), u.frames, 80});
    EncodeOptions opts = base_opts;
    opts.capture_layers = true;
    auto batch = (*model)->Encode(feats, opts);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    double worst = 0;
    for (size_t u = 0; u < utts.size(); ++u) {
      auto single = (*model)->Encode({&feats[u], 1}, opts);
      ASSERT_TRUE(single.ok());
      ASSERT_EQ(batch->lengths[u], single->lengths[0]);
      worst = std::max(worst, MaxRelativeError(batch->EncoderFrames(u), single->EncoderFrames(0)));
      worst = std::max(worst, MaxRelativeError(batch->ctc_log_probs[u], single->ctc_log_probs[0]));
      worst = std::max(worst, MaxRelativeError(batch->embed[u], single->embed[0]));
      for (size_t j = 0; j < single->layers[0].size(); ++j) {
        worst = std::max(worst, MaxRelativeError(batch->layers[u][j], single->layers[0][j]));
      }
    }
    EXPECT_LE(worst, 1e-5);
    std::printf("[%s] batch (B=%zu) vs B=1, chunk %d: max err %.3g\n", variant.c_str(), utts.size(),
                base_opts.decoding_chunk_size, worst);
  }
}

TEST(EncoderBatch, BatchedEqualsOneByOne) { CheckBatchInvariance({}); }

TEST(EncoderBatch, BatchedEqualsOneByOneWithChunkMask) {
  EncodeOptions opts;
  opts.decoding_chunk_size = 4;
  opts.num_decoding_left_chunks = 1;
  CheckBatchInvariance(opts);
}

TEST(EncoderInput, RejectsBadFeatures) {
  const auto variants = FixtureVariants();
  ASSERT_FALSE(variants.empty());
  auto model = AsrModel::Load(FixtureModelDir(variants[0]));
  ASSERT_TRUE(model.ok());
  std::vector<float> data(100 * 80, 0.5f);
  FeatureView wrong_dim{data.data(), 100, 40};
  auto r = (*model)->Encode({&wrong_dim, 1});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input_dim"), std::string::npos) << r.status().ToString();
  FeatureView null_data{nullptr, 100, 80};
  EXPECT_FALSE((*model)->Encode({&null_data, 1}).ok());
  FeatureView negative{data.data(), -3, 80};
  EXPECT_FALSE((*model)->Encode({&negative, 1}).ok());
  EncodeOptions zero_chunk;
  zero_chunk.decoding_chunk_size = 0;
  FeatureView ok_view{data.data(), 100, 80};
  EXPECT_FALSE((*model)->Encode({&ok_view, 1}, zero_chunk).ok());
  // Too long for the positional table: an error, not a crash.
  const int too_many = ((*model)->config().MaxEncoderFrames() + 1) * (*model)->config().SubsamplingRate() + 20;
  std::vector<float> huge(static_cast<size_t>(too_many) * 80, 0.1f);
  FeatureView too_long{huge.data(), too_many, 80};
  auto long_r = (*model)->Encode({&too_long, 1});
  EXPECT_FALSE(long_r.ok());
  // Too short for one encoder frame: zero frames, empty log-probs, no crash; the other row intact.
  FeatureView short_view{data.data(), 3, 80};
  std::vector<FeatureView> mixed = {short_view, ok_view};
  auto m = (*model)->Encode(mixed);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->lengths[0], 0);
  EXPECT_TRUE(m->ctc_log_probs[0].empty());
  auto alone = (*model)->Encode({&ok_view, 1});
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ(m->ctc_log_probs[1], alone->ctc_log_probs[0]);
}

}  // namespace
}  // namespace u2
