// Speech segmentation (VadSegmenter) on hand-made probability sequences: hysteresis, the minimum
// speech and silence, padding that never overlaps, the forced split at the quietest window, and
// bounded memory in SpeechSegmenter; the live VadGate on the same kind of sequences. (The network itself is
// checked against onnxruntime in tests/python/test_vad.py.)
#include <gtest/gtest.h>

#include "u2/vad/speech_segmenter.h"
#include "u2/vad/vad_gate.h"
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

// ---- VadGate: windows whose samples all hold the window's index, so the test can tell which
// audio went through.

struct GateRun {
  int64_t start = 0;
  std::vector<float> samples;
  bool ended = false;
};

// Feeds `n` windows of probability `p` and collects the runs the gate lets through.
void FeedGate(VadGate& gate, float p, int n, int* window_index, std::vector<GateRun>* runs) {
  for (int i = 0; i < n; ++i) {
    std::vector<float> window(kW, static_cast<float>((*window_index)++));
    gate.AcceptWindow(window, p);
    for (GatedAudio& a : gate.Take()) {
      if (a.starts) {
        ASSERT_TRUE(runs->empty() || runs->back().ended) << "a run started inside another";
        runs->push_back({a.start, {}, false});
      }
      ASSERT_FALSE(runs->empty()) << "audio before any run started";
      GateRun& run = runs->back();
      ASSERT_FALSE(run.ended);
      ASSERT_EQ(a.start, run.start + static_cast<int64_t>(run.samples.size())) << "a gap inside a run";
      run.samples.insert(run.samples.end(), a.samples.begin(), a.samples.end());
      run.ended = a.ends;
    }
    EXPECT_LE(gate.held_samples(), size_t{3200 + 4000 + kW});  // padding + min speech + a window
  }
}

TEST(VadGate, OpensAfterMinimumSpeechWithPaddingAndClosesAfterMinimumSilence) {
  VadConfig c;  // pad 200 ms (3200 samples), min speech 250 ms (4000), min silence 500 ms (8000)
  VadGate gate(nullptr, c);
  int w = 0;
  std::vector<GateRun> runs;
  FeedGate(gate, 0.1f, 20, &w, &runs);
  FeedGate(gate, 0.9f, 30, &w, &runs);   // speech from window 20 (sample 10240)
  FeedGate(gate, 0.05f, 20, &w, &runs);  // silence from window 50 (sample 25600)
  FeedGate(gate, 0.1f, 10, &w, &runs);
  ASSERT_EQ(runs.size(), 1u);
  // Opened once 4096 >= 4000 samples of speech were heard (after window 27), reaching back 200 ms
  // before the speech; closed after 16 windows (8192 >= 8000 samples) of silence.
  EXPECT_EQ(runs[0].start, 10240 - 3200);
  EXPECT_EQ(runs[0].start + static_cast<int64_t>(runs[0].samples.size()), 66 * kW);
  EXPECT_TRUE(runs[0].ended);
  EXPECT_EQ(runs[0].samples.front(), static_cast<float>((10240 - 3200) / kW));
  EXPECT_EQ(runs[0].samples.back(), 65.0f);
  EXPECT_FALSE(gate.is_open());
}

TEST(VadGate, ClicksStayOutAndTheBandBetweenThresholdsKeepsARunOpen) {
  VadConfig c;
  c.speech_pad_ms = 0;
  VadGate gate(nullptr, c);
  int w = 0;
  std::vector<GateRun> runs;
  FeedGate(gate, 0.9f, 5, &w, &runs);  // 160 ms: shorter than min speech
  FeedGate(gate, 0.0f, 10, &w, &runs);
  EXPECT_TRUE(runs.empty());
  FeedGate(gate, 0.9f, 10, &w, &runs);  // opens at window 15 + 8
  FeedGate(gate, 0.4f, 40, &w, &runs);  // between neg (0.35) and threshold: still speech
  FeedGate(gate, 0.1f, 10, &w, &runs);  // 320 ms of silence: not enough
  EXPECT_TRUE(gate.is_open());
  FeedGate(gate, 0.9f, 3, &w, &runs);
  FeedGate(gate, 0.1f, 16, &w, &runs);  // 512 ms: the run ends
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].start, 15 * kW);
  EXPECT_TRUE(runs[0].ended);
  // A second run starts where the next speech does, not earlier than the first one's end.
  c.speech_pad_ms = 10000;
  VadGate padded(nullptr, c);
  w = 0;
  runs.clear();
  FeedGate(padded, 0.9f, 10, &w, &runs);
  FeedGate(padded, 0.1f, 16, &w, &runs);
  FeedGate(padded, 0.9f, 10, &w, &runs);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].start, runs[0].start + static_cast<int64_t>(runs[0].samples.size()));
}

TEST(VadGate, FinishEndsAnOpenRunWithTheLastSamples) {
  VadConfig c;
  c.min_speech_ms = 0;
  auto vad = SileroVad::Load(std::string(U2_MODELS_DIR) + "/silero_vad");
  ASSERT_TRUE(vad.ok()) << vad.status().ToString();
  VadGate gate(vad->get(), c);
  int w = 0;
  std::vector<GateRun> runs;
  FeedGate(gate, 0.9f, 3, &w, &runs);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(gate.Accept(std::vector<float>(100, 0.0f)).size(), 0u);  // part of a window: held
  const auto last = gate.Finish();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(last[0].ends);
  EXPECT_EQ(last[0].start, 3 * kW);
  EXPECT_EQ(last[0].samples.size(), 100u);
  EXPECT_TRUE(gate.Finish().empty());  // nothing more
}

}  // namespace
}  // namespace u2
