// The full model on the CUDA backend against the PyTorch reference fixtures (tests/fixtures), for
// every variant: per-layer encoder outputs, encoder output, CTC log-probs, chunk-masked encoder
// outputs, attention-decoder scores — within 1e-4 relative (fp32, TF32 off), the CPU's tolerance —
// plus batched == one by one on the GPU, the fp16-operand GEMM mode within 1e-2, and device errors
// surfacing as the model call's error.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <regex>

#include "gpu_test_util.h"
#include "support/fixtures.h"
#include "u2/model/asr_model.h"

namespace u2 {
namespace {

using testing::FixtureModelDir;
using testing::FixtureVariants;
using testing::MaxAbsError;
using testing::MaxRelativeError;

std::shared_ptr<const AsrModel> LoadGpuModel(const std::string& variant) {
  ModelLoadOptions o;
  o.device = DeviceType::kCuda;
  auto model = AsrModel::Load(FixtureModelDir(variant), o);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  EXPECT_EQ((*model)->backend().device(), DeviceType::kCuda);
  return *model;
}

// Utterance b's encoder output, downloaded through the backend by the API itself.
std::vector<float> EncoderFrames(const AsrModel&, const EncoderOutput& enc, int b) {
  return enc.EncoderFrames(b);
}

// "u<index>." built step by step (GCC 12 warns falsely on "u" + std::to_string(i) + ".").
std::string Prefix(size_t u) {
  std::string p = "u";
  p += std::to_string(u);
  p += '.';
  return p;
}

std::vector<float> Ref(const SafeTensorsFile& ref, const std::string& name) {
  auto v = ref.ReadFloat32(name);
  EXPECT_TRUE(v.ok()) << name << ": " << v.status().ToString();
  return v.ok() ? *v : std::vector<float>{};
}

struct Utterances {
  std::vector<std::vector<float>> fbank;
  std::vector<FeatureView> feats;
};

Utterances Load(const SafeTensorsFile& ref, const std::string& variant) {
  Utterances u;
  const int n = static_cast<int>(testing::ReadFixtureJson(variant)["utts"].size());
  for (int i = 0; i < n; ++i) u.fbank.push_back(Ref(ref, Prefix(i) + "fbank"));
  for (const auto& f : u.fbank) u.feats.push_back({f.data(), static_cast<int>(f.size() / 80), 80});
  return u;
}

TEST(GpuModel, EncoderMatchesPyTorchLayerByLayer) {
  ASSERT_GE(FixtureVariants().size(), 4u);
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = LoadGpuModel(variant);
    ASSERT_TRUE(model);
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    ASSERT_FALSE(utts.feats.empty());
    double worst_layer = 0, worst_out = 0, worst_ctc = 0;
    for (size_t u = 0; u < utts.feats.size(); ++u) {
      const std::string p = Prefix(u);
      EncodeOptions opts;
      opts.capture_layers = true;
      auto enc = model->Encode({&utts.feats[u], 1}, opts);
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      ASSERT_TRUE(CudaSynchronize(model->backend()).ok()) << CudaSynchronize(model->backend()).ToString();
      double e = MaxRelativeError(enc->embed[0], Ref(*ref, p + "embed"));
      EXPECT_LT(e, 1e-4) << p << "embed";
      worst_layer = std::max(worst_layer, e);
      for (int j = 0; j < model->config().encoder.num_blocks; ++j) {
        e = MaxRelativeError(enc->layers[0][j], Ref(*ref, p + "layer" + std::to_string(j)));
        EXPECT_LT(e, 1e-4) << p << "layer" << j;
        worst_layer = std::max(worst_layer, e);
      }
      e = MaxRelativeError(EncoderFrames(*model, *enc, 0), Ref(*ref, p + "encoder_out"));
      EXPECT_LT(e, 1e-4) << p << "encoder_out";
      worst_out = std::max(worst_out, e);
      e = MaxAbsError(enc->ctc_log_probs[0], Ref(*ref, p + "ctc_logp"));
      EXPECT_LT(e, 1e-4) << p << "ctc_logp";
      worst_ctc = std::max(worst_ctc, e);
    }
    std::printf("[gpu %s] max rel err: embed/layers %.3g, encoder_out %.3g; ctc_logp max abs err %.3g\n",
                variant.c_str(), worst_layer, worst_out, worst_ctc);
  }
}

TEST(GpuModel, ChunkMaskedEncoderMatchesPyTorch) {
  const std::regex name_re(R"(u(\d+)\.chunk(\d+)_left(-?\d+)\.encoder_out)");
  int checked = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = LoadGpuModel(variant);
    ASSERT_TRUE(model);
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    double worst = 0;
    for (const std::string& name : ref->Names()) {
      std::smatch m;
      if (!std::regex_match(name, m, name_re)) continue;
      const int u = std::stoi(m[1]);
      ASSERT_LT(u, static_cast<int>(utts.feats.size()));
      EncodeOptions opts;
      opts.decoding_chunk_size = std::stoi(m[2]);
      opts.num_decoding_left_chunks = std::stoi(m[3]);
      auto enc = model->Encode({&utts.feats[u], 1}, opts);
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      const double e = MaxRelativeError(EncoderFrames(*model, *enc, 0), Ref(*ref, name));
      EXPECT_LT(e, 1e-4) << name;
      worst = std::max(worst, e);
      ++checked;
    }
    EXPECT_TRUE(CudaSynchronize(model->backend()).ok());
    std::printf("[gpu %s] chunk-masked encoder_out max rel err %.3g\n", variant.c_str(), worst);
  }
  EXPECT_GT(checked, 0) << "no chunk-masked references found";
}

TEST(GpuModel, BatchedEncoderEqualsOneByOne) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = LoadGpuModel(variant);
    ASSERT_TRUE(model);
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    auto batch = model->Encode(utts.feats);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    double worst = 0;
    for (size_t u = 0; u < utts.feats.size(); ++u) {
      auto single = model->Encode({&utts.feats[u], 1});
      ASSERT_TRUE(single.ok());
      worst = std::max(worst, MaxRelativeError(EncoderFrames(*model, *batch, static_cast<int>(u)),
                                               EncoderFrames(*model, *single, 0)));
      worst = std::max(worst, MaxRelativeError(batch->ctc_log_probs[u], single->ctc_log_probs[0]));
    }
    EXPECT_TRUE(CudaSynchronize(model->backend()).ok());
    EXPECT_LE(worst, 1e-5);
    std::printf("[gpu %s] batch vs B=1: max err %.3g\n", variant.c_str(), worst);
  }
}

TEST(GpuModel, DecoderScoresMatchPyTorch) {
  int with_decoder = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = LoadGpuModel(variant);
    ASSERT_TRUE(model);
    if (!model->config().HasDecoder()) continue;
    ++with_decoder;
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    std::vector<std::vector<std::vector<int>>> nbest;
    for (size_t u = 0; u < utts.feats.size(); ++u) {
      const std::string p = Prefix(u);
      auto toks = ref->Get(p + "nbest_tokens");
      ASSERT_TRUE(toks.ok());
      const int K = static_cast<int>(toks->shape[0]), L = static_cast<int>(toks->shape[1]);
      const std::vector<int32_t> flat = *ref->ReadInt32(p + "nbest_tokens");
      std::vector<std::vector<int>> hyps(K);
      for (int k = 0; k < K; ++k) {
        for (int t = 0; t < L && flat[k * L + t] >= 0; ++t) hyps[k].push_back(flat[k * L + t]);
      }
      nbest.push_back(hyps);
    }
    auto enc = model->Encode(utts.feats);
    ASSERT_TRUE(enc.ok());
    auto scores = model->ScoreHypotheses(*enc, nbest);
    ASSERT_TRUE(scores.ok()) << scores.status().ToString();
    ASSERT_TRUE(CudaSynchronize(model->backend()).ok());
    double worst = 0;
    for (size_t u = 0; u < nbest.size(); ++u) {
      const std::string p = Prefix(u);
      const double e = MaxRelativeError((*scores)[u].l2r, Ref(*ref, p + "l2r_score"));
      EXPECT_LT(e, 1e-4) << p << "l2r";
      worst = std::max(worst, e);
      if (model->config().HasRightDecoder()) {
        const double er = MaxRelativeError((*scores)[u].r2l, Ref(*ref, p + "r2l_score"));
        EXPECT_LT(er, 1e-4) << p << "r2l";
        worst = std::max(worst, er);
      }
    }
    std::printf("[gpu %s] decoder scores max rel err %.3g\n", variant.c_str(), worst);
  }
  EXPECT_GT(with_decoder, 0);
}

// Hypotheses that share prefixes (the decoder computes each distinct prefix once and gathers each
// hypothesis's K|V path), repeat, are prefixes of one another or are empty: GPU scores == CPU.
TEST(GpuModel, SharedPrefixScoresMatchCpu) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto gpu = LoadGpuModel(variant);
    ASSERT_TRUE(gpu);
    if (!gpu->config().HasDecoder()) continue;
    auto cpu = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    const int V = gpu->config().vocab_size;
    auto tok = [&](int i) { return 3 + (i * 7) % (V - 3); };
    std::vector<std::vector<std::vector<int>>> nbest(utts.feats.size());
    for (size_t u = 0; u < nbest.size(); ++u) {
      std::vector<int> base;
      for (int t = 0; t < 9; ++t) base.push_back(tok(t + static_cast<int>(u)));
      std::vector<int> late = base, early = base;
      late[6] = tok(40);
      early[1] = tok(41);
      nbest[u] = {base, late, early, std::vector<int>(base.begin(), base.begin() + 4), base, {}};
    }
    auto enc_g = gpu->Encode(utts.feats);
    auto enc_c = (*cpu)->Encode(utts.feats);
    ASSERT_TRUE(enc_g.ok() && enc_c.ok());
    auto sg = gpu->ScoreHypotheses(*enc_g, nbest);
    auto sc = (*cpu)->ScoreHypotheses(*enc_c, nbest);
    ASSERT_TRUE(sg.ok()) << sg.status().ToString();
    ASSERT_TRUE(sc.ok());
    ASSERT_TRUE(CudaSynchronize(gpu->backend()).ok());
    double worst = 0;
    for (size_t u = 0; u < nbest.size(); ++u) {
      worst = std::max(worst, MaxRelativeError((*sg)[u].l2r, (*sc)[u].l2r));
      if (gpu->config().HasRightDecoder())
        worst = std::max(worst, MaxRelativeError((*sg)[u].r2l, (*sc)[u].r2l));
    }
    EXPECT_LT(worst, 1e-4);
    std::printf("[gpu %s] shared-prefix decoder scores vs CPU: max rel err %.3g\n", variant.c_str(), worst);
  }
}

// The tensor-core GEMM mode (fp16 operands, fp32 accumulation and activations) on every variant:
// encoder output within 1e-2 relative of PyTorch's fp32 reference.
TEST(GpuModel, Fp16GemmModeWithinTolerance) {
  ASSERT_EQ(setenv("U2_CUDA_GEMM_MATH", "fp16", 1), 0);
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = LoadGpuModel(variant);
    ASSERT_TRUE(model);
    EXPECT_NE(model->backend().Name().find("fp16"), std::string::npos) << model->backend().Name();
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const Utterances utts = Load(*ref, variant);
    double worst = 0;
    for (size_t u = 0; u < utts.feats.size(); ++u) {
      auto enc = model->Encode({&utts.feats[u], 1});
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      const double e = MaxRelativeError(enc->EncoderFrames(0), Ref(*ref, Prefix(u) + "encoder_out"));
      EXPECT_LT(e, 1e-2) << Prefix(u) << "encoder_out";
      worst = std::max(worst, e);
    }
    std::printf("[gpu fp16-gemm %s] encoder_out max rel err %.3g\n", variant.c_str(), worst);
  }
  unsetenv("U2_CUDA_GEMM_MATH");
}

TEST(GpuModel, DeviceFailureBecomesTheCallsError) {
  const std::string variant = FixtureVariants().front();
  auto model = LoadGpuModel(variant);
  ASSERT_TRUE(model);
  auto ref = testing::OpenFixture(variant);
  ASSERT_TRUE(ref);
  const Utterances utts = Load(*ref, variant);
  ASSERT_TRUE(model->Encode({&utts.feats[0], 1}).ok());
  // Poison the model's backend (an operator it refuses: head_dim > 128); Encode must then fail
  // with the recorded error instead of returning NaN or garbage.
  Workspace ws(model->backend());
  float* buf = ws.Floats(0, 4 * 512);
  AttentionParams p;
  p.num_heads = 2;
  p.head_dim = 256;
  p.q = p.k = p.v = buf;
  p.ldq = p.ldk = p.ldv = p.ldo = 512;
  p.out = buf;
  std::vector<AttentionSegment> segs = {{0, 4, 0, 4, 0, 0, 0}};
  model->backend().Attention(p, segs, ws);
  auto enc = model->Encode({&utts.feats[0], 1});
  ASSERT_FALSE(enc.ok());
  EXPECT_NE(enc.status().message().find("head_dim"), std::string::npos) << enc.status().ToString();
}

}  // namespace
}  // namespace u2
