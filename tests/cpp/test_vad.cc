// Speech segmentation (VadSegmenter) on hand-made probability sequences: hysteresis, the minimum
// speech and silence, padding that never overlaps, the forced split at the quietest window, and
// bounded memory in SpeechSegmenter. (The network itself is checked against onnxruntime in
// tests/python/test_vad.py.)
#include <gtest/gtest.h>

#include "u2/vad/speech_segmenter.h"
#include "u2/vad/vad_segmenter.h"

namespace u2 {
namespace {

constexpr int kW = 512;  // samples per window (32 ms)

// Windows of probability `p`, `n` of them.
void Feed(VadSegmenter& s, float p, int n) {
  for (int i = 0; i < n; ++i) s.Accept(p);
}

VadConfig NoPad() {
  VadConfig c;
  c.speech_pad_ms = 0;
  return c;
}

TEST(VadSegmenter, HysteresisAndMinimumSilence) {
  VadSegmenter s(NoPad());
  Feed(s, 0.1f, 10);  // silence
  Feed(s, 0.9f, 20);  // speech from window 10
  Feed(s, 0.4f, 30);  // between neg (0.35) and threshold: still speech
  Feed(s, 0.1f, 10);  // 320 ms of silence: not enough (500 ms)
  Feed(s, 0.9f, 5);
  Feed(s, 0.05f, 20);  // 640 ms: the segment ends where this silence began
  auto got = s.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].start, 10 * kW);
  EXPECT_EQ(got[0].end, (10 + 20 + 30 + 10 + 5) * kW);
  EXPECT_FALSE(got[0].forced_split);
  s.Finish(95 * kW);
  EXPECT_TRUE(s.Take().empty());
}

TEST(VadSegmenter, ShortSpeechIsDroppedAndPaddingNeverOverlaps) {
  VadConfig c;
  c.speech_pad_ms = 200;  // 3200 samples
  VadSegmenter s(c);
  Feed(s, 0.9f, 5);  // 160 ms: shorter than min_speech (250 ms)
  Feed(s, 0.0f, 20);
  Feed(s, 0.9f, 30);  // a real segment from window 25
  Feed(s, 0.0f, 17);  // 544 ms of silence ends it
  Feed(s, 0.9f, 30);  // and the next starts only 544 ms later
  Feed(s, 0.0f, 40);
  s.Finish(142 * kW);
  auto got = s.Take();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].start, 25 * kW - 3200);
  EXPECT_EQ(got[0].end, 55 * kW + 3200);
  EXPECT_GE(got[1].start, got[0].end);  // its padding stops where the first one's ended
  EXPECT_EQ(got[1].end, 102 * kW + 3200);
}

TEST(VadSegmenter, LongSpeechIsSplitAtItsQuietestWindow) {
  VadConfig c = NoPad();
  c.max_segment_s = 4.0;  // 125 windows
  VadSegmenter s(c);
  Feed(s, 0.9f, 80);
  Feed(s, 0.55f, 1);  // the quietest window of the second half, at window 80
  Feed(s, 0.9f, 60);
  auto got = s.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].forced_split);
  EXPECT_EQ(got[0].start, 0);
  EXPECT_EQ(got[0].end, 80 * kW);
  s.Finish(141 * kW);
  got = s.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].start, 80 * kW);  // the halves touch: nothing lost, nothing repeated
  EXPECT_EQ(got[0].end, 141 * kW);
}

TEST(VadConfig, BadSettingsAreRefused) {
  VadConfig c;
  EXPECT_TRUE(c.Validate().ok());
  c.threshold = 1.5f;
  EXPECT_FALSE(c.Validate().ok());
  c = VadConfig{};
  c.neg_threshold = 0.9f;  // above the threshold
  EXPECT_NE(c.Validate().message().find("neg_threshold"), std::string::npos);
  c = VadConfig{};
  c.max_segment_s = 0.1;
  EXPECT_FALSE(c.Validate().ok());
  c = VadConfig{};
  c.min_silence_ms = -1;
  EXPECT_FALSE(c.Validate().ok());
}

TEST(SpeechSegmenter, SilenceGivesNoSegmentAndMemoryStaysBounded) {
  auto vad = SileroVad::Load(std::string(U2_MODELS_DIR) + "/silero_vad");
  ASSERT_TRUE(vad.ok()) << vad.status().ToString();
  SpeechSegmenter seg(**vad, VadConfig{});
  std::vector<float> quiet(16000, 0.0f);
  uint32_t seed = 1;
  for (float& x : quiet) {
    seed = seed * 1664525u + 1013904223u;
    x = ((seed >> 9) / 8388608.0f - 0.5f) * 1e-4f;  // faint noise, 10 minutes of it
  }
  size_t most = 0;
  for (int i = 0; i < 600; ++i) {
    EXPECT_TRUE(seg.Accept(quiet).empty());
    most = std::max(most, seg.buffered_samples());
  }
  EXPECT_TRUE(seg.Finish().empty());
  EXPECT_LT(most, 16000u * 3);  // a few seconds at most, not ten minutes
  EXPECT_EQ(seg.samples_seen(), 600 * 16000);
}

}  // namespace
}  // namespace u2
