// The model at int8 precision (CPU), on every fixture variant (tests/fixtures/README.md):
//  * encoder output, CTC log-probs and attention-decoder scores stay within a stated tolerance of
//    the PyTorch float reference (int8 rounds weights and activations: the tolerance is that of
//    quantization, ~1e-2 relative, not the 1e-4 of the fp32 path);
//  * int8 keeps the engine's invariants exactly, because activations are quantized per row (per
//    token): a batch equals its utterances one by one, and chunk-by-chunk streaming equals the
//    chunk-masked full forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "support/fixtures.h"
#include "u2/model/asr_model.h"

namespace u2 {
namespace {

using testing::ChunkWindows;
using testing::FixtureModelDir;
using testing::FixtureVariants;
using testing::MaxAbsError;
using testing::MaxRelativeError;

// Against PyTorch's float forward: encoder output (relative to its largest value), CTC
// probabilities (absolute; log-probabilities of unlikely tokens move by tenths of a nat, which no
// search notices) and decoder scores (relative). The worst cases over the variants are printed;
// these bounds leave about 2× room above them.
constexpr double kEncoderTolerance = 3e-2;
constexpr double kCtcProbTolerance = 8e-2;
constexpr double kDecoderTolerance = 3e-3;
// A batch computes each row exactly as alone: the fp32 path's own 1e-4.
constexpr double kInvariantTolerance = 1e-4;
// Streaming computes the same rows with float sums in another order; where that moves an
// activation across a rounding boundary, one int8 step (~1/(127·√k) of the product) changes.
constexpr double kStreamingTolerance = 1e-3;

std::string Key(size_t u, const std::string& suffix) {
  std::string k = "u";
  k += std::to_string(u);
  k += '.';
  k += suffix;
  return k;
}

// max |exp(a) − exp(b)| over log-probabilities.
double MaxProbabilityError(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::fabs(std::exp(double(a[i])) - std::exp(double(b[i]))));
  }
  return m;
}

std::shared_ptr<const AsrModel> LoadInt8(const std::string& variant, int threads = 1) {
  ModelLoadOptions o;
  o.precision = Precision::kInt8;
  o.num_threads = threads;
  auto model = AsrModel::Load(FixtureModelDir(variant), o);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? *model : nullptr;
}

struct Inputs {
  std::vector<std::vector<float>> fbank;
  std::vector<FeatureView> feats;
  std::vector<std::vector<std::vector<int>>> nbest;
};

Inputs ReadInputs(const SafeTensorsFile& ref, const std::string& variant) {
  Inputs in;
  const size_t n = testing::ReadFixtureJson(variant)["utts"].size();
  for (size_t u = 0; u < n; ++u) {
    in.fbank.push_back(*ref.ReadFloat32(Key(u, "fbank")));
    if (auto toks = ref.Get(Key(u, "nbest_tokens")); toks.ok()) {
      const int K = static_cast<int>(toks->shape[0]), L = static_cast<int>(toks->shape[1]);
      const std::vector<int32_t> flat = *ref.ReadInt32(Key(u, "nbest_tokens"));
      std::vector<std::vector<int>> hyps(K);
      for (int k = 0; k < K; ++k) {
        for (int t = 0; t < L && flat[k * L + t] >= 0; ++t) hyps[k].push_back(flat[k * L + t]);
      }
      in.nbest.push_back(hyps);
    }
  }
  for (const auto& f : in.fbank) in.feats.push_back({f.data(), static_cast<int>(f.size() / 80), 80});
  return in;
}

TEST(Int8Model, WithinQuantizationToleranceOfPyTorchOnEveryVariant) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    const auto model = LoadInt8(variant);
    ASSERT_TRUE(model);
    EXPECT_NE(model->backend().Name().find("int8"), std::string::npos) << model->backend().Name();
    const auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Inputs in = ReadInputs(*ref, variant);
    auto enc = model->Encode(in.feats);
    ASSERT_TRUE(enc.ok()) << enc.status().ToString();
    double worst_enc = 0, worst_ctc = 0, worst_dec = 0;
    for (size_t u = 0; u < in.feats.size(); ++u) {
      const double e = MaxRelativeError(enc->EncoderFrames(u), *ref->ReadFloat32(Key(u, "encoder_out")));
      const double c = MaxProbabilityError(enc->ctc_log_probs[u], *ref->ReadFloat32(Key(u, "ctc_logp")));
      EXPECT_LT(e, kEncoderTolerance) << "utt " << u;
      EXPECT_LT(c, kCtcProbTolerance) << "utt " << u;
      worst_enc = std::max(worst_enc, e);
      worst_ctc = std::max(worst_ctc, c);
    }
    if (model->config().HasDecoder() && in.nbest.size() == in.feats.size()) {
      auto scores = model->ScoreHypotheses(*enc, in.nbest);
      ASSERT_TRUE(scores.ok()) << scores.status().ToString();
      for (size_t u = 0; u < in.nbest.size(); ++u) {
        const double e = MaxRelativeError((*scores)[u].l2r, *ref->ReadFloat32(Key(u, "l2r_score")));
        EXPECT_LT(e, kDecoderTolerance) << "utt " << u;
        worst_dec = std::max(worst_dec, e);
        if (model->config().HasRightDecoder()) {
          const double r = MaxRelativeError((*scores)[u].r2l, *ref->ReadFloat32(Key(u, "r2l_score")));
          EXPECT_LT(r, kDecoderTolerance) << "utt " << u;
          worst_dec = std::max(worst_dec, r);
        }
      }
    }
    std::printf(
        "[%s] int8 vs PyTorch fp32: encoder_out max rel err %.3g, CTC probability max abs err %.3g, "
        "decoder scores max rel err %.3g\n",
        variant.c_str(), worst_enc, worst_ctc, worst_dec);
  }
}

TEST(Int8Model, BatchedEqualsOneByOne) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    const auto model = LoadInt8(variant, 2);
    ASSERT_TRUE(model);
    const auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Inputs in = ReadInputs(*ref, variant);
    auto batched = model->Encode(in.feats);
    ASSERT_TRUE(batched.ok()) << batched.status().ToString();
    for (size_t u = 0; u < in.feats.size(); ++u) {
      auto one = model->Encode({&in.feats[u], 1});
      ASSERT_TRUE(one.ok());
      EXPECT_LT(MaxRelativeError(batched->EncoderFrames(u), one->EncoderFrames(0)), kInvariantTolerance);
      EXPECT_LT(MaxAbsError(batched->ctc_log_probs[u], one->ctc_log_probs[0]), kInvariantTolerance);
    }
  }
}

TEST(Int8Model, StreamingEqualsChunkMaskedForward) {
  int streamed_variants = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    const auto model = LoadInt8(variant);
    ASSERT_TRUE(model);
    const ModelConfig& c = model->config();
    // Streams exactly only with a chunk mask offline (dynamic chunk) and causal convolutions.
    if (!c.encoder.StreamsExactly()) continue;
    ++streamed_variants;
    const auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Inputs in = ReadInputs(*ref, variant);
    const FeatureView& f = in.feats[0];
    for (const int left : {-1, 1}) {
      StreamingOptions so;
      so.decoding_chunk_size = testing::StreamableChunks(c, {4}).front();
      so.num_decoding_left_chunks = left;
      EncodeOptions eo;
      eo.decoding_chunk_size = so.decoding_chunk_size;
      eo.num_decoding_left_chunks = left;
      auto offline = model->Encode({&f, 1}, eo);
      ASSERT_TRUE(offline.ok()) << offline.status().ToString();
      auto stream = model->NewStream();
      std::vector<float> logp;
      for (const auto& [start, len] : ChunkWindows(c, f.num_frames, so.decoding_chunk_size)) {
        FeatureView chunk{f.data + static_cast<size_t>(start) * f.dim, len, f.dim};
        EncoderStream* s = stream.get();
        auto out = model->ForwardChunk({&s, 1}, {&chunk, 1}, so);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        logp.insert(logp.end(), out->ctc_log_probs[0].begin(), out->ctc_log_probs[0].end());
      }
      const double e = MaxRelativeError(stream->encoder_frames(), offline->EncoderFrames(0));
      const double ec = MaxAbsError(logp, offline->ctc_log_probs[0]);
      EXPECT_LT(e, kStreamingTolerance) << "left chunks " << left;
      EXPECT_LT(ec, kStreamingTolerance) << "left chunks " << left;
      std::printf(
          "[%s] int8 streaming vs chunk-masked int8 forward, left chunks %d: encoder_out max rel err "
          "%.3g, ctc_logp max abs err %.3g\n",
          variant.c_str(), left, e, ec);
    }
  }
  EXPECT_GT(streamed_variants, 0);
}

}  // namespace
}  // namespace u2
