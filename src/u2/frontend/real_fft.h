// Forward real FFT of power-of-two length whose float32 results are bit-identical to
// torch.fft.rfft on CPU (pocketfft), and therefore to torchaudio's kaldi.fbank.
//
// Why not FFTW: the spectrum of a loud frame has bins 10+ orders of magnitude below its peak
// (pre-emphasis and the Povey window push the low and far-off bins down), and in float32 those
// bins hold rounding noise whose exact value depends on the FFT's operation order. Any other FFT
// gives different noise there, and log-mel values that differ from torchaudio by up to ~1 in
// such bins (see tests/cpp/test_fbank.cc). Matching the reference therefore means repeating its
// arithmetic: FFTPACK's real radix-4 / radix-2 passes (Swarztrauber's public-domain algorithm,
// which pocketfft keeps), the same factor order, twiddles rounded to float from double,
// every product rounded before the following add (no fused multiply-add).
#pragma once

#include <cstddef>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

class RealFft {
 public:
  // n must be a power of two >= 2 (InvalidArgument otherwise).
  static StatusOr<RealFft> Create(int n);

  int size() const { return n_; }
  // Transforms data[0..n) in place into FFTPACK's half-complex order:
  //   r0, r1, i1, r2, i2, ..., r(n/2-1), i(n/2-1), r(n/2)
  // with X[k] = sum_j x[j] exp(-2 pi i j k / n) = r_k + i * i_k.
  // scratch must hold n floats. Thread-safe (const, no shared mutable state).
  void Forward(float* data, float* scratch) const;

 private:
  RealFft() = default;
  int n_ = 0;
  std::vector<int> radices_;  // FFTPACK factor order: a lone 2 first, then 4s
  std::vector<int> twiddle_offset_;
  std::vector<float> twiddles_;
};

}  // namespace u2
