// Resample and StreamingResampler with hostile rates, samples and piece sizes: the one-shot and the
// streaming paths must agree on the output length (round(n * to / from)), refuse bad rates and
// NaN/Inf as Status errors, and never write past their buffers.
//
// Input: from rate (4 bytes), to rate (4 bytes), piece-size seed (1 byte), then float32 samples.
// A rate's top bit set means "use the other 31 bits raw" (out-of-range rates); otherwise it is
// folded into the supported range.
#include <cmath>
#include <cstring>
#include <vector>

#include "fuzz_support.h"
#include "u2/audio/audio.h"

namespace {

int Rate(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if (v & 0x80000000u) return static_cast<int>(v & 0x7fffffffu) - (1 << 30);  // anything, negatives too
  return u2::kMinSampleRate + static_cast<int>(v % (u2::kMaxSampleRate - u2::kMinSampleRate + 1));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  const int from = Rate(data), to = Rate(data + 4);
  const unsigned piece_seed = data[8];
  // At most 4096 samples: a 384x upsampling of them is still 1.5 M outputs per run.
  const size_t n = std::min<size_t>((size - 9) / 4, 4096);
  std::vector<float> samples(n);
  if (n) std::memcpy(samples.data(), data + 9, n * 4);

  auto whole = u2::Resample(samples, from, to);
  auto stream = u2::StreamingResampler::Create(from, to);
  U2_FUZZ_CHECK(stream.ok() == (from >= u2::kMinSampleRate && from <= u2::kMaxSampleRate &&
                                to >= u2::kMinSampleRate && to <= u2::kMaxSampleRate));
  if (!stream.ok()) {
    U2_FUZZ_CHECK(!whole.ok());
    return 0;
  }
  bool finite = true;
  for (float v : samples) finite = finite && std::isfinite(v);
  U2_FUZZ_CHECK(whole.ok() == finite);
  if (whole.ok()) {
    // round(n * to / from), halves up, exactly (audio.h).
    const int64_t expected = (2 * static_cast<int64_t>(n) * to + from) / (2 * int64_t{from});
    U2_FUZZ_CHECK(static_cast<int64_t>(whole->size()) == expected);
  }

  // The same samples in pieces of 1..64 samples (sizes cycling from the seed), the last flushed.
  size_t offset = 0, total = 0, piece = 0;
  bool failed = false;
  while (true) {
    const size_t len = std::min<size_t>(n - offset, 1 + (piece_seed * 7 + piece * 13) % 64);
    const bool last = offset + len == n;
    auto out = (*stream)->Process(std::span<const float>(samples).subspan(offset, len), last);
    if (!out.ok()) {
      failed = true;
      break;
    }
    total += out->size();
    offset += len;
    ++piece;
    if (last) break;
  }
  U2_FUZZ_CHECK(failed == !finite);
  if (!failed) {
    U2_FUZZ_CHECK(static_cast<long long>(total) == static_cast<long long>(whole->size()));
    // After the flush nothing more is taken.
    U2_FUZZ_CHECK(!(*stream)->Process(samples, true).ok());
  }
  return 0;
}
