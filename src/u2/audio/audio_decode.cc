// Decoding through libsndfile's virtual I/O, so files and in-memory uploads share one path.
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "u2/audio/audio.h"

namespace u2 {
namespace {

// Largest encoded input we accept; beyond this a file cannot be < kMaxAudioFrames anyway
// (64 channels x 8 bytes x 2^28 frames would be 128 GiB, but real uploads are far smaller).
constexpr int64_t kMaxEncodedBytes = int64_t{4} << 30;
constexpr sf_count_t kReadBlockFrames = 8192;

struct MemoryReader {
  const std::byte* data = nullptr;
  sf_count_t size = 0;
  sf_count_t pos = 0;
};

sf_count_t MemGetLength(void* user) { return static_cast<MemoryReader*>(user)->size; }

sf_count_t MemSeek(sf_count_t offset, int whence, void* user) {
  auto* r = static_cast<MemoryReader*>(user);
  sf_count_t base = 0;
  switch (whence) {
    case SEEK_SET:
      base = 0;
      break;
    case SEEK_CUR:
      base = r->pos;
      break;
    case SEEK_END:
      base = r->size;
      break;
    default:
      return -1;
  }
  // A seek outside the data is clamped: libsndfile probes past the end of truncated files.
  sf_count_t target = base + offset;
  r->pos = std::clamp<sf_count_t>(target, 0, r->size);
  return r->pos;
}

sf_count_t MemRead(void* ptr, sf_count_t count, void* user) {
  auto* r = static_cast<MemoryReader*>(user);
  if (count <= 0) return 0;
  sf_count_t n = std::min(count, r->size - r->pos);
  if (n <= 0) return 0;
  std::memcpy(ptr, r->data + r->pos, static_cast<size_t>(n));
  r->pos += n;
  return n;
}

sf_count_t MemWrite(const void*, sf_count_t, void*) { return 0; }  // read-only
sf_count_t MemTell(void* user) { return static_cast<MemoryReader*>(user)->pos; }

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};

Status OpenError(int code, const char* message) {
  std::string what = std::string("cannot decode audio: ") + (message ? message : "unknown error");
  switch (code) {
    case SF_ERR_MALFORMED_FILE:
      return DataLoss(what);
    case SF_ERR_SYSTEM:
      return DataLoss(what);
    default:
      return InvalidArgument(what);  // unrecognised format, unsupported encoding
  }
}

// libsndfile quietly shortens a WAV/AIFF whose data chunk claims more bytes than the file has
// (it logs "data : 16000 (should be 3000)"). That is a truncated upload, unless the claim is a
// streaming writer's "unknown length" placeholder (0 or >= 2^31 - 1).
std::optional<std::string> TruncatedDataChunk(SNDFILE* file) {
  std::string log(16384, '\0');
  sf_command(file, SFC_GET_LOG_INFO, log.data(), static_cast<int>(log.size()));
  log.resize(std::strlen(log.c_str()));
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("data :", 0) != 0 && line.rfind("SSND :", 0) != 0) continue;
    unsigned long long claimed = 0, actual = 0;
    if (std::sscanf(line.c_str() + 6, " %llu (should be %llu)", &claimed, &actual) != 2) continue;
    if (claimed > actual && claimed != 0 && claimed < 0x7FFFFFFFull) {
      return "truncated (data chunk announces " + std::to_string(claimed) + " bytes, only " +
             std::to_string(actual) + " present)";
    }
  }
  return std::nullopt;
}

}  // namespace

StatusOr<AudioBuffer> DecodeAudio(std::span<const std::byte> encoded) {
  if (encoded.empty()) return InvalidArgument("cannot decode audio: input is empty (0 bytes)");
  if (static_cast<int64_t>(encoded.size()) > kMaxEncodedBytes) {
    return ResourceExhausted("cannot decode audio: input larger than 4 GiB");
  }
  MemoryReader reader{encoded.data(), static_cast<sf_count_t>(encoded.size()), 0};
  SF_VIRTUAL_IO io{MemGetLength, MemSeek, MemRead, MemWrite, MemTell};
  SF_INFO info{};
  std::unique_ptr<SNDFILE, SndfileCloser> file(sf_open_virtual(&io, SFM_READ, &info, &reader));
  if (!file) {
    // sf_error(nullptr) reports the most recent failed open (process-wide state in libsndfile;
    // under concurrent failures the category may be another thread's, never a success).
    return OpenError(sf_error(nullptr), sf_strerror(nullptr));
  }
  if (info.channels < 1 || info.channels > kMaxAudioChannels) {
    return InvalidArgument("cannot decode audio: " + std::to_string(info.channels) +
                           " channels (supported: 1.." + std::to_string(kMaxAudioChannels) + ")");
  }
  if (info.samplerate < kMinSampleRate || info.samplerate > kMaxSampleRate) {
    return InvalidArgument("cannot decode audio: sample rate " + std::to_string(info.samplerate) +
                           " Hz outside " + std::to_string(kMinSampleRate) + ".." +
                           std::to_string(kMaxSampleRate));
  }
  if (info.frames <= 0) return InvalidArgument("cannot decode audio: the file holds no samples");
  if (auto truncated = TruncatedDataChunk(file.get())) return DataLoss("cannot decode audio: " + *truncated);
  // Integer PCM is returned scaled to [-1, 1); float data is passed through.
  sf_command(file.get(), SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);

  const int channels = info.channels;
  AudioBuffer out;
  out.sample_rate = info.samplerate;
  // Reserve by what the bytes can hold, never by the header's frame count alone.
  const int64_t plausible = std::min<int64_t>(info.frames, static_cast<int64_t>(encoded.size()));
  out.samples.reserve(static_cast<size_t>(std::min<int64_t>(plausible, kMaxAudioFrames)));
  std::vector<float> block(static_cast<size_t>(kReadBlockFrames * channels));
  const float inv_channels = 1.0f / static_cast<float>(channels);
  int64_t total = 0;
  for (;;) {
    sf_count_t got = sf_readf_float(file.get(), block.data(), kReadBlockFrames);
    if (got <= 0) break;
    if (total + got > kMaxAudioFrames) {
      return ResourceExhausted("cannot decode audio: longer than " + std::to_string(kMaxAudioFrames) +
                               " samples");
    }
    for (sf_count_t i = 0; i < got; ++i) {
      const float* frame = block.data() + i * channels;
      float v;
      if (channels == 1) {
        v = frame[0];
      } else {
        float sum = 0.0f;
        for (int c = 0; c < channels; ++c) sum += frame[c];
        v = sum * inv_channels;
      }
      if (!std::isfinite(v)) {
        return InvalidArgument("cannot decode audio: sample " + std::to_string(total + i) +
                               " is NaN or infinite");
      }
      out.samples.push_back(v);
    }
    total += got;
  }
  if (int err = sf_error(file.get()); err != SF_ERR_NO_ERROR) {
    return DataLoss(std::string("cannot decode audio: ") + sf_strerror(file.get()));
  }
  if (total == 0) return InvalidArgument("cannot decode audio: the file holds no samples");
  if (info.frames != SF_COUNT_MAX && total < info.frames) {
    return DataLoss("cannot decode audio: truncated (header announces " + std::to_string(info.frames) +
                    " frames, only " + std::to_string(total) + " could be read)");
  }
  return out;
}

StatusOr<AudioBuffer> ReadAudioFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFound("audio file not found: " + path);
  if (std::filesystem::is_directory(path, ec))
    return InvalidArgument("not an audio file (a directory): " + path);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return NotFound("cannot open audio file: " + path);
  const std::streamoff size = in.tellg();
  if (size < 0) return DataLoss("cannot read audio file: " + path);
  if (size > kMaxEncodedBytes) return ResourceExhausted("audio file larger than 4 GiB: " + path);
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    return DataLoss("cannot read audio file: " + path);
  }
  auto decoded = DecodeAudio(bytes);
  if (!decoded.ok()) return decoded.status().WithContext(path);
  return decoded;
}

StatusOr<std::unique_ptr<AudioFileReader>> AudioFileReader::Open(const std::string& path, int target_rate) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFound("audio file not found: " + path);
  if (std::filesystem::is_directory(path, ec))
    return InvalidArgument("not an audio file (a directory): " + path);
  SF_INFO info{};
  std::unique_ptr<SNDFILE, SndfileCloser> file(sf_open(path.c_str(), SFM_READ, &info));
  if (!file) return OpenError(sf_error(nullptr), sf_strerror(nullptr)).WithContext(path);
  if (info.channels < 1 || info.channels > kMaxAudioChannels) {
    return InvalidArgument(path + ": " + std::to_string(info.channels) + " channels (supported: 1.." +
                           std::to_string(kMaxAudioChannels) + ")");
  }
  if (info.samplerate < kMinSampleRate || info.samplerate > kMaxSampleRate) {
    return InvalidArgument(path + ": sample rate " + std::to_string(info.samplerate) +
                           " Hz is not supported");
  }
  if (info.frames <= 0) return InvalidArgument(path + ": the file holds no samples");
  if (auto truncated = TruncatedDataChunk(file.get())) return DataLoss(path + ": " + *truncated);
  sf_command(file.get(), SFC_SET_NORM_FLOAT, nullptr, SF_TRUE);
  std::unique_ptr<AudioFileReader> r(new AudioFileReader());
  if (info.samplerate != target_rate) {
    U2_ASSIGN_OR_RETURN(r->resampler_, StreamingResampler::Create(info.samplerate, target_rate));
  }
  r->file_ = file.release();
  r->channels_ = info.channels;
  r->source_rate_ = info.samplerate;
  r->declared_frames_ = info.frames;
  r->path_ = path;
  return r;
}

AudioFileReader::~AudioFileReader() {
  if (file_) sf_close(static_cast<SNDFILE*>(file_));
}

StatusOr<std::vector<float>> AudioFileReader::Read(int64_t max_frames) {
  if (done_) return std::vector<float>();
  auto* file = static_cast<SNDFILE*>(file_);
  std::vector<float> block(static_cast<size_t>(std::max<int64_t>(max_frames, 1) * channels_));
  const sf_count_t got = sf_readf_float(file, block.data(), std::max<int64_t>(max_frames, 1));
  std::vector<float> mono(static_cast<size_t>(std::max<sf_count_t>(got, 0)));
  for (sf_count_t i = 0; i < got; ++i) {
    float sum = 0.0f;
    for (int c = 0; c < channels_; ++c) sum += block[i * channels_ + c];
    const float v = channels_ == 1 ? sum : sum / static_cast<float>(channels_);
    if (!std::isfinite(v)) {
      return InvalidArgument(path_ + ": sample " + std::to_string(frames_read_ + i) + " is NaN or infinite");
    }
    mono[static_cast<size_t>(i)] = v;
  }
  frames_read_ += std::max<sf_count_t>(got, 0);
  if (got <= 0) {
    done_ = true;
    if (int err = sf_error(file); err != SF_ERR_NO_ERROR) return DataLoss(path_ + ": " + sf_strerror(file));
    if (declared_frames_ != SF_COUNT_MAX && frames_read_ < declared_frames_) {
      return DataLoss(path_ + ": truncated (header announces " + std::to_string(declared_frames_) +
                      " frames, only " + std::to_string(frames_read_) + " could be read)");
    }
  }
  if (!resampler_) return mono;
  return resampler_->Process(mono, done_);
}

StatusOr<AudioBuffer> ReadAudioFileAs(const std::string& path, int target_rate) {
  U2_ASSIGN_OR_RETURN(AudioBuffer audio, ReadAudioFile(path));
  if (audio.sample_rate == target_rate) return audio;
  auto resampled = Resample(audio.samples, audio.sample_rate, target_rate);
  if (!resampled.ok()) return resampled.status().WithContext(path);
  audio.samples = std::move(resampled).value();
  audio.sample_rate = target_rate;
  return audio;
}

}  // namespace u2
