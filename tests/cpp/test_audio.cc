// Audio decoding and resampling. Test files are written with libsndfile into a temp dir from
// known integer / float samples, so the expected decoded values are exact.
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <random>

#include "u2/audio/audio.h"

namespace u2 {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("u2_test_audio_" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::vector<std::byte> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(data.size());
  std::memcpy(out.data(), data.data(), data.size());
  return out;
}

void WriteBytes(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// Interleaved integer samples in the full range of `bits`, deterministic: a sine per channel
// plus noise, including the extreme codes.
std::vector<int32_t> IntSamples(int frames, int channels, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t max_code = (int64_t{1} << (bits - 1)) - 1;
  std::uniform_int_distribution<int64_t> noise(-max_code / 50, max_code / 50);
  std::vector<int32_t> out(size_t(frames) * channels);
  for (int i = 0; i < frames; ++i) {
    for (int c = 0; c < channels; ++c) {
      double v = 0.7 * double(max_code) * std::sin(2 * std::numbers::pi * (220.0 * (c + 1)) * i / 16000.0);
      out[size_t(i) * channels + c] =
          int32_t(std::clamp<int64_t>(int64_t(v) + noise(rng), -max_code - 1, max_code));
    }
  }
  if (out.size() > 1) {
    out[0] = int32_t(-max_code - 1);  // the most negative code decodes to exactly -1
    out[1] = int32_t(max_code);
  }
  return out;
}

// Writes integer samples given at `bits` resolution; returns the path.
std::string WriteIntFile(const TempDir& dir, const std::string& name, int format, int rate, int channels,
                         int bits, const std::vector<int32_t>& samples) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  const std::string path = dir.File(name);
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  EXPECT_NE(f, nullptr) << sf_strerror(nullptr);
  if (!f) return path;
  // sf_writef_int takes 32-bit left-aligned codes; libsndfile keeps the top `bits` bits exactly.
  std::vector<int> shifted(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) shifted[i] = int(uint32_t(samples[i]) << (32 - bits));
  EXPECT_EQ(sf_writef_int(f, shifted.data(), sf_count_t(samples.size() / channels)),
            sf_count_t(samples.size() / channels));
  sf_close(f);
  return path;
}

// Mono reference: each channel as code / 2^(bits-1) (exact in float for bits <= 24), averaged
// the way the decoder documents (float sum, times 1/channels).
std::vector<float> ExpectedMono(const std::vector<int32_t>& samples, int channels, int bits) {
  const double scale = std::ldexp(1.0, -(bits - 1));
  std::vector<float> out(samples.size() / channels);
  for (size_t i = 0; i < out.size(); ++i) {
    float sum = 0;
    for (int c = 0; c < channels; ++c) sum += float(double(samples[i * channels + c]) * scale);
    out[i] = channels == 1 ? sum : sum * (1.0f / float(channels));
  }
  return out;
}

double MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

struct IntCase {
  std::string name;
  int format;
  int bits;
  int channels;
  double tolerance;  // 0: exact
};

TEST(ReadAudioFile, IntegerFormatsDecodeExactly) {
  TempDir dir;
  const std::vector<IntCase> cases = {
      {"pcm8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 8, 1, 0},
      {"pcm16.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16, 1, 0},
      {"pcm16_stereo.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16, 2, 0},
      {"pcm16_6ch.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16, 6, 1e-7},
      {"pcm24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 24, 1, 0},
      {"pcm24_stereo.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 24, 2, 0},
      // 32-bit codes do not fit a float mantissa: one rounding, relative 2^-24.
      {"pcm32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32, 32, 1, 6e-8},
      {"pcm16.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16, 1, 0},
      {"pcm24_stereo.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 24, 2, 0},
  };
  for (const auto& c : cases) {
    const int rate = 16000, frames = 4000;
    auto samples = IntSamples(frames, c.channels, c.bits, 42);
    const std::string path = WriteIntFile(dir, c.name, c.format, rate, c.channels, c.bits, samples);
    auto expected = ExpectedMono(samples, c.channels, c.bits);
    auto audio = ReadAudioFile(path);
    ASSERT_TRUE(audio.ok()) << c.name << ": " << audio.status().ToString();
    EXPECT_EQ(audio->sample_rate, rate) << c.name;
    ASSERT_EQ(audio->samples.size(), size_t(frames)) << c.name;
    EXPECT_LE(MaxDiff(audio->samples, expected), c.tolerance) << c.name;
    if (c.channels == 1) {
      EXPECT_EQ(audio->samples[0], -1.0f) << c.name;
    }
    // The in-memory path gives the same result.
    auto from_memory = DecodeAudio(ReadBytes(path));
    ASSERT_TRUE(from_memory.ok()) << c.name;
    EXPECT_EQ(from_memory->samples, audio->samples) << c.name;
  }
}

TEST(ReadAudioFile, FloatFormatsPassThrough) {
  TempDir dir;
  for (int subtype : {SF_FORMAT_FLOAT, SF_FORMAT_DOUBLE}) {
    for (int channels : {1, 2}) {
      std::vector<float> samples(3000 * channels);
      for (size_t i = 0; i < samples.size(); ++i) samples[i] = 0.9f * std::sin(0.001f * float(i * i % 10007));
      SF_INFO info{};
      info.samplerate = 22050;
      info.channels = channels;
      info.format = SF_FORMAT_WAV | subtype;
      const std::string path =
          dir.File("float" + std::to_string(subtype) + "_" + std::to_string(channels) + ".wav");
      SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
      ASSERT_NE(f, nullptr);
      ASSERT_EQ(sf_writef_float(f, samples.data(), 3000), 3000);
      sf_close(f);
      auto audio = ReadAudioFile(path);
      ASSERT_TRUE(audio.ok()) << audio.status().ToString();
      EXPECT_EQ(audio->sample_rate, 22050);
      std::vector<float> expected(3000);
      for (int i = 0; i < 3000; ++i) {
        expected[i] = channels == 1 ? samples[i] : (samples[2 * i] + samples[2 * i + 1]) * 0.5f;
      }
      EXPECT_EQ(audio->samples, expected);  // float and double files hold these values exactly
    }
  }
}

TEST(ReadAudioFile, OggVorbisDecodesCloseToTheSource) {
  TempDir dir;
  const int rate = 16000, frames = 16000;
  std::vector<float> samples(frames);
  for (int i = 0; i < frames; ++i)
    samples[i] = 0.5f * std::sin(2 * std::numbers::pi_v<float> * 440.0f * i / rate);
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 1;
  info.format = SF_FORMAT_OGG | SF_FORMAT_VORBIS;
  const std::string path = dir.File("tone.ogg");
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << sf_strerror(nullptr);
  ASSERT_EQ(sf_writef_float(f, samples.data(), frames), frames);
  sf_close(f);
  auto audio = ReadAudioFile(path);
  ASSERT_TRUE(audio.ok()) << audio.status().ToString();
  EXPECT_EQ(audio->sample_rate, rate);
  ASSERT_EQ(audio->samples.size(), size_t(frames));
  // Lossy: require 30 dB SNR away from the codec's start-up.
  double signal = 0, error = 0;
  for (int i = 2000; i < frames - 2000; ++i) {
    signal += double(samples[i]) * samples[i];
    error += std::pow(double(audio->samples[i]) - samples[i], 2);
  }
  EXPECT_GT(10 * std::log10(signal / error), 30.0);
}

TEST(ReadAudioFile, CommittedTestAudio) {
  auto speech = ReadAudioFile(std::string(U2_TEST_DATA_DIR) + "/audio/speech_like_16k.wav");
  ASSERT_TRUE(speech.ok()) << speech.status().ToString();
  EXPECT_EQ(speech->sample_rate, 16000);
  EXPECT_EQ(speech->samples.size(), 16000u);
  auto stereo = ReadAudioFileAs(std::string(U2_TEST_DATA_DIR) + "/audio/tones_44k_stereo.wav", 16000);
  ASSERT_TRUE(stereo.ok()) << stereo.status().ToString();
  EXPECT_EQ(stereo->sample_rate, 16000);
  EXPECT_EQ(stereo->samples.size(), size_t(std::llround(22050.0 * 16000 / 44100)));
  auto narrow = ReadAudioFileAs(std::string(U2_TEST_DATA_DIR) + "/audio/speech_like_8k.wav", 16000);
  ASSERT_TRUE(narrow.ok());
  EXPECT_EQ(narrow->samples.size(), 16000u);
  auto same_rate = ReadAudioFileAs(std::string(U2_TEST_DATA_DIR) + "/audio/speech_like_16k.wav", 16000);
  ASSERT_TRUE(same_rate.ok());
  EXPECT_EQ(same_rate->samples, speech->samples);
}

// Least-squares fit of a*sin + b*cos at `freq` over [begin, end): amplitude and the RMS residual.
std::pair<double, double> FitSine(const std::vector<float>& x, int rate, double freq, size_t begin,
                                  size_t end) {
  double ss = 0, cc = 0, sc = 0, xs = 0, xc = 0;
  for (size_t i = begin; i < end; ++i) {
    const double s = std::sin(2 * std::numbers::pi * freq * double(i) / rate);
    const double c = std::cos(2 * std::numbers::pi * freq * double(i) / rate);
    ss += s * s, cc += c * c, sc += s * c, xs += x[i] * s, xc += x[i] * c;
  }
  const double det = ss * cc - sc * sc;
  const double a = (xs * cc - xc * sc) / det, b = (xc * ss - xs * sc) / det;
  double residual = 0;
  for (size_t i = begin; i < end; ++i) {
    const double s = std::sin(2 * std::numbers::pi * freq * double(i) / rate);
    const double c = std::cos(2 * std::numbers::pi * freq * double(i) / rate);
    residual += std::pow(x[i] - a * s - b * c, 2);
  }
  return {std::hypot(a, b), std::sqrt(residual / double(end - begin))};
}

TEST(Resample, SineKeepsFrequencyAndAmplitude) {
  for (int rate : {8000, 22050, 44100, 48000}) {
    for (double freq : {440.0, 1000.0, 3500.0}) {
      const int n = rate + 123;  // about 1 s, not a round number
      std::vector<float> x(n);
      for (int i = 0; i < n; ++i) x[i] = float(0.5 * std::sin(2 * std::numbers::pi * freq * i / rate));
      auto y = Resample(x, rate, 16000);
      ASSERT_TRUE(y.ok()) << y.status().ToString();
      EXPECT_EQ(y->size(), size_t(std::llround(double(n) * 16000 / rate))) << rate;
      // Away from the edges (filter start-up), the output is the same sine at 16 kHz.
      auto [amplitude, residual] = FitSine(*y, 16000, freq, 800, y->size() - 800);
      EXPECT_NEAR(amplitude, 0.5, 0.005) << rate << " Hz, tone " << freq;  // 1%
      EXPECT_LT(residual, 1e-3) << rate << " Hz, tone " << freq;           // > 54 dB SNR
    }
  }
}

TEST(Resample, DownsamplingRemovesWhatCannotBeRepresented) {
  // A 7 kHz tone at 48 kHz cannot exist at 8 kHz (Nyquist 4 kHz): it must be filtered out, not aliased.
  const int n = 48000;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = float(0.5 * std::sin(2 * std::numbers::pi * 7000.0 * i / 48000));
  auto y = Resample(x, 48000, 8000);
  ASSERT_TRUE(y.ok());
  ASSERT_EQ(y->size(), 8000u);
  double rms = 0;
  for (size_t i = 500; i < 7500; ++i) rms += double((*y)[i]) * (*y)[i];
  EXPECT_LT(std::sqrt(rms / 7000), 1e-3);
}

TEST(Resample, EdgeCasesAndErrors) {
  std::vector<float> x = {0.1f, -0.2f, 0.3f};
  auto same = Resample(x, 16000, 16000);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, x);
  auto empty = Resample({}, 8000, 16000);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  for (auto [from, to] :
       std::vector<std::pair<int, int>>{{0, 16000}, {16000, 0}, {-8000, 16000}, {16000, 100000000}}) {
    EXPECT_EQ(Resample(x, from, to).status().code(), StatusCode::kInvalidArgument) << from << "->" << to;
  }
  std::vector<float> bad = {0.1f, NAN, 0.3f};
  EXPECT_EQ(Resample(bad, 8000, 16000).status().code(), StatusCode::kInvalidArgument);
  bad[1] = INFINITY;
  EXPECT_EQ(Resample(bad, 8000, 16000).status().code(), StatusCode::kInvalidArgument);
}

TEST(StreamingResampler, PiecesJoinedEqualTheOneShotResample) {
  // Speech-like content (a chirp plus noise) at the rates live clients send, cut into uneven pieces.
  for (auto [from, to] : std::vector<std::pair<int, int>>{{8000, 16000}, {48000, 16000}, {44100, 16000}}) {
    const int n = from * 2 + 777;
    std::vector<float> x(n);
    uint32_t seed = 12345;
    for (int i = 0; i < n; ++i) {
      seed = seed * 1664525u + 1013904223u;
      const double t = double(i) / from;
      x[i] = float(0.4 * std::sin(2 * std::numbers::pi * (200 + 600 * t) * t) +
                   0.01 * ((seed >> 8) / 16777216.0 - 0.5));
    }
    auto whole = Resample(x, from, to);
    ASSERT_TRUE(whole.ok());
    auto stream = StreamingResampler::Create(from, to);
    ASSERT_TRUE(stream.ok());
    std::vector<float> joined;
    size_t at = 0;
    for (size_t piece : {1u, 160u, 3u, 4000u, 999u}) {
      for (; at + piece <= x.size() / 2; at += piece) {
        auto out = (*stream)->Process(std::span<const float>(x).subspan(at, piece), false);
        ASSERT_TRUE(out.ok());
        joined.insert(joined.end(), out->begin(), out->end());
      }
    }
    auto tail = (*stream)->Process(std::span<const float>(x).subspan(at), true);
    ASSERT_TRUE(tail.ok());
    joined.insert(joined.end(), tail->begin(), tail->end());
    ASSERT_EQ(joined.size(), whole->size()) << from;
    double worst = 0;
    for (size_t i = 0; i < joined.size(); ++i)
      worst = std::max(worst, double(std::abs(joined[i] - (*whole)[i])));
    EXPECT_LT(worst, 1e-5) << from << " -> " << to;  // the same filter; float rounding only
    EXPECT_EQ((*stream)->Process(x, false).status().code(),
              StatusCode::kFailedPrecondition);  // after the last
  }
  auto bad = StreamingResampler::Create(8000, 16000);
  ASSERT_TRUE(bad.ok());
  std::vector<float> nan = {0.1f, NAN};
  EXPECT_EQ((*bad)->Process(nan, false).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(StreamingResampler::Create(0, 16000).ok());
}

// Found by fuzz/resample_fuzzer: the length was rounded from n times the rate ratio as a double,
// so an exact half sample could round down (300 samples from 1000 to 209545 Hz are 62863.5
// samples: 62863 came out, not round()'s 62864). Both paths now round n * to / from exactly.
TEST(Resample, LengthRoundsExactHalfSamplesUp) {
  const std::vector<float> x(300, 0.25f);
  auto whole = Resample(x, 1000, 209545);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->size(), 62864u);
  auto stream = StreamingResampler::Create(1000, 209545);
  ASSERT_TRUE(stream.ok());
  auto first = (*stream)->Process(std::span<const float>(x).first(100), false);
  auto rest = (*stream)->Process(std::span<const float>(x).subspan(100), true);
  ASSERT_TRUE(first.ok() && rest.ok());
  EXPECT_EQ(first->size() + rest->size(), 62864u);
  // Odd lengths at 32 kHz -> 16 kHz: exact halves, which the double ratio (0.5) always got right.
  auto half = Resample(std::vector<float>(321, 0.0f), 32000, 16000);
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->size(), 161u);
}

// ---- Bad input: always a clear error, never a crash or a giant allocation.

std::vector<std::byte> ValidWav16(int frames, int channels = 1, int rate = 16000) {
  TempDir dir;
  auto samples = IntSamples(frames, channels, 16, 9);
  const std::string path =
      WriteIntFile(dir, "ok.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, rate, channels, 16, samples);
  return ReadBytes(path);
}

void ExpectError(const StatusOr<AudioBuffer>& result, const std::string& what) {
  ASSERT_FALSE(result.ok()) << what << " decoded as " << result->samples.size() << " samples";
  const StatusCode code = result.status().code();
  EXPECT_TRUE(code == StatusCode::kInvalidArgument || code == StatusCode::kDataLoss)
      << what << ": " << result.status().ToString();
  EXPECT_FALSE(result.status().message().empty()) << what;
}

void PutLe32(std::vector<std::byte>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = std::byte((v >> (8 * i)) & 0xff);
}
void PutLe16(std::vector<std::byte>& b, size_t at, uint16_t v) {
  for (int i = 0; i < 2; ++i) b[at + i] = std::byte((v >> (8 * i)) & 0xff);
}

TEST(DecodeAudio, RejectsEmptyAndNonAudio) {
  EXPECT_EQ(DecodeAudio({}).status().code(), StatusCode::kInvalidArgument);
  const std::string text = "This is not audio, just a text file.\nline 2\n";
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  ExpectError(DecodeAudio(bytes), "text");
  std::mt19937 rng(99);
  for (size_t size : {1u, 7u, 44u, 1000u, 65536u}) {
    std::vector<std::byte> noise(size);
    for (auto& b : noise) b = std::byte(rng() & 0xff);
    ExpectError(DecodeAudio(noise), "random bytes " + std::to_string(size));
  }
}

TEST(DecodeAudio, RejectsZeroLengthAudio) {
  auto wav = ValidWav16(0);  // a correct header with an empty data chunk
  ASSERT_GE(wav.size(), 44u);
  auto result = DecodeAudio(wav);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << result.status().ToString();
}

TEST(DecodeAudio, RejectsTruncatedFiles) {
  auto wav = ValidWav16(8000);
  // Cut inside the header.
  for (size_t keep : {4u, 12u, 20u, 36u, 40u}) {
    ExpectError(DecodeAudio(std::span<const std::byte>(wav).first(keep)),
                "header cut at " + std::to_string(keep));
  }
  // Cut inside the data: the header announces more frames than exist.
  auto cut = DecodeAudio(std::span<const std::byte>(wav).first(44 + 3000));
  ASSERT_FALSE(cut.ok()) << "a WAV cut in its data decoded as " << cut->samples.size() << " samples";
  EXPECT_EQ(cut.status().code(), StatusCode::kDataLoss) << cut.status().ToString();
  // A FLAC file cut in half.
  TempDir dir;
  auto samples = IntSamples(16000, 1, 16, 5);
  auto flac =
      ReadBytes(WriteIntFile(dir, "x.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 16, samples));
  ExpectError(DecodeAudio(std::span<const std::byte>(flac).first(flac.size() / 2)), "half a FLAC");
}

TEST(DecodeAudio, RejectsAbsurdHeaders) {
  // Canonical 44-byte WAV header: channels at 22, rate at 24, byte rate 28, block align 32,
  // bits 34, data size at 40.
  auto base = ValidWav16(1000);
  {
    auto wav = base;
    PutLe16(wav, 22, 1000);  // 1000 channels
    PutLe16(wav, 32, 2000);
    ExpectError(DecodeAudio(wav), "1000 channels");
  }
  {
    auto wav = base;
    PutLe16(wav, 22, 0);  // 0 channels
    ExpectError(DecodeAudio(wav), "0 channels");
  }
  {
    auto wav = base;
    PutLe32(wav, 24, 0);  // 0 Hz
    PutLe32(wav, 28, 0);
    ExpectError(DecodeAudio(wav), "0 Hz");
  }
  {
    auto wav = base;
    PutLe32(wav, 24, 2000000000u);  // 2 GHz
    ExpectError(DecodeAudio(wav), "2 GHz");
  }
  {
    // A data chunk claiming ~4 GB in a 2 kB file: decode what is there or fail, but never
    // allocate by the claim.
    auto wav = base;
    PutLe32(wav, 40, 0xFFFFFFF0u);
    PutLe32(wav, 4, 0xFFFFFFF0u);
    auto result = DecodeAudio(wav);
    if (result.ok()) {
      EXPECT_EQ(result->samples.size(), 1000u);
      EXPECT_LT(result->samples.capacity(), 100000u);
    } else {
      EXPECT_TRUE(result.status().code() == StatusCode::kDataLoss ||
                  result.status().code() == StatusCode::kInvalidArgument);
    }
  }
}

TEST(DecodeAudio, AcceptsStreamedWavWithUnknownLength) {
  // Writers that stream to a pipe cannot seek back and leave 0xFFFFFFFF in the size fields.
  auto wav = ValidWav16(1000);
  auto expected = DecodeAudio(wav);
  ASSERT_TRUE(expected.ok());
  PutLe32(wav, 4, 0xFFFFFFFFu);
  PutLe32(wav, 40, 0xFFFFFFFFu);
  auto result = DecodeAudio(wav);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->samples, expected->samples);
}

// Mutated valid files (bytes flipped, cut, or both, deterministic seeds): every outcome must be
// a value or an error; a crash or a hang fails the test binary.
TEST(DecodeAudio, SurvivesMutatedFiles) {
  TempDir dir;
  auto samples = IntSamples(4000, 2, 16, 11);
  std::vector<std::vector<std::byte>> originals = {
      ReadBytes(WriteIntFile(dir, "m.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 2, 16, samples)),
      ReadBytes(WriteIntFile(dir, "m.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 2, 16, samples)),
      ReadBytes(WriteIntFile(dir, "m.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 16000, 2, 16, samples)),
  };
  std::mt19937 rng(2024);
  int decoded = 0, rejected = 0;
  for (const auto& original : originals) {
    for (int trial = 0; trial < 150; ++trial) {
      auto bytes = original;
      const int flips = 1 + int(rng() % 8);
      for (int i = 0; i < flips; ++i) {
        // Mostly in the headers, where a flipped byte changes the structure.
        const size_t at =
            (rng() % 4 == 0) ? rng() % bytes.size() : rng() % std::min<size_t>(bytes.size(), 128);
        bytes[at] = std::byte(rng() & 0xff);
      }
      if (rng() % 3 == 0) bytes.resize(1 + rng() % bytes.size());
      auto result = DecodeAudio(bytes);
      if (result.ok()) {
        ++decoded;
        for (float v : result->samples) ASSERT_TRUE(std::isfinite(v));
      } else {
        ++rejected;
      }
    }
  }
  EXPECT_EQ(decoded + rejected, 450);
  EXPECT_GT(rejected, 0);
}

TEST(DecodeAudio, RejectsNonFiniteFloatSamples) {
  TempDir dir;
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> samples(1000, 0.25f);
    samples[321] = bad;
    SF_INFO info{};
    info.samplerate = 16000;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    const std::string path = dir.File("nonfinite.wav");
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(sf_writef_float(f, samples.data(), 1000), 1000);
    sf_close(f);
    auto result = ReadAudioFile(path);
    ASSERT_FALSE(result.ok()) << bad;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(result.status().message().find("321"), std::string::npos) << result.status().message();
  }
}

TEST(ReadAudioFile, MissingPathsAndDirectories) {
  EXPECT_EQ(ReadAudioFile("/nonexistent/dir/x.wav").status().code(), StatusCode::kNotFound);
  TempDir dir;
  EXPECT_EQ(ReadAudioFile(dir.File("")).status().code(), StatusCode::kInvalidArgument);
  const std::string empty = dir.File("empty.wav");
  WriteBytes(empty, {});
  auto result = ReadAudioFile(empty);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("empty.wav"), std::string::npos);  // the path is named
  EXPECT_EQ(ReadAudioFileAs("/nonexistent.wav", 16000).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace u2
