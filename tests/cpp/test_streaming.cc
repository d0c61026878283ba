// Streaming recognition: the chunked encoder against the chunk-masked full forward over the whole
// (chunk size x left chunks) grid, the streaming recognizer against the offline recognizer with
// the same chunk mask, batching across streams, endpointing / continuous decoding, the VAD gate,
// and the stream scheduler (ordering, errors, limits, idle timeout, memory).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "support/fixtures.h"
#include "u2/audio/audio.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/stream_scheduler.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/frontend/fbank.h"
#include "u2/model/asr_model.h"
#include "u2/util/table_file.h"
#include "u2/vad/silero_vad.h"
#include "u2/vad/vad_gate.h"

namespace u2 {
namespace {

using testing::ChunkWindows;

const std::string kDemoDir = std::string(U2_MODELS_DIR) + "/demo";
const std::string kSamplesDir = std::string(U2_TEST_DATA_DIR) + "/samples";

std::vector<std::vector<float>> DemoSamples() {
  std::vector<std::vector<float>> out;
  for (const char* name : {"test_000000", "test_000001", "test_000003", "test_000004", "test_000005"}) {
    auto a = ReadAudioFile(kSamplesDir + "/" + name + ".wav");
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    if (a.ok()) out.push_back(std::move(a->samples));
  }
  return out;
}

std::shared_ptr<const Recognizer> DemoRecognizer() {
  static std::shared_ptr<const Recognizer> r = [] {
    RecognizerConfig config;
    config.model_dir = kDemoDir;
    auto made = Recognizer::Create(config);
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? std::shared_ptr<const Recognizer>(std::move(*made)) : nullptr;
  }();
  return r;
}

std::shared_ptr<const StreamingRecognizer> DemoStreaming() {
  static std::shared_ptr<const StreamingRecognizer> s = [] {
    auto made = StreamingRecognizer::Create(DemoRecognizer());
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? std::shared_ptr<const StreamingRecognizer>(std::move(*made)) : nullptr;
  }();
  return s;
}

// Feeds `samples` in pieces of `piece` samples, decoding whenever a chunk is ready; returns every
// result the stream produced, in order.
std::vector<StreamResult> RunStream(const StreamingRecognizer& sr, RecognitionStream& s,
                                    std::span<const float> samples, size_t piece) {
  std::vector<StreamResult> results;
  for (size_t pos = 0; pos < samples.size(); pos += piece) {
    const size_t n = std::min(piece, samples.size() - pos);
    EXPECT_TRUE(s.AcceptWaveform(samples.subspan(pos, n)).ok());
    while (s.IsReady()) {
      RecognitionStream* p = &s;
      std::vector<Status> errors;
      EXPECT_TRUE(sr.DecodeStreams({&p, 1}, &errors).ok());
      EXPECT_TRUE(errors.at(0).ok()) << errors[0].ToString();
      if (!errors[0].ok()) return results;
    }
    for (StreamResult& r : s.TakeResults()) results.push_back(std::move(r));
  }
  s.InputFinished();
  while (s.IsReady()) {
    RecognitionStream* p = &s;
    EXPECT_TRUE(sr.DecodeStreams({&p, 1}).ok());
  }
  for (StreamResult& r : s.TakeResults()) results.push_back(std::move(r));
  return results;
}

std::vector<StreamResult> Finals(const std::vector<StreamResult>& results) {
  std::vector<StreamResult> out;
  for (const StreamResult& r : results)
    if (r.is_final) out.push_back(r);
  return out;
}

// ---- the chunked encoder over the whole grid (docs/wenet-numerics.md §4.3)
// -------------------------------------

// ForwardChunk equals the offline forward with the same chunk mask (which the fixture tests tie
// to PyTorch) for chunk 16/8/4 x left chunks all/4/0, on every causal fixture model and the demo.
TEST(StreamingEncoder, EqualsChunkMaskedForwardOnTheWholeGrid) {
  std::vector<std::string> dirs = {kDemoDir};
  for (const std::string& v : testing::FixtureVariants()) dirs.push_back(testing::FixtureModelDir(v));
  auto fbank = Fbank::Create(FbankConfig{});
  ASSERT_TRUE(fbank.ok());
  const auto samples = DemoSamples();
  ASSERT_FALSE(samples.empty());
  auto feats = (*fbank)->Compute(samples[1]);
  ASSERT_TRUE(feats.ok());
  int checked = 0;
  for (const std::string& dir : dirs) {
    SCOPED_TRACE(dir);
    auto model = AsrModel::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelConfig& c = (*model)->config();
    if (!c.encoder.StreamsExactly()) continue;
    for (int chunk : testing::StreamableChunks(c, {16, 8, 4})) {
      for (int left : {-1, 4, 0}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk) + " left " + std::to_string(left));
        StreamingOptions so{chunk, left};
        auto stream = (*model)->NewStream();
        std::vector<float> ctc;
        for (const auto& [start, len] : ChunkWindows(c, feats->num_frames, chunk)) {
          FeatureView f{feats->data.data() + static_cast<size_t>(start) * 80, len, 80};
          EncoderStream* sp = stream.get();
          auto out = (*model)->ForwardChunk({&sp, 1}, {&f, 1}, so);
          ASSERT_TRUE(out.ok()) << out.status().ToString();
          ctc.insert(ctc.end(), out->ctc_log_probs[0].begin(), out->ctc_log_probs[0].end());
        }
        EncodeOptions eo;
        eo.decoding_chunk_size = chunk;
        eo.num_decoding_left_chunks = left;
        FeatureView whole{feats->data.data(), feats->num_frames, 80};
        auto offline = (*model)->Encode({&whole, 1}, eo);
        ASSERT_TRUE(offline.ok());
        EXPECT_LT(testing::MaxRelativeError(stream->encoder_frames(), offline->EncoderFrames(0), 1e-3), 1e-4);
        EXPECT_LT(testing::MaxAbsError(ctc, offline->ctc_log_probs[0]), 1e-4);
        if (left >= 0) {
          EXPECT_LE(stream->cached_frames(), chunk * left);
        }
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 9 * 2);  // the demo and at least one causal fixture model
}

// ---- the streaming recognizer -----------------------------------------------------------------

TEST(StreamingRecognizer, FinalEqualsOfflineWithTheSameChunkMask) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  const Recognizer& offline = *DemoRecognizer();
  for (int chunk : {16, 8, 4}) {
    StreamOptions so = sr->default_options();
    so.decoding_chunk_size = chunk;
    DecodingOptions dop = offline.default_options();
    dop.mode = DecodingMode::kAttentionRescoring;
    dop.decoding_chunk_size = chunk;
    dop.num_decoding_left_chunks = -1;
    for (const auto& wav : DemoSamples()) {
      auto s = sr->NewStream(so);
      ASSERT_TRUE(s.ok());
      const auto finals = Finals(RunStream(*sr, **s, wav, 10240));
      ASSERT_EQ(finals.size(), 1u);
      EXPECT_TRUE((*s)->IsDone());
      Waveform w{wav, 16000};
      auto ref = offline.Recognize({&w, 1}, dop);
      ASSERT_TRUE(ref.ok());
      EXPECT_EQ(finals[0].best().text, (*ref)[0].best().text) << "chunk " << chunk;
      EXPECT_EQ(finals[0].best().tokens, (*ref)[0].best().tokens);
      EXPECT_NEAR(finals[0].best().score, (*ref)[0].best().score, 1e-3);
      EXPECT_EQ(finals[0].end_ms, static_cast<int64_t>(wav.size()) * 1000 / 16000);
    }
  }
}

// Encoders that subsample time inside the stack (Squeezeformer, Efficient Conformer) stream whole
// units only: the default chunk is one, another is refused by name, and the final equals the
// offline decode with the same chunk mask (with word times at the output frame rate, inside the audio).
TEST(StreamingRecognizer, StridedEncodersStreamInWholeUnits) {
  for (const std::string variant : {"efficient_conformer_v2_stream", "squeezeformer_stream_u2pp"}) {
    SCOPED_TRACE(variant);
    RecognizerConfig config;
    config.model_dir = testing::FixtureModelDir(variant);
    auto made = Recognizer::Create(config);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    std::shared_ptr<const Recognizer> offline = std::move(*made);
    auto sr = StreamingRecognizer::Create(offline);
    ASSERT_TRUE(sr.ok()) << sr.status().ToString();
    const int unit = offline->model_config().StreamingChunkUnit();
    EXPECT_GT(unit, 1);
    StreamOptions so = (*sr)->default_options();
    EXPECT_EQ(so.decoding_chunk_size % unit, 0);
    StreamOptions bad = so;
    bad.decoding_chunk_size = unit + 1;
    auto refused = (*sr)->NewStream(bad);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("multiple of " + std::to_string(unit)), std::string::npos)
        << refused.status().ToString();

    auto ref_file = testing::OpenFixture(variant);
    ASSERT_TRUE(ref_file);
    auto wav = ref_file->ReadFloat32("u2.wav");
    ASSERT_TRUE(wav.ok());
    DecodingOptions dop = offline->default_options();
    dop.mode = DecodingMode::kAttentionRescoring;
    dop.decoding_chunk_size = so.decoding_chunk_size;
    dop.num_decoding_left_chunks = -1;
    so.num_decoding_left_chunks = -1;
    auto s = (*sr)->NewStream(so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const auto finals = Finals(RunStream(**sr, **s, *wav, 4000));
    ASSERT_EQ(finals.size(), 1u);
    Waveform w{*wav, 16000};
    auto ref = offline->Recognize({&w, 1}, dop);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(finals[0].best().tokens, (*ref)[0].best().tokens);
    EXPECT_NEAR(finals[0].best().score, (*ref)[0].best().score, 1e-3);
    const int64_t audio_ms = static_cast<int64_t>(wav->size()) * 1000 / 16000;
    for (const auto& word : (*ref)[0].best().words) EXPECT_LE(word.end_ms, audio_ms + 100);
  }
}

TEST(StreamingRecognizer, PartialsAreThePrefixSearchOfTheChunksSoFar) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  StreamOptions so = sr->default_options();
  so.rescoring = false;  // the final is then the CTC prefix search over the whole stream
  const auto wav = DemoSamples().at(0);
  auto s = sr->NewStream(so);
  ASSERT_TRUE(s.ok());
  const auto results = RunStream(*sr, **s, wav, 10240);
  ASSERT_GE(results.size(), 3u);
  int64_t last_end = 0;
  for (size_t i = 0; i + 1 < results.size(); ++i) {
    EXPECT_FALSE(results[i].is_final);
    EXPECT_GT(results[i].end_ms, last_end);  // each partial covers more audio
    last_end = results[i].end_ms;
  }
  ASSERT_TRUE(results.back().is_final);
  DecodingOptions dop = DemoRecognizer()->default_options();
  dop.mode = DecodingMode::kCtcPrefixBeamSearch;
  dop.decoding_chunk_size = 16;
  Waveform w{wav, 16000};
  auto ref = DemoRecognizer()->Recognize({&w, 1}, dop);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(results.back().best().text, (*ref)[0].best().text);
  // Each partial is the prefix search over the chunks so far: the offline search with the same
  // chunk mask over the audio those chunks cover (its last full window ends at end_ms + the
  // window's look-ahead), checked for the first partial; tests/python/test_server_streaming.py
  // checks every partial this way through the server.
  const int64_t covered = results[0].end_ms + 30;  // + RC - R + 1 = 3 frames of look-ahead
  Waveform head{std::span<const float>(wav).first(static_cast<size_t>(covered * 16 + 240)), 16000};
  auto first = DemoRecognizer()->Recognize({&head, 1}, dop);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(results[0].best().tokens, (*first)[0].best().tokens);
}

TEST(StreamingRecognizer, AnyPieceSizeGivesTheSameResult) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  const auto wav = DemoSamples().at(2);
  std::string reference;
  for (size_t piece : {size_t{160000000}, size_t{10240}, size_t{1234}, size_t{160}, size_t{11}}) {
    auto s = sr->NewStream();
    ASSERT_TRUE(s.ok());
    const auto finals = Finals(RunStream(*sr, **s, wav, piece));
    ASSERT_EQ(finals.size(), 1u);
    if (reference.empty()) reference = finals[0].best().text;
    EXPECT_EQ(finals[0].best().text, reference) << "piece " << piece;
  }
  EXPECT_FALSE(reference.empty());
}

// Many streams at different offsets, decoded in shared batched steps, give exactly what each
// gives alone.
TEST(StreamingRecognizer, BatchedStreamsEqualStreamsAlone) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  const auto wavs = DemoSamples();
  std::vector<std::string> alone;
  for (const auto& wav : wavs) {
    auto s = sr->NewStream();
    ASSERT_TRUE(s.ok());
    alone.push_back(Finals(RunStream(*sr, **s, wav, 4000)).at(0).best().text);
  }
  // Stagger: stream k starts k * 3000 samples late and gets pieces of different sizes.
  std::vector<std::unique_ptr<RecognitionStream>> streams;
  for (size_t k = 0; k < wavs.size(); ++k) {
    auto made = sr->NewStream();
    ASSERT_TRUE(made.ok());
    streams.push_back(std::move(*made));
  }
  std::vector<size_t> pos(wavs.size(), 0);
  std::vector<std::string> finals(wavs.size());
  for (int tick = 0;; ++tick) {
    bool any = false;
    for (size_t k = 0; k < wavs.size(); ++k) {
      if (tick * 3000 < static_cast<int>(k) * 3000 || streams[k]->IsDone()) continue;
      const size_t piece = 2000 + 1500 * k;
      if (pos[k] < wavs[k].size()) {
        const size_t n = std::min(piece, wavs[k].size() - pos[k]);
        ASSERT_TRUE(streams[k]->AcceptWaveform(std::span<const float>(wavs[k]).subspan(pos[k], n)).ok());
        pos[k] += n;
        if (pos[k] == wavs[k].size()) streams[k]->InputFinished();
      }
      any = true;
    }
    std::vector<RecognitionStream*> batch;
    for (auto& s : streams) batch.push_back(s.get());
    while (true) {
      std::vector<RecognitionStream*> ready;
      for (auto* s : batch)
        if (s->IsReady()) ready.push_back(s);
      if (ready.empty()) break;
      std::vector<Status> errors;
      ASSERT_TRUE(sr->DecodeStreams(ready, &errors).ok());
      for (const Status& e : errors) ASSERT_TRUE(e.ok()) << e.ToString();
    }
    for (size_t k = 0; k < wavs.size(); ++k) {
      for (const StreamResult& r : streams[k]->TakeResults())
        if (r.is_final) finals[k] = r.best().text;
    }
    if (!any) break;
  }
  EXPECT_EQ(finals, alone);
}

TEST(StreamingRecognizer, EndpointingSplitsTwoSentencesWithAPause) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  const auto wavs = DemoSamples();
  // Pauses are faint noise (about 3 int16 units), as a room or a microphone gives, not exact
  // digital zeros, which real input never holds.
  uint32_t seed = 12345;
  auto quiet = [&seed](size_t n) {
    std::vector<float> q(n);
    for (float& v : q) {
      seed = seed * 1664525u + 1013904223u;
      v = (static_cast<float>(seed >> 8) / 16777216.0f - 0.5f) * 6.0f / 32768.0f;
    }
    return q;
  };
  std::vector<float> audio = quiet(8000);  // 0.5 s lead-in
  audio.insert(audio.end(), wavs[1].begin(), wavs[1].end());
  const int64_t pause_start_ms = static_cast<int64_t>(audio.size()) / 16;
  const auto pause = quiet(32000);  // 2 s pause
  audio.insert(audio.end(), pause.begin(), pause.end());
  const int64_t pause_end_ms = static_cast<int64_t>(audio.size()) / 16;
  audio.insert(audio.end(), wavs[3].begin(), wavs[3].end());
  const auto tail = quiet(8000);
  audio.insert(audio.end(), tail.begin(), tail.end());

  StreamOptions so = sr->default_options();
  so.endpointing = true;
  so.continuous_decoding = true;
  auto s = sr->NewStream(so);
  ASSERT_TRUE(s.ok());
  const auto finals = Finals(RunStream(*sr, **s, audio, 10240));
  ASSERT_EQ(finals.size(), 2u);
  EXPECT_EQ(finals[0].segment, 0);
  EXPECT_EQ(finals[1].segment, 1);
  EXPECT_FALSE(finals[0].best().text.empty());
  EXPECT_FALSE(finals[1].best().text.empty());
  // The first segment ends in the pause (rule 2: 1 s of trailing blank frames after speech; the
  // sample's own trailing silence counts too), the second starts there.
  EXPECT_GT(finals[0].end_ms, pause_start_ms);
  EXPECT_LT(finals[0].end_ms, pause_end_ms);
  EXPECT_EQ(finals[1].start_ms, finals[0].end_ms);
  EXPECT_EQ(finals[1].end_ms, static_cast<int64_t>(audio.size()) / 16);
  // Word times are absolute: the second segment's words reach into the second sentence.
  ASSERT_FALSE(finals[1].best().words.empty());
  EXPECT_GT(finals[1].best().words.back().end_ms, pause_end_ms + 1000);
  ASSERT_FALSE(finals[0].best().words.empty());
  EXPECT_LT(finals[0].best().words.back().end_ms, pause_start_ms + 500);
  // Without continuous decoding the stream ends at the first endpoint.
  so.continuous_decoding = false;
  auto one = sr->NewStream(so);
  ASSERT_TRUE(one.ok());
  const auto single = Finals(RunStream(*sr, **one, audio, 10240));
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].best().text, finals[0].best().text);
  EXPECT_TRUE((*one)->IsDone());
}

// Faint noise (about 3 int16 units), as a room or a microphone gives between sentences.
std::vector<float> QuietNoise(size_t n, uint32_t seed) {
  std::vector<float> q(n);
  for (float& v : q) {
    seed = seed * 1664525u + 1013904223u;
    v = (static_cast<float>(seed >> 8) / 16777216.0f - 0.5f) * 6.0f / 32768.0f;
  }
  return q;
}

std::shared_ptr<const StreamingRecognizer> DemoStreamingWithVad() {
  static std::shared_ptr<const StreamingRecognizer> s = [] {
    auto vad = SileroVad::Load(std::string(U2_MODELS_DIR) + "/silero_vad");
    EXPECT_TRUE(vad.ok()) << vad.status().ToString();
    if (!vad.ok()) return std::shared_ptr<const StreamingRecognizer>();
    auto made = StreamingRecognizer::Create(DemoRecognizer(), std::move(*vad));
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? std::shared_ptr<const StreamingRecognizer>(std::move(*made)) : nullptr;
  }();
  return s;
}

// Two sentences between long pauses: 3 s, sentence, 3 s, sentence, 2 s.
std::vector<float> TwoSentencesWithLongPauses() {
  const auto wavs = DemoSamples();
  std::vector<float> audio = QuietNoise(48000, 1);
  audio.insert(audio.end(), wavs[1].begin(), wavs[1].end());
  const auto pause = QuietNoise(48000, 2);
  audio.insert(audio.end(), pause.begin(), pause.end());
  audio.insert(audio.end(), wavs[3].begin(), wavs[3].end());
  const auto tail = QuietNoise(32000, 3);
  audio.insert(audio.end(), tail.begin(), tail.end());
  return audio;
}

// The gate's runs over `audio` fed in pieces of `piece` (the stream's VAD sees the same pieces).
std::vector<GatedAudio> GateRuns(std::span<const float> audio, size_t piece, const VadConfig& config) {
  auto vad = SileroVad::Load(std::string(U2_MODELS_DIR) + "/silero_vad");
  EXPECT_TRUE(vad.ok());
  VadGate gate(vad->get(), config);
  std::vector<GatedAudio> runs;
  auto collect = [&runs](std::vector<GatedAudio> pieces) {
    for (GatedAudio& a : pieces) {
      if (a.starts || runs.empty()) {
        runs.push_back(std::move(a));
      } else {
        runs.back().samples.insert(runs.back().samples.end(), a.samples.begin(), a.samples.end());
        runs.back().ends = a.ends;
      }
    }
  };
  for (size_t pos = 0; pos < audio.size(); pos += piece)
    collect(gate.Accept(audio.subspan(pos, std::min(piece, audio.size() - pos))));
  collect(gate.Finish());
  return runs;
}

// With the VAD gate, silence is never decoded, each pause ends a segment, and each segment's final
// equals a stream of exactly the audio the gate let through (times counted from the stream's start).
TEST(StreamingRecognizer, VadGateSkipsSilenceAndEndsSegmentsAtPauses) {
  auto sr = DemoStreamingWithVad();
  ASSERT_TRUE(sr);
  const auto audio = TwoSentencesWithLongPauses();
  StreamOptions so = sr->default_options();
  so.vad_gate = true;
  auto gated = sr->NewStream(so);
  ASSERT_TRUE(gated.ok()) << gated.status().ToString();
  const auto finals = Finals(RunStream(*sr, **gated, audio, 10240));

  const auto runs = GateRuns(audio, 10240, so.vad);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_GT(runs[0].start, 48000 - 3200 - 512 * 2);  // the speech starts after the 3 s lead-in
  ASSERT_EQ(finals.size(), 2u);
  for (size_t k = 0; k < runs.size(); ++k) {
    auto alone = sr->NewStream(sr->default_options());
    ASSERT_TRUE(alone.ok());
    const auto expected = Finals(RunStream(*sr, **alone, runs[k].samples, 10240));
    ASSERT_EQ(expected.size(), 1u);
    EXPECT_FALSE(expected[0].best().text.empty());
    EXPECT_EQ(finals[k].best().text, expected[0].best().text) << "segment " << k;
    EXPECT_EQ(finals[k].segment, static_cast<int>(k));
    EXPECT_EQ(finals[k].start_ms, runs[k].start / 160 * 10);
    EXPECT_LE(finals[k].end_ms, (runs[k].start + static_cast<int64_t>(runs[k].samples.size())) / 16);
    ASSERT_FALSE(finals[k].best().words.empty());
    EXPECT_GE(finals[k].best().words.front().start_ms, finals[k].start_ms);  // stream times
    EXPECT_LE(finals[k].best().words.back().end_ms, finals[k].end_ms);
  }
  // The pauses were skipped: far fewer chunks than the whole stream needs.
  auto whole = sr->NewStream(sr->default_options());
  ASSERT_TRUE(whole.ok());
  RunStream(*sr, **whole, audio, 10240);
  EXPECT_LT((*gated)->num_chunks_decoded(), (*whole)->num_chunks_decoded() * 3 / 4);

  // Silence alone decodes nothing and ends with one empty final.
  auto quiet = sr->NewStream(so);
  ASSERT_TRUE(quiet.ok());
  const auto silent = Finals(RunStream(*sr, **quiet, QuietNoise(16000 * 20, 4), 16000));
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_TRUE(silent[0].best().text.empty());
  EXPECT_EQ((*quiet)->num_chunks_decoded(), 0);

  // A recognizer without a VAD refuses the gate.
  auto refused = DemoStreaming()->NewStream(so);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
}

TEST(StreamingRecognizer, WordTimesAreOrderedAndInsideTheAudio) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  for (const auto& wav : DemoSamples()) {
    auto s = sr->NewStream();
    ASSERT_TRUE(s.ok());
    const auto finals = Finals(RunStream(*sr, **s, wav, 10240));
    ASSERT_EQ(finals.size(), 1u);
    const Hypothesis& h = finals[0].best();
    std::string joined;
    int64_t prev_end = 0;
    for (const WordPiece& w : h.words) {
      EXPECT_LE(w.start_ms, w.end_ms);
      EXPECT_GE(w.start_ms, prev_end - 1);
      EXPECT_LE(w.end_ms, static_cast<int64_t>(wav.size()) / 16 + 40);
      prev_end = w.end_ms;
      if (!joined.empty()) joined += ' ';
      joined += w.word;
    }
    std::string text;  // the transcript with runs of spaces collapsed
    for (char c : h.text) {
      if (c != ' ' || (!text.empty() && text.back() != ' ')) text += c;
    }
    EXPECT_EQ(joined, text);  // the words spell the transcript
  }
}

TEST(StreamingRecognizer, RejectsBadOptionsAndInput) {
  auto sr = DemoStreaming();
  ASSERT_TRUE(sr);
  StreamOptions bad = sr->default_options();
  bad.decoding_chunk_size = 0;
  EXPECT_FALSE(sr->NewStream(bad).ok());
  bad = sr->default_options();
  bad.nbest = bad.beam + 1;
  EXPECT_FALSE(sr->NewStream(bad).ok());
  bad = sr->default_options();
  bad.continuous_decoding = true;  // without endpointing
  EXPECT_FALSE(sr->NewStream(bad).ok());

  auto s = sr->NewStream();
  ASSERT_TRUE(s.ok());
  std::vector<float> nan(100, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ((*s)->AcceptWaveform(nan).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*s)->samples_accepted(), 0);
  (*s)->InputFinished();
  std::vector<float> ok(100, 0.0f);
  EXPECT_EQ((*s)->AcceptWaveform(ok).code(), StatusCode::kFailedPrecondition);
  // An empty stream still gets its (empty) final.
  RecognitionStream* p = s->get();
  ASSERT_TRUE(sr->DecodeStreams({&p, 1}).ok());
  auto results = (*s)->TakeResults();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].is_final);
  EXPECT_EQ(results[0].best().text, "");
  EXPECT_TRUE((*s)->IsDone());
  // The same stream twice in one step is refused.
  auto s2 = sr->NewStream();
  RecognitionStream* twice[] = {s2->get(), s2->get()};
  EXPECT_FALSE(sr->DecodeStreams(twice).ok());
}

// ---- the scheduler ----------------------------------------------------------------------------

struct FeedWaiter {
  std::mutex mu;
  std::condition_variable cv;
  int pending = 0;
  std::vector<std::pair<Status, StreamUpdate>> got;
  StreamCallback Callback() {
    {
      std::lock_guard<std::mutex> l(mu);
      ++pending;
    }
    return [this](const Status& st, StreamUpdate u) {
      std::lock_guard<std::mutex> l(mu);
      got.emplace_back(st, std::move(u));
      --pending;
      cv.notify_all();
    };
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(60), [this] { return pending == 0; }));
  }
};

std::unique_ptr<StreamScheduler> MakeScheduler(StreamSchedulerConfig config = {}) {
  auto s = StreamScheduler::Create(DemoStreaming(), config);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(*s) : nullptr;
}

TEST(StreamScheduler, ConcurrentStreamsGetTheirOwnResultsInOrder) {
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  const auto wavs = DemoSamples();
  std::vector<std::string> alone;
  for (const auto& wav : wavs) {
    auto s = DemoStreaming()->NewStream();
    alone.push_back(Finals(RunStream(*DemoStreaming(), **s, wav, 10240)).at(0).best().text);
  }
  std::vector<std::thread> clients;
  std::vector<std::string> finals(wavs.size());
  std::vector<int> responses(wavs.size(), 0);
  for (size_t k = 0; k < wavs.size(); ++k) {
    clients.emplace_back([&, k] {
      const std::string id = "client-" + std::to_string(k);
      ASSERT_TRUE(sched->Start(id).ok());
      FeedWaiter w;
      const size_t piece = k == 0 ? 11040 : 10240;
      for (size_t pos = 0; pos < wavs[k].size(); pos += piece) {
        const size_t n = std::min(piece, wavs[k].size() - pos);
        std::vector<float> chunk(wavs[k].begin() + pos, wavs[k].begin() + pos + n);
        sched->Feed(id, std::move(chunk), pos + n == wavs[k].size(), w.Callback());
        w.Wait();  // one request in flight per sequence, as Triton clients do
      }
      for (auto& [st, u] : w.got) ASSERT_TRUE(st.ok()) << st.ToString();
      responses[k] = static_cast<int>(w.got.size());
      ASSERT_TRUE(w.got.back().second.stream_done);
      ASSERT_FALSE(w.got.back().second.results.empty());
      ASSERT_TRUE(w.got.back().second.results.back().is_final);
      finals[k] = w.got.back().second.results.back().best().text;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(finals, alone);
  const auto stats = sched->stats();
  EXPECT_EQ(stats.live_streams, 0);
  EXPECT_EQ(stats.streams_finished, wavs.size());
  EXPECT_GT(stats.chunks, 0u);
  EXPECT_GT(stats.steps, 0u);
}

TEST(StreamingRecognizer, AnHourLongStreamGoesOnWithFlatMemory) {
  // A stream far longer than the model's positions (the fixture model has 256: about 10 s): each
  // segment ends where the positions run out and the next goes on; nothing fails and the state
  // stays the size of one segment, however long the stream runs (fed much faster than real time).
  RecognizerConfig config;
  config.model_dir = std::string(U2_FIXTURES_DIR) + "/conformer_u2pp_causal_ln/model";
  auto recognizer = Recognizer::Create(config);
  ASSERT_TRUE(recognizer.ok()) << recognizer.status().ToString();
  auto sr = StreamingRecognizer::Create(std::shared_ptr<const Recognizer>(std::move(*recognizer)));
  ASSERT_TRUE(sr.ok());
  auto s = (*sr)->NewStream();
  ASSERT_TRUE(s.ok());
  std::vector<float> second(16000);
  uint32_t seed = 7;
  size_t first_minute_peak = 0, later_peak = 0;
  int finals = 0;
  for (int t = 0; t < 3600; ++t) {
    for (size_t i = 0; i < second.size(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      second[i] =
          0.1f * std::sin(0.05f * static_cast<float>(i + t)) + ((seed >> 9) / 8388608.0f - 0.5f) * 0.02f;
    }
    ASSERT_TRUE((*s)->AcceptWaveform(second).ok());
    while ((*s)->IsReady()) {
      RecognitionStream* p = s->get();
      std::vector<Status> errors;
      ASSERT_TRUE((*sr)->DecodeStreams({&p, 1}, &errors).ok());
      ASSERT_TRUE(errors.at(0).ok()) << "at " << t << " s: " << errors[0].ToString();
    }
    for (const StreamResult& r : (*s)->TakeResults()) finals += r.is_final;
    (t < 60 ? first_minute_peak : later_peak) =
        std::max(t < 60 ? first_minute_peak : later_peak, (*s)->MemoryBytes());
  }
  EXPECT_GT(finals, 300);  // ~10 s segments
  EXPECT_FALSE((*s)->IsDone());
  EXPECT_LE(later_peak, first_minute_peak + first_minute_peak / 4)
      << first_minute_peak << " -> " << later_peak;
}

TEST(StreamScheduler, AudioAtAnotherRateIsResampledAsItArrives) {
  // A client sending 8 kHz audio to the 16 kHz model: the scheduler resamples piece by piece and
  // the final equals a stream fed the one-shot resampled audio (the offline path's resampling).
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  const auto wav16 = DemoSamples().at(1);
  auto wav8 = Resample(wav16, 16000, 8000);
  ASSERT_TRUE(wav8.ok());
  auto back = Resample(*wav8, 8000, 16000);
  ASSERT_TRUE(back.ok());
  auto s = DemoStreaming()->NewStream();
  ASSERT_TRUE(s.ok());
  const std::string want = Finals(RunStream(*DemoStreaming(), **s, *back, 10240)).at(0).best().text;
  ASSERT_FALSE(want.empty());
  ASSERT_TRUE(sched->Start("narrowband", DemoStreaming()->default_options(), 8000).ok());
  FeedWaiter w;
  for (size_t pos = 0; pos < wav8->size(); pos += 3331) {
    const size_t n = std::min<size_t>(3331, wav8->size() - pos);
    sched->Feed("narrowband", std::vector<float>(wav8->begin() + pos, wav8->begin() + pos + n),
                pos + n == wav8->size(), w.Callback());
    w.Wait();
  }
  for (auto& [st, u] : w.got) ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(w.got.back().second.stream_done);
  EXPECT_EQ(w.got.back().second.results.back().best().text, want);
  EXPECT_FALSE(sched->Start("bad-rate", DemoStreaming()->default_options(), 3).ok());
}

TEST(StreamScheduler, FeedsQueuedAtOnceAreAnsweredInOrder) {
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  const auto wav = DemoSamples().at(0);
  ASSERT_TRUE(sched->Start("s").ok());
  FeedWaiter w;
  std::vector<int> order;
  std::mutex mu;
  int n_feeds = 0;
  for (size_t pos = 0; pos < wav.size(); pos += 5000, ++n_feeds) {
    const size_t n = std::min<size_t>(5000, wav.size() - pos);
    auto cb = w.Callback();
    sched->Feed("s", std::vector<float>(wav.begin() + pos, wav.begin() + pos + n), pos + n == wav.size(),
                [&, cb, i = n_feeds](const Status& st, StreamUpdate u) {
                  {
                    std::lock_guard<std::mutex> l(mu);
                    order.push_back(i);
                  }
                  cb(st, std::move(u));
                });
  }
  w.Wait();
  std::vector<int> expected(n_feeds);
  for (int i = 0; i < n_feeds; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
}

TEST(StreamScheduler, BadUseGetsClearErrorsAndTheStreamSurvives) {
  StreamSchedulerConfig config;
  config.max_streams = 2;
  auto sched = MakeScheduler(config);
  ASSERT_TRUE(sched);
  FeedWaiter w;
  // Unknown id.
  sched->Feed("nope", std::vector<float>(1600, 0.0f), false, w.Callback());
  w.Wait();
  ASSERT_EQ(w.got.size(), 1u);
  EXPECT_EQ(w.got[0].first.code(), StatusCode::kNotFound);
  // Too many streams.
  ASSERT_TRUE(sched->Start("a").ok());
  ASSERT_TRUE(sched->Start("b").ok());
  const Status full = sched->Start("c");
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("limit is 2"), std::string::npos) << full.message();
  // Restarting a live id is not "too many".
  EXPECT_TRUE(sched->Start("a").ok());
  // Bad samples fail that feed only.
  std::vector<float> nan(1600, std::numeric_limits<float>::infinity());
  sched->Feed("a", nan, false, w.Callback());
  w.Wait();
  EXPECT_EQ(w.got.back().first.code(), StatusCode::kInvalidArgument);
  const auto wav = DemoSamples().at(0);
  sched->Feed("a", wav, true, w.Callback());
  w.Wait();
  ASSERT_TRUE(w.got.back().first.ok()) << w.got.back().first.ToString();
  EXPECT_TRUE(w.got.back().second.stream_done);
  // The ended stream is gone; feeding it again is NotFound.
  sched->Feed("a", std::vector<float>(1600, 0.0f), false, w.Callback());
  w.Wait();
  EXPECT_EQ(w.got.back().first.code(), StatusCode::kNotFound);
  // Close frees at once.
  EXPECT_TRUE(sched->Close("b").ok());
  EXPECT_EQ(sched->Close("b").code(), StatusCode::kNotFound);
  EXPECT_EQ(sched->stats().live_streams, 0);
  // Bad options.
  StreamOptions bad = DemoStreaming()->default_options();
  bad.beam = 0;
  EXPECT_EQ(sched->Start("x", bad).code(), StatusCode::kInvalidArgument);
}

TEST(StreamScheduler, IdleStreamsAreDropped) {
  StreamSchedulerConfig config;
  config.idle_timeout_ms = 500;
  auto sched = MakeScheduler(config);
  ASSERT_TRUE(sched);
  ASSERT_TRUE(sched->Start("idle").ok());
  FeedWaiter w;
  sched->Feed("idle", std::vector<float>(16000, 0.0f), false, w.Callback());
  w.Wait();
  ASSERT_TRUE(w.got.back().first.ok());
  // The timeout counts from the end of the stream's last decoding step, so however slow that
  // step was (a sanitized build), the stream is live when its answer arrives.
  EXPECT_TRUE(sched->IsLive("idle"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(sched->IsLive("idle"));
  EXPECT_EQ(sched->stats().streams_timed_out, 1u);
  sched->Feed("idle", std::vector<float>(1600, 0.0f), false, w.Callback());
  w.Wait();
  EXPECT_EQ(w.got.back().first.code(), StatusCode::kNotFound);
}

TEST(StreamScheduler, ThousandStreamsOpenedAndClosedLeaveNothingBehind) {
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  FeedWaiter w;
  std::vector<float> audio(12000, 0.01f);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "s" + std::to_string(i);
    ASSERT_TRUE(sched->Start(id).ok());
    if (i % 3 == 0) {
      sched->Feed(id, audio, true, w.Callback());  // ends normally
    } else if (i % 3 == 1) {
      sched->Feed(id, audio, false, w.Callback());
      w.Wait();
      ASSERT_TRUE(sched->Close(id).ok());  // client gone mid-stream
    } else {
      ASSERT_TRUE(sched->Close(id).ok());  // gone before any audio
    }
  }
  w.Wait();
  const auto stats = sched->stats();
  EXPECT_EQ(stats.live_streams, 0);
  EXPECT_EQ(stats.state_bytes, 0u);
  EXPECT_EQ(stats.streams_started, 1000u);
  EXPECT_EQ(stats.streams_finished + stats.streams_closed, 1000u);
}

// The scheduler computes a gated stream's features outside its lock (its own StreamFrontend): the
// results equal the stream decoded directly.
TEST(StreamScheduler, VadGatedStreamsEqualTheStreamDecodedDirectly) {
  auto sr = DemoStreamingWithVad();
  ASSERT_TRUE(sr);
  auto made = StreamScheduler::Create(sr, StreamSchedulerConfig{});
  ASSERT_TRUE(made.ok());
  auto& sched = *made;
  const auto audio = TwoSentencesWithLongPauses();
  StreamOptions so = sr->default_options();
  so.vad_gate = true;
  auto direct = sr->NewStream(so);
  ASSERT_TRUE(direct.ok());
  const auto expected = Finals(RunStream(*sr, **direct, audio, 10240));
  ASSERT_EQ(expected.size(), 2u);

  ASSERT_TRUE(sched->Start("gated", so).ok());
  FeedWaiter w;
  std::vector<StreamResult> finals;
  // 200 ms pieces, and the end as an empty last feed (as the WebSocket's "end" signal gives).
  for (size_t pos = 0; pos < audio.size(); pos += 3200) {
    const size_t n = std::min<size_t>(3200, audio.size() - pos);
    sched->Feed("gated", std::vector<float>(audio.begin() + pos, audio.begin() + pos + n), false,
                w.Callback());
    w.Wait();
  }
  sched->Feed("gated", {}, true, w.Callback());
  w.Wait();
  for (auto& [st, u] : w.got) {
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (const StreamResult& r : u.results)
      if (r.is_final) finals.push_back(r);
  }
  ASSERT_EQ(finals.size(), expected.size());
  for (size_t k = 0; k < finals.size(); ++k) {
    EXPECT_EQ(finals[k].best().text, expected[k].best().text);
    EXPECT_EQ(finals[k].start_ms, expected[k].start_ms);
    EXPECT_EQ(finals[k].end_ms, expected[k].end_ms);
  }
  EXPECT_TRUE(w.got.back().second.stream_done);
}

// An exception inside one decoding step (injected by the test hook, as std::bad_alloc) fails that
// step's streams with a clear error; the worker lives on and a stream started after it decodes
// normally.
TEST(StreamScheduler, AnExceptionInOneStepFailsOnlyThatStepsStreams) {
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  std::atomic<int> steps{0};
  sched->SetStepHookForTesting([&steps] {
    if (steps++ == 0) throw std::bad_alloc();
  });
  const auto wav = DemoSamples().at(0);
  auto expected_stream = DemoStreaming()->NewStream();
  ASSERT_TRUE(expected_stream.ok());
  const std::string expected =
      Finals(RunStream(*DemoStreaming(), **expected_stream, wav, 10240)).at(0).best().text;

  ASSERT_TRUE(sched->Start("doomed").ok());
  FeedWaiter doomed;
  sched->Feed("doomed", wav, true, doomed.Callback());
  doomed.Wait();
  ASSERT_EQ(doomed.got.size(), 1u);
  EXPECT_EQ(doomed.got[0].first.code(), StatusCode::kInternal);
  EXPECT_NE(doomed.got[0].first.message().find("bad_alloc"), std::string::npos)
      << doomed.got[0].first.ToString();
  EXPECT_FALSE(sched->IsLive("doomed"));

  ASSERT_TRUE(sched->Start("next").ok());
  FeedWaiter next;
  sched->Feed("next", wav, true, next.Callback());
  next.Wait();
  ASSERT_EQ(next.got.size(), 1u);
  ASSERT_TRUE(next.got[0].first.ok()) << next.got[0].first.ToString();
  ASSERT_TRUE(next.got[0].second.stream_done);
  EXPECT_EQ(next.got[0].second.results.back().best().text, expected);
}

TEST(StreamScheduler, ShutdownAnswersEveryQueuedFeed) {
  auto sched = MakeScheduler();
  ASSERT_TRUE(sched);
  FeedWaiter w;
  const auto wav = DemoSamples().at(1);
  for (int i = 0; i < 8; ++i) {
    const std::string id = "s" + std::to_string(i);
    ASSERT_TRUE(sched->Start(id).ok());
    sched->Feed(id, wav, true, w.Callback());
  }
  sched->Shutdown();
  w.Wait();
  EXPECT_EQ(w.got.size(), 8u);
  EXPECT_EQ(sched->Start("late").code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace u2
