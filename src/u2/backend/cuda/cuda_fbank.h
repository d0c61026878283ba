// Batched Kaldi fbank on the GPU, with the semantics of u2/frontend/fbank.h (FbankConfig):
// snip_edges framing, scale to int16 range, per-frame DC removal, pre-emphasis, Povey window,
// zero-padded real FFT (cuFFT R2C), power spectrum, HTK-mel triangles, log(max(E, FLT_EPSILON)).
// The CPU Fbank repeats torchaudio's float32 summation order bit for bit; this one does not (block
// reductions, cuFFT's butterflies), so values agree to ~1e-4 absolute in log-mel, not exactly
// (tests/gpu/test_gpu_fbank.cc states the tolerance it checks).
//
// Plain C++ header: usable by the engine when the build has the CUDA backend (U2_HAVE_CUDA).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "u2/frontend/fbank.h"
#include "u2/util/status.h"

namespace u2 {

class CudaFbank {
 public:
  // Plans cuFFT for batches of up to `max_frames_per_pass` frames (larger batches run in passes).
  static StatusOr<std::unique_ptr<CudaFbank>> Create(const FbankConfig& config, int device_id = 0,
                                                     int max_frames_per_pass = 16384);
  ~CudaFbank();
  CudaFbank(const CudaFbank&) = delete;
  CudaFbank& operator=(const CudaFbank&) = delete;

  const FbankConfig& config() const;
  int dim() const;
  int64_t NumFrames(int64_t num_samples) const;

  // Features of every waveform (samples in [-1, 1), checked like Fbank::Compute), computed in
  // one upload, a few launches and one download. Not thread-safe: one CudaFbank per thread.
  StatusOr<std::vector<FeatureMatrix>> Compute(std::span<const std::span<const float>> waveforms);

  // Same, but the features stay on the device: all utterances packed row after row into
  // `device_out` (at least Σ NumFrames · dim floats, device memory), utterance b from row
  // (*row_offsets)[b]. Synchronous (returns when the features are written).
  Status ComputeToDevice(std::span<const std::span<const float>> waveforms, float* device_out,
                         std::vector<int>* row_offsets);

  struct Impl;

 private:
  explicit CudaFbank(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace u2
