// Audio input: decoding files or in-memory bytes to mono float samples, and resampling.
//
// Everything returns Status instead of throwing: a broken, truncated or hostile file gives an
// InvalidArgument / DataLoss error, never a crash or an allocation driven by a lying header
// (decoded data is read in bounded blocks, so memory follows the data actually present).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

// Mono audio; samples are floats in [-1, 1) (integer PCM is scaled by 1/2^(bits-1), so 16-bit
// PCM k becomes exactly k/32768; float files are passed through unchanged).
struct AudioBuffer {
  std::vector<float> samples;
  int sample_rate = 0;

  double seconds() const { return sample_rate > 0 ? double(samples.size()) / sample_rate : 0.0; }
};

// Limits that keep a hostile or absurd file from exhausting memory or producing nonsense.
inline constexpr int kMaxAudioChannels = 64;
inline constexpr int kMinSampleRate = 1000;
inline constexpr int kMaxSampleRate = 384000;
inline constexpr int64_t kMaxAudioFrames = int64_t{1} << 28;  // 4.6 h at 16 kHz, 1.5 h at 48 kHz

// Decodes WAV (PCM 8/16/24/32-bit int, 32/64-bit float), FLAC and OGG/Vorbis (anything
// libsndfile reads). Multi-channel audio is averaged to mono.
// Errors: NotFound (no such file), InvalidArgument (not audio, unsupported, empty, absurd header,
// NaN/Inf samples), DataLoss (malformed or truncated), ResourceExhausted (longer than
// kMaxAudioFrames).
StatusOr<AudioBuffer> ReadAudioFile(const std::string& path);
// Same as ReadAudioFile, from an encoded file held in memory.
StatusOr<AudioBuffer> DecodeAudio(std::span<const std::byte> encoded);

// Band-limited resampling with libsoxr (high quality, linear phase). The output has
// round(n * to_rate / from_rate) samples; equal rates return a copy. Rates must lie in
// [kMinSampleRate, kMaxSampleRate]; NaN/Inf input is InvalidArgument.
StatusOr<std::vector<float>> Resample(std::span<const float> in, int from_rate, int to_rate);

// Resampling of audio that arrives in pieces (a live stream at the wire's rate for a model at
// another): the same libsoxr filter as Resample, with its state carried from piece to piece, so
// the pieces' outputs joined equal Resample of the whole (up to the last piece's flush).
class StreamingResampler {
 public:
  static StatusOr<std::unique_ptr<StreamingResampler>> Create(int from_rate, int to_rate);
  ~StreamingResampler();
  StreamingResampler(const StreamingResampler&) = delete;
  StreamingResampler& operator=(const StreamingResampler&) = delete;
  // Resamples the next piece; `last`: flush the filter (no more input after it). NaN/Inf is
  // InvalidArgument and nothing of the piece is taken.
  StatusOr<std::vector<float>> Process(std::span<const float> in, bool last);

 private:
  StreamingResampler() = default;
  void* soxr_ = nullptr;  // soxr_t
  double ratio_ = 1;
  int from_rate_ = 0, to_rate_ = 0;
  int64_t samples_in_ = 0, samples_out_ = 0;
  bool flushed_ = false;
};

// Reads an audio file a block at a time, mono, resampled to `target_rate` as it goes: memory
// follows the block, not the file, so recordings of hours are fine (no kMaxAudioFrames limit).
class AudioFileReader {
 public:
  // Errors as ReadAudioFile's, found at open (format, channels, rate, a truncated data chunk).
  static StatusOr<std::unique_ptr<AudioFileReader>> Open(const std::string& path, int target_rate);
  ~AudioFileReader();
  AudioFileReader(const AudioFileReader&) = delete;
  AudioFileReader& operator=(const AudioFileReader&) = delete;

  // The next samples (about max_frames of the source, at the target rate); empty at the end.
  // DataLoss if the file ends before its header says; InvalidArgument for NaN/Inf.
  StatusOr<std::vector<float>> Read(int64_t max_frames = 1 << 16);
  int source_rate() const { return source_rate_; }
  int64_t source_frames_read() const { return frames_read_; }
  // The length the header declares (streamed WAVs of unknown length: a huge number).
  double declared_seconds() const { return static_cast<double>(declared_frames_) / source_rate_; }

 private:
  AudioFileReader() = default;
  void* file_ = nullptr;  // SNDFILE*
  int channels_ = 1;
  int source_rate_ = 0;
  int64_t declared_frames_ = 0;
  int64_t frames_read_ = 0;
  bool done_ = false;
  std::string path_;
  std::unique_ptr<StreamingResampler> resampler_;  // null when the rates agree
};

// ReadAudioFile followed by Resample to target_rate when the file's rate differs.
StatusOr<AudioBuffer> ReadAudioFileAs(const std::string& path, int target_rate);

}  // namespace u2
