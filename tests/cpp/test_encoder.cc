// Encoder + CTC against the PyTorch fixtures (tests/fixtures/README.md), for every variant:
// per-layer outputs, encoder output, CTC log-probs, chunk-masked outputs, and batch invariance.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <thread>

#include "support/fixtures.h"
#include "u2/model/asr_model.h"

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

using testing::ChunkWindows;
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
    auto view = ref.Get(UttKey(u, "fbank"));
    if (!view.ok()) break;
    Utterance x;
    x.frames = static_cast<int>(view->shape[0]);
    x.fbank = *ref.ReadFloat32(UttKey(u, "fbank"));
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
      const std::string p = UttKey(u, "");
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

// Streaming (ForwardChunk) equals the chunk-masked full forward for causal-conv models
// (docs/wenet-numerics.md §4.3).
TEST(EncoderStreaming, ChunkByChunkMatchesChunkMaskedForward) {
  const std::regex name_re(R"(u(\d+)\.chunk(\d+)_left(-?\d+)\.encoder_out)");
  int checked = 0;
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelConfig& c = (*model)->config();
    if (!c.encoder.StreamsExactly()) continue;  // does not stream exactly (docs/wenet-numerics.md §4.3)
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const auto utts = LoadUtterances(*ref, NumUtterances(variant));
    double worst = 0, worst_ctc = 0;
    int here = 0;
    for (const std::string& name : ref->Names()) {
      std::smatch m;
      if (!std::regex_match(name, m, name_re)) continue;
      const int u = std::stoi(m[1]);
      StreamingOptions so;
      so.decoding_chunk_size = std::stoi(m[2]);
      so.num_decoding_left_chunks = std::stoi(m[3]);
      auto stream = (*model)->NewStream();
      std::vector<float> ctc;
      for (const auto& [start, len] : ChunkWindows(c, utts[u].frames, so.decoding_chunk_size)) {
        FeatureView f{utts[u].fbank.data() + static_cast<size_t>(start) * 80, len, 80};
        EncoderStream* sp = stream.get();
        auto out = (*model)->ForwardChunk({&sp, 1}, {&f, 1}, so);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        ASSERT_LE(out->lengths[0], so.decoding_chunk_size);
        ctc.insert(ctc.end(), out->ctc_log_probs[0].begin(), out->ctc_log_probs[0].end());
      }
      const double e = MaxRelativeError(stream->encoder_frames(), Ref(*ref, name));
      EXPECT_LT(e, 1e-4) << name;
      worst = std::max(worst, e);
      // CTC of the chunks = CTC of the chunk-masked offline forward.
      EncodeOptions eo;
      eo.decoding_chunk_size = so.decoding_chunk_size;
      eo.num_decoding_left_chunks = so.num_decoding_left_chunks;
      FeatureView whole{utts[u].fbank.data(), utts[u].frames, 80};
      auto offline = (*model)->Encode({&whole, 1}, eo);
      ASSERT_TRUE(offline.ok());
      const double ec = MaxAbsError(ctc, offline->ctc_log_probs[0]);
      EXPECT_LT(ec, 1e-4) << name;
      worst_ctc = std::max(worst_ctc, ec);
      if (so.num_decoding_left_chunks >= 0) {
        EXPECT_LE(stream->cached_frames(), so.decoding_chunk_size * so.num_decoding_left_chunks);
      }
      ++checked;
      ++here;
    }
    if (here == 0) continue;
    std::printf(
        "[%s] streaming vs chunk-masked reference: encoder_out max rel err %.3g, ctc max abs err %.3g\n",
        variant.c_str(), worst, worst_ctc);
  }
  EXPECT_GT(checked, 0);
}

// Several streams in one ForwardChunk batch (different lengths, some finishing early) give what
// each gives alone, and their accumulated output rescoring matches the offline path.
// A chunk that would split an attention group or a time stride across chunks is refused by name.
TEST(EncoderStreaming, ChunksMustBeAMultipleOfTheStreamingUnit) {
  auto model = AsrModel::Load(FixtureModelDir("efficient_conformer_v2_stream"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto ref = testing::OpenFixture("efficient_conformer_v2_stream");
  ASSERT_TRUE(ref);
  const auto utts = LoadUtterances(*ref, 1);
  StreamingOptions so;
  so.decoding_chunk_size = 8;
  auto stream = (*model)->NewStream();
  EncoderStream* sp = stream.get();
  FeatureView f{utts[0].fbank.data(), 40, 80};
  auto out = (*model)->ForwardChunk({&sp, 1}, {&f, 1}, so);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("multiple of 12"), std::string::npos) << out.status().ToString();
  so.decoding_chunk_size = 12;
  EXPECT_TRUE((*model)->ForwardChunk({&sp, 1}, {&f, 1}, so).ok());
}

TEST(EncoderStreaming, BatchedStreamsEqualSingleStreams) {
  for (const std::string& variant : FixtureVariants()) {
    SCOPED_TRACE(variant);
    auto model = AsrModel::Load(FixtureModelDir(variant));
    ASSERT_TRUE(model.ok());
    const ModelConfig& c = (*model)->config();
    if (!c.encoder.use_dynamic_chunk) continue;
    auto ref = testing::OpenFixture(variant);
    ASSERT_TRUE(ref);
    const auto utts = LoadUtterances(*ref, NumUtterances(variant));
    StreamingOptions so;
    so.decoding_chunk_size = testing::StreamableChunks(c, {4}).front();
    so.num_decoding_left_chunks = 2;
    std::vector<std::unique_ptr<EncoderStream>> batched, single;
    std::vector<std::vector<std::pair<int, int>>> windows;
    size_t steps = 0;
    for (const Utterance& u : utts) {
      batched.push_back((*model)->NewStream());
      single.push_back((*model)->NewStream());
      windows.push_back(ChunkWindows(c, u.frames, so.decoding_chunk_size));
      steps = std::max(steps, windows.back().size());
    }
    for (size_t k = 0; k < steps; ++k) {
      std::vector<EncoderStream*> sts;
      std::vector<FeatureView> fs;
      for (size_t u = 0; u < utts.size(); ++u) {
        if (k >= windows[u].size()) continue;
        const auto [start, len] = windows[u][k];
        FeatureView f{utts[u].fbank.data() + static_cast<size_t>(start) * 80, len, 80};
        sts.push_back(batched[u].get());
        fs.push_back(f);
        EncoderStream* sp = single[u].get();
        ASSERT_TRUE((*model)->ForwardChunk({&sp, 1}, {&f, 1}, so).ok());
      }
      auto out = (*model)->ForwardChunk(sts, fs, so);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
    }
    double worst = 0;
    for (size_t u = 0; u < utts.size(); ++u) {
      worst = std::max(worst, MaxRelativeError(batched[u]->encoder_frames(), single[u]->encoder_frames()));
    }
    EXPECT_LT(worst, 1e-5);
    std::printf("[%s] %zu streams batched vs alone: max rel diff %.3g\n", variant.c_str(), utts.size(),
                worst);

    if (!c.HasDecoder()) continue;
    std::vector<const EncoderStream*> cs;
    for (auto& s : batched) cs.push_back(s.get());
    auto packed = (*model)->StreamEncoderOutput(cs);
    ASSERT_TRUE(packed.ok());
    std::vector<std::vector<std::vector<int>>> hyps(utts.size(), {{1, 2, 3}, {4}});
    auto streamed = (*model)->ScoreHypotheses(*packed, hyps);
    ASSERT_TRUE(streamed.ok()) << streamed.status().ToString();
    std::vector<FeatureView> whole;
    for (const Utterance& u : utts) whole.push_back({u.fbank.data(), u.frames, 80});
    EncodeOptions eo;
    eo.decoding_chunk_size = so.decoding_chunk_size;
    eo.num_decoding_left_chunks = so.num_decoding_left_chunks;
    auto offline = (*model)->Encode(whole, eo);
    ASSERT_TRUE(offline.ok());
    auto offline_scores = (*model)->ScoreHypotheses(*offline, hyps);
    ASSERT_TRUE(offline_scores.ok());
    for (size_t u = 0; u < utts.size(); ++u) {
      EXPECT_LT(MaxRelativeError((*streamed)[u].l2r, (*offline_scores)[u].l2r), 1e-4);
    }
  }
}

TEST(EncoderStreaming, RejectsBadUse) {
  const auto variants = FixtureVariants();
  ASSERT_FALSE(variants.empty());
  auto model = AsrModel::Load(FixtureModelDir(variants[0]));
  auto other = AsrModel::Load(FixtureModelDir(variants[0]));
  ASSERT_TRUE(model.ok() && other.ok());
  std::vector<float> data(67 * 80, 0.5f);
  FeatureView f{data.data(), 67, 80};
  auto foreign = (*other)->NewStream();
  EncoderStream* fp = foreign.get();
  EXPECT_FALSE((*model)->ForwardChunk({&fp, 1}, {&f, 1}, {}).ok());
  auto st = (*model)->NewStream();
  EncoderStream* sp = st.get();
  StreamingOptions bad;
  bad.decoding_chunk_size = 0;
  EXPECT_FALSE((*model)->ForwardChunk({&sp, 1}, {&f, 1}, bad).ok());
  std::vector<EncoderStream*> twice = {sp, sp};
  std::vector<FeatureView> two = {f, f};
  EXPECT_FALSE((*model)->ForwardChunk(twice, two, {}).ok());
  // A chunk too short for one encoder frame is not an error: zero frames, state unchanged.
  FeatureView tiny{data.data(), 2, 80};
  auto r = (*model)->ForwardChunk({&sp, 1}, {&tiny, 1}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->lengths[0], 0);
  EXPECT_EQ(st->offset(), 0);
}

// Encode and ScoreHypotheses are const and thread-safe: concurrent calls (each with its own
// pooled workspace, sharing the row pool and OpenBLAS) give exactly the serial results.
TEST(EncoderThreads, ConcurrentCallsMatchSerial) {
  const auto variants = FixtureVariants();
  ASSERT_FALSE(variants.empty());
  const std::string variant = variants.back();
  ModelLoadOptions lo;
  lo.num_threads = 2;
  auto model = AsrModel::Load(FixtureModelDir(variant), lo);
  ASSERT_TRUE(model.ok());
  auto ref = testing::OpenFixture(variant);
  ASSERT_TRUE(ref);
  const auto utts = LoadUtterances(*ref, NumUtterances(variant));
  std::vector<std::vector<float>> serial;
  for (const Utterance& u : utts) {
    FeatureView f{u.fbank.data(), u.frames, 80};
    auto e = (*model)->Encode({&f, 1});
    ASSERT_TRUE(e.ok());
    serial.push_back(e->ctc_log_probs[0]);
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t u = 0; u < utts.size(); ++u) {
          FeatureView f{utts[u].fbank.data(), utts[u].frames, 80};
          auto e = (*model)->Encode({&f, 1});
          if (!e.ok() || e->ctc_log_probs[0] != serial[u]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
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
  const int too_many =
      ((*model)->config().MaxEncoderFrames() + 1) * (*model)->config().SubsamplingRate() + 20;
  std::vector<float> huge(static_cast<size_t>(too_many) * 80, 0.1f);
  FeatureView too_long{huge.data(), too_many, 80};
  auto long_r = (*model)->Encode({&too_long, 1});
  EXPECT_FALSE(long_r.ok());
  // Too short for one encoder frame: zero frames, empty log-probs, no crash; the other row intact.
  FeatureView short_view{data.data(), (*model)->config().RightContext(), 80};
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
