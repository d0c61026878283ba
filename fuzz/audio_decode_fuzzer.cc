// Encoded audio (WAV, FLAC, OGG/Vorbis, anything libsndfile opens) -> DecodeAudio -> the resampling
// to the model's 16 kHz that every upload goes through (OpenAI form files, u2recognize).
// libsndfile and libsoxr are Debian's uninstrumented builds: ASan still sees their reads and writes
// through memcpy and into our buffers, but coverage guides the fuzzer through our code only.
#include <cmath>
#include <span>

#include "fuzz_support.h"
#include "u2/audio/audio.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto audio = u2::DecodeAudio(std::as_bytes(std::span(data, size)));
  if (!audio.ok()) return 0;
  // What the header comment promises of a decoded file.
  U2_FUZZ_CHECK(audio->sample_rate >= u2::kMinSampleRate && audio->sample_rate <= u2::kMaxSampleRate);
  U2_FUZZ_CHECK(!audio->samples.empty());
  U2_FUZZ_CHECK(static_cast<int64_t>(audio->samples.size()) <= u2::kMaxAudioFrames);
  for (float v : audio->samples) U2_FUZZ_CHECK(std::isfinite(v));
  // Resampling cost grows with the length: a few seconds say as much as an hour would.
  constexpr size_t kMaxResampled = 1 << 16;
  if (audio->sample_rate != 16000 && audio->samples.size() <= kMaxResampled) {
    auto resampled = u2::Resample(audio->samples, audio->sample_rate, 16000);
    U2_FUZZ_CHECK(resampled.ok());
    // round(n * 16000 / rate), halves up, exactly (audio.h).
    const int64_t n = static_cast<int64_t>(audio->samples.size());
    U2_FUZZ_CHECK(static_cast<int64_t>(resampled->size()) ==
                  (2 * n * 16000 + audio->sample_rate) / (2 * int64_t{audio->sample_rate}));
  }
  return 0;
}
