// End-to-end recognizer tests against the PyTorch fixtures: waveform in, token ids out, in
// every decoding mode, alone and batched; and the recognizer's handling of bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "support/fixtures.h"
#include "u2/decode/symbol_table.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/model/model_config.h"

namespace u2 {
namespace {

using testing::FixtureModelDir;
using testing::FixtureVariants;
using testing::OpenFixture;
using testing::ReadFixtureJson;

struct FixtureUtts {
  std::vector<std::vector<float>> wavs;
  nlohmann::json ref;
};

FixtureUtts LoadUtts(const std::string& variant) {
  FixtureUtts out;
  auto file = OpenFixture(variant);
  out.ref = ReadFixtureJson(variant);
  if (!file) return out;
  for (size_t u = 0; u < out.ref["utts"].size(); ++u) {
    auto wav = file->ReadFloat32("u" + std::to_string(u) + ".wav");
    EXPECT_TRUE(wav.ok()) << wav.status().ToString();
    out.wavs.push_back(wav.ok() ? *wav : std::vector<float>{});
  }
  return out;
}

std::unique_ptr<Recognizer> MakeRecognizer(const std::string& variant, const nlohmann::json& ref) {
  RecognizerConfig config;
  config.model_dir = FixtureModelDir(variant);
  config.beam = ref["beam"].get<int>();
  config.ctc_weight = ref["ctc_weight"].get<float>();
  config.reverse_weight = ref["reverse_weight"].get<float>();
  auto r = Recognizer::Create(config);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : nullptr;
}

class RecognizerFixtureTest : public ::testing::TestWithParam<std::string> {};

// Batch size 1, each mode: the same token ids as the PyTorch reference.
TEST_P(RecognizerFixtureTest, HypothesesMatchReferenceInEveryMode) {
  const FixtureUtts f = LoadUtts(GetParam());
  auto recognizer = MakeRecognizer(GetParam(), f.ref);
  ASSERT_NE(recognizer, nullptr);
  for (size_t u = 0; u < f.wavs.size(); ++u) {
    const auto& ref = f.ref["utts"][u];
    std::vector<Waveform> batch{{f.wavs[u], 16000}};
    DecodingOptions options = recognizer->default_options();

    options.mode = DecodingMode::kCtcGreedy;
    auto greedy = recognizer->Recognize(batch, options);
    ASSERT_TRUE(greedy.ok()) << greedy.status().ToString();
    EXPECT_EQ((*greedy)[0].best().tokens, ref["greedy"].get<std::vector<int>>()) << "utt " << u;
    // BPE fixtures also carry WeNet's text for each mode (BpeTokenizer.tokens2text: "▁" → space,
    // non-language symbols kept, stripped), which the engine's detokenization must reproduce.
    const bool has_text = ref.contains("greedy_text");
    if (has_text) EXPECT_EQ((*greedy)[0].best().text, ref["greedy_text"].get<std::string>()) << "utt " << u;

    options.mode = DecodingMode::kCtcPrefixBeamSearch;
    options.nbest = options.beam;
    auto beam = recognizer->Recognize(batch, options);
    ASSERT_TRUE(beam.ok()) << beam.status().ToString();
    const auto& ref_nbest = ref["prefix_beam"];
    ASSERT_EQ((*beam)[0].nbest.size(), ref_nbest.size()) << "utt " << u;
    for (size_t k = 0; k < ref_nbest.size(); ++k) {
      EXPECT_EQ((*beam)[0].nbest[k].tokens, ref_nbest[k]["tokens"].get<std::vector<int>>())
          << "utt " << u << " hyp " << k;
      const float ref_score = ref_nbest[k]["score"].get<float>();
      EXPECT_NEAR((*beam)[0].nbest[k].ctc_score, ref_score, 1e-3 * std::max(1.0f, std::abs(ref_score)));
    }
    if (has_text)
      EXPECT_EQ((*beam)[0].best().text, ref["prefix_beam_text"].get<std::string>()) << "utt " << u;

    options.mode = DecodingMode::kAttentionRescoring;
    options.nbest = 1;
    auto rescored = recognizer->Recognize(batch, options);
    ASSERT_TRUE(rescored.ok()) << rescored.status().ToString();
    EXPECT_EQ((*rescored)[0].best().tokens, ref["rescoring"]["tokens"].get<std::vector<int>>())
        << "utt " << u;
    if (has_text)
      EXPECT_EQ((*rescored)[0].best().text, ref["rescoring_text"].get<std::string>()) << "utt " << u;
  }
}

// A transcript never depends on what it was batched with (spec: batch invariance).
TEST_P(RecognizerFixtureTest, BatchedEqualsAlone) {
  const FixtureUtts f = LoadUtts(GetParam());
  auto recognizer = MakeRecognizer(GetParam(), f.ref);
  ASSERT_NE(recognizer, nullptr);
  std::vector<Waveform> batch;
  for (const auto& w : f.wavs) batch.push_back({w, 16000});
  for (DecodingMode mode :
       {DecodingMode::kCtcGreedy, DecodingMode::kCtcPrefixBeamSearch, DecodingMode::kAttentionRescoring}) {
    DecodingOptions options = recognizer->default_options();
    options.mode = mode;
    options.nbest = options.beam;
    auto together = recognizer->Recognize(batch, options);
    ASSERT_TRUE(together.ok()) << together.status().ToString();
    for (size_t u = 0; u < batch.size(); ++u) {
      auto alone = recognizer->Recognize(std::span(&batch[u], 1), options);
      ASSERT_TRUE(alone.ok());
      ASSERT_EQ((*together)[u].nbest.size(), (*alone)[0].nbest.size());
      for (size_t k = 0; k < (*alone)[0].nbest.size(); ++k) {
        EXPECT_EQ((*together)[u].nbest[k].tokens, (*alone)[0].nbest[k].tokens)
            << DecodingModeName(mode) << " utt " << u << " hyp " << k;
        EXPECT_NEAR((*together)[u].nbest[k].score, (*alone)[0].nbest[k].score, 1e-3);
      }
    }
  }
}

TEST(RecognizerFixtures, ABpeFixtureChecksText) {
  // The text checks above run only where the fixture has texts: make sure one does.
  const nlohmann::json ref = ReadFixtureJson("conformer_bpe_u2pp");
  ASSERT_TRUE(ref["utts"][0].contains("greedy_text"));
  int with_space = 0;
  for (const auto& u : ref["utts"])
    with_space += u["rescoring_text"].get<std::string>().find(' ') != std::string::npos;
  EXPECT_GT(with_space, 0) << "no reference text has a word boundary to get right";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RecognizerFixtureTest, ::testing::ValuesIn(FixtureVariants()),
                         [](const auto& info) { return info.param; });

class RecognizerInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    variants_ = FixtureVariants();
    ASSERT_FALSE(variants_.empty()) << "no fixtures under " << U2_FIXTURES_DIR;
    RecognizerConfig config;
    config.model_dir = FixtureModelDir(variants_.front());
    auto r = Recognizer::Create(config);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    recognizer_ = std::move(*r);
  }
  std::vector<std::string> variants_;
  std::unique_ptr<Recognizer> recognizer_;
};

TEST_F(RecognizerInputTest, EmptyAndTooShortAudioGiveEmptyText) {
  std::vector<float> empty, short_audio(300, 0.1f), seven_frames(400 + 5 * 160, 0.01f);
  std::vector<Waveform> batch{{empty, 16000}, {short_audio, 16000}, {seven_frames, 16000}};
  auto out = recognizer_->Recognize(batch);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 3u);
  for (const auto& r : *out) {
    ASSERT_EQ(r.nbest.size(), 1u);
    EXPECT_EQ(r.best().text, "");
    EXPECT_TRUE(r.best().tokens.empty());
  }
}

TEST_F(RecognizerInputTest, NonFiniteSamplesAreRejectedWithTheirIndex) {
  std::vector<float> good(16000, 0.0f), bad(16000, 0.0f);
  bad[1234] = std::numeric_limits<float>::quiet_NaN();
  std::vector<Waveform> batch{{good, 16000}, {bad, 16000}};
  auto out = recognizer_->Recognize(batch);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("utterance 1"), std::string::npos) << out.status().message();
  bad[1234] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(recognizer_->Recognize(batch).ok());
}

TEST_F(RecognizerInputTest, AudioLongerThanThePositionTableIsRejected) {
  std::vector<float> too_long(static_cast<size_t>(recognizer_->max_samples() + 16000), 0.0f);
  std::vector<Waveform> batch{{too_long, 16000}};
  auto out = recognizer_->Recognize(batch);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RecognizerInputTest, OtherSampleRatesAreResampled) {
  std::vector<float> tone16(16000), tone8(8000);
  for (size_t i = 0; i < tone16.size(); ++i) tone16[i] = 0.3f * std::sin(2 * M_PI * 440 * i / 16000.0);
  for (size_t i = 0; i < tone8.size(); ++i) tone8[i] = 0.3f * std::sin(2 * M_PI * 440 * i / 8000.0);
  std::vector<Waveform> batch{{tone8, 8000}};
  auto out = recognizer_->Recognize(batch);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_NEAR((*out)[0].audio_seconds, 1.0, 1e-3);
  std::vector<Waveform> bad_rate{{tone8, 0}};
  EXPECT_FALSE(recognizer_->Recognize(bad_rate).ok());
}

TEST_F(RecognizerInputTest, BadDecodingOptionsAreRejected) {
  std::vector<float> audio(16000, 0.0f);
  std::vector<Waveform> batch{{audio, 16000}};
  DecodingOptions options = recognizer_->default_options();
  options.beam = 0;
  EXPECT_EQ(recognizer_->Recognize(batch, options).status().code(), StatusCode::kInvalidArgument);
  options = recognizer_->default_options();
  options.reverse_weight = 2.0f;
  EXPECT_EQ(recognizer_->Recognize(batch, options).status().code(), StatusCode::kInvalidArgument);
  options = recognizer_->default_options();
  options.ctc_weight = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(recognizer_->Recognize(batch, options).status().code(), StatusCode::kInvalidArgument);
  options = recognizer_->default_options();
  options.decoding_chunk_size = 0;
  EXPECT_EQ(recognizer_->Recognize(batch, options).status().code(), StatusCode::kInvalidArgument);
}

TEST(RecognizerCreateTest, MissingModelDirIsAClearError) {
  RecognizerConfig config;
  config.model_dir = "/nonexistent/model";
  auto r = Recognizer::Create(config);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/model"), std::string::npos) << r.status().message();
  config.model_dir = "";
  EXPECT_FALSE(Recognizer::Create(config).ok());
}

// Offline and streaming options share one check of the search settings; rescoring is refused up
// front when the model lacks the decoder it would run.
TEST(SearchSettingsTest, RescoringNeedsTheDecodersItUses) {
  ModelConfig ctc_only;
  ctc_only.decoder.type = DecoderType::kNone;
  ModelConfig left_to_right;
  left_to_right.decoder.type = DecoderType::kTransformer;
  ModelConfig bidirectional;
  bidirectional.decoder.type = DecoderType::kBiTransformer;
  bidirectional.decoder.r_num_blocks = 1;

  DecodingOptions offline;
  offline.mode = DecodingMode::kAttentionRescoring;
  StreamOptions stream;
  stream.rescoring = true;
  EXPECT_EQ(offline.Validate(ctc_only).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Validate(ctc_only).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(offline.Validate(left_to_right).ok());
  EXPECT_TRUE(stream.Validate(left_to_right).ok());

  offline.reverse_weight = stream.reverse_weight = 0.3f;
  EXPECT_EQ(offline.Validate(left_to_right).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Validate(left_to_right).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(offline.Validate(bidirectional).ok());
  EXPECT_TRUE(stream.Validate(bidirectional).ok());

  // Without rescoring, neither decoder is needed and reverse_weight is not used.
  offline.mode = DecodingMode::kCtcPrefixBeamSearch;
  stream.rescoring = false;
  EXPECT_TRUE(offline.Validate(ctc_only).ok());
  EXPECT_TRUE(stream.Validate(ctc_only).ok());

  // The same bounds on both sides.
  for (int beam : {0, 1001}) {
    offline.beam = stream.beam = beam;
    EXPECT_EQ(offline.Validate(bidirectional).code(), StatusCode::kInvalidArgument) << beam;
    EXPECT_EQ(stream.Validate(bidirectional).code(), StatusCode::kInvalidArgument) << beam;
  }
  offline.beam = stream.beam = 4;
  offline.nbest = stream.nbest = 5;
  EXPECT_EQ(offline.Validate(bidirectional).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Validate(bidirectional).code(), StatusCode::kInvalidArgument);
  offline.nbest = stream.nbest = 4;
  offline.ctc_weight = stream.ctc_weight = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(offline.Validate(bidirectional).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Validate(bidirectional).code(), StatusCode::kInvalidArgument);
}

TEST(DecodingModeTest, NamesRoundTrip) {
  for (DecodingMode m :
       {DecodingMode::kCtcGreedy, DecodingMode::kCtcPrefixBeamSearch, DecodingMode::kAttentionRescoring}) {
    auto parsed = ParseDecodingMode(DecodingModeName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_FALSE(ParseDecodingMode("beam").ok());
}

TEST(DeviceTest, ParsesCpuCudaAndAGpuIndex) {
  auto expect = [](std::string_view name, DeviceType type, int index) {
    auto d = ParseDevice(name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.status().ToString();
    EXPECT_EQ(d->type, type) << name;
    EXPECT_EQ(d->index, index) << name;
  };
  expect("cpu", DeviceType::kCpu, 0);
  expect("cuda", DeviceType::kCuda, 0);
  expect("gpu", DeviceType::kCuda, 0);
  expect("cuda:0", DeviceType::kCuda, 0);
  expect("cuda:3", DeviceType::kCuda, 3);
  expect("gpu:12", DeviceType::kCuda, 12);
  for (std::string_view bad :
       {"", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cuda:256", "cuda:0001", "cpu:1", "tpu", "CUDA"}) {
    auto d = ParseDevice(bad);
    ASSERT_FALSE(d.ok()) << "'" << bad << "' was accepted";
    EXPECT_NE(d.status().message().find("cuda:N"), std::string::npos) << d.status().message();
  }
  // An index only means something for the GPU backend.
  BackendOptions cpu;
  cpu.device_index = 1;
  EXPECT_EQ(cpu.Validate().code(), StatusCode::kInvalidArgument);
  BackendOptions gpu;
  gpu.device = DeviceType::kCuda;
  gpu.device_index = 1;
  EXPECT_TRUE(gpu.Validate().ok());
  EXPECT_NE(gpu.ToString().find("cuda:1"), std::string::npos) << gpu.ToString();
}

}  // namespace
}  // namespace u2
