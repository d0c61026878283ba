// See real_fft.h for why the operation order here must not change. The passes follow FFTPACK's
// RADF4/RADF2 (forward real transforms). Array views, with ido = the length of the innermost
// run and l1 = the number of independent sub-transforms of this pass:
//   input  in(a, k, j)  = in[a + ido * (k + l1 * j)]     (j: which of the `radix` inputs)
//   output out(a, j, k) = out[a + ido * (j + radix * k)]
//   twiddle tw(j, a)    = tw[a + j * (ido - 1)]           (cos at even a, sin at odd a)
#include "u2/frontend/real_fft.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

// Contracting a*b+c into an FMA would change the rounding and break bit-exactness.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace u2 {
namespace {

void RadixTwoPass(int ido, int l1, const float* in, float* out, const float* tw) {
  auto I = [&](int a, int k, int j) -> const float& { return in[a + ido * (k + l1 * j)]; };
  auto O = [&](int a, int j, int k) -> float& { return out[a + ido * (j + 2 * k)]; };
  for (int k = 0; k < l1; ++k) {
    O(0, 0, k) = I(0, k, 0) + I(0, k, 1);
    O(ido - 1, 1, k) = I(0, k, 0) - I(0, k, 1);
  }
  if ((ido & 1) == 0) {
    for (int k = 0; k < l1; ++k) {
      O(0, 1, k) = -I(ido - 1, k, 1);
      O(ido - 1, 0, k) = I(ido - 1, k, 0);
    }
  }
  if (ido <= 2) return;
  for (int k = 0; k < l1; ++k) {
    for (int i = 2; i < ido; i += 2) {
      const int ic = ido - i;
      const float wr = tw[i - 2], wi = tw[i - 1];
      const float tr2 = wr * I(i - 1, k, 1) + wi * I(i, k, 1);
      const float ti2 = wr * I(i, k, 1) - wi * I(i - 1, k, 1);
      O(i - 1, 0, k) = I(i - 1, k, 0) + tr2;
      O(ic - 1, 1, k) = I(i - 1, k, 0) - tr2;
      O(i, 0, k) = ti2 + I(i, k, 0);
      O(ic, 1, k) = ti2 - I(i, k, 0);
    }
  }
}

void RadixFourPass(int ido, int l1, const float* in, float* out, const float* tw) {
  constexpr float kHalfSqrt2 = 0.707106781186547524400844362104849f;
  auto I = [&](int a, int k, int j) -> const float& { return in[a + ido * (k + l1 * j)]; };
  auto O = [&](int a, int j, int k) -> float& { return out[a + ido * (j + 4 * k)]; };
  for (int k = 0; k < l1; ++k) {
    const float tr1 = I(0, k, 3) + I(0, k, 1);
    O(0, 2, k) = I(0, k, 3) - I(0, k, 1);
    const float tr2 = I(0, k, 0) + I(0, k, 2);
    O(ido - 1, 1, k) = I(0, k, 0) - I(0, k, 2);
    O(0, 0, k) = tr2 + tr1;
    O(ido - 1, 3, k) = tr2 - tr1;
  }
  if ((ido & 1) == 0) {
    for (int k = 0; k < l1; ++k) {
      const float ti1 = -kHalfSqrt2 * (I(ido - 1, k, 1) + I(ido - 1, k, 3));
      const float tr1 = kHalfSqrt2 * (I(ido - 1, k, 1) - I(ido - 1, k, 3));
      O(ido - 1, 0, k) = I(ido - 1, k, 0) + tr1;
      O(ido - 1, 2, k) = I(ido - 1, k, 0) - tr1;
      O(0, 3, k) = ti1 + I(ido - 1, k, 2);
      O(0, 1, k) = ti1 - I(ido - 1, k, 2);
    }
  }
  if (ido <= 2) return;
  const float* tw1 = tw;
  const float* tw2 = tw + (ido - 1);
  const float* tw3 = tw + 2 * (ido - 1);
  for (int k = 0; k < l1; ++k) {
    for (int i = 2; i < ido; i += 2) {
      const int ic = ido - i;
      // c_j = conj(w_j) * x_j for the three rotated inputs.
      const float cr2 = tw1[i - 2] * I(i - 1, k, 1) + tw1[i - 1] * I(i, k, 1);
      const float ci2 = tw1[i - 2] * I(i, k, 1) - tw1[i - 1] * I(i - 1, k, 1);
      const float cr3 = tw2[i - 2] * I(i - 1, k, 2) + tw2[i - 1] * I(i, k, 2);
      const float ci3 = tw2[i - 2] * I(i, k, 2) - tw2[i - 1] * I(i - 1, k, 2);
      const float cr4 = tw3[i - 2] * I(i - 1, k, 3) + tw3[i - 1] * I(i, k, 3);
      const float ci4 = tw3[i - 2] * I(i, k, 3) - tw3[i - 1] * I(i - 1, k, 3);
      const float tr1 = cr4 + cr2, tr4 = cr4 - cr2;
      const float ti1 = ci2 + ci4, ti4 = ci2 - ci4;
      const float tr2 = I(i - 1, k, 0) + cr3, tr3 = I(i - 1, k, 0) - cr3;
      const float ti2 = I(i, k, 0) + ci3, ti3 = I(i, k, 0) - ci3;
      O(i - 1, 0, k) = tr2 + tr1;
      O(ic - 1, 3, k) = tr2 - tr1;
      O(i, 0, k) = ti1 + ti2;
      O(ic, 3, k) = ti1 - ti2;
      O(i - 1, 2, k) = tr3 + ti4;
      O(ic - 1, 1, k) = tr3 - ti4;
      O(i, 2, k) = tr4 + ti3;
      O(ic, 1, k) = tr4 - ti3;
    }
  }
}

}  // namespace

StatusOr<RealFft> RealFft::Create(int n) {
  if (n < 2 || n > (1 << 24) || (n & (n - 1)) != 0) {
    return InvalidArgument("RealFft: size must be a power of two in 2..2^24, got " + std::to_string(n));
  }
  RealFft fft;
  fft.n_ = n;
  int rest = n;
  while (rest % 4 == 0) {
    fft.radices_.push_back(4);
    rest /= 4;
  }
  if (rest == 2) {  // FFTPACK puts the single factor 2 first
    fft.radices_.push_back(2);
    std::swap(fft.radices_.front(), fft.radices_.back());
  }
  // Twiddles for every pass but the last: cos/sin(2 pi j l1 i / n), computed in long double
  // and rounded once to float.
  int l1 = 1;
  for (size_t p = 0; p < fft.radices_.size(); ++p) {
    const int radix = fft.radices_[p];
    const int ido = n / (l1 * radix);
    fft.twiddle_offset_.push_back(static_cast<int>(fft.twiddles_.size()));
    if (p + 1 < fft.radices_.size()) {
      const size_t base = fft.twiddles_.size();
      fft.twiddles_.resize(base + static_cast<size_t>(radix - 1) * (ido - 1), 0.0f);
      for (int j = 1; j < radix; ++j) {
        for (int i = 1; i <= (ido - 1) / 2; ++i) {
          const long double angle = 2.0L * 3.141592653589793238462643383279502884L *
                                    static_cast<long double>(int64_t{j} * l1 * i) / n;
          fft.twiddles_[base + (j - 1) * (ido - 1) + 2 * i - 2] = static_cast<float>(std::cos(angle));
          fft.twiddles_[base + (j - 1) * (ido - 1) + 2 * i - 1] = static_cast<float>(std::sin(angle));
        }
      }
    }
    l1 *= radix;
  }
  return fft;
}

void RealFft::Forward(float* data, float* scratch) const {
  float* in = data;
  float* out = scratch;
  int l1 = n_;
  for (int p = static_cast<int>(radices_.size()) - 1; p >= 0; --p) {
    const int radix = radices_[p];
    const int ido = n_ / l1;
    l1 /= radix;
    const float* tw = twiddles_.data() + twiddle_offset_[p];
    if (radix == 4) {
      RadixFourPass(ido, l1, in, out, tw);
    } else {
      RadixTwoPass(ido, l1, in, out, tw);
    }
    std::swap(in, out);
  }
  if (in != data) std::copy(in, in + n_, data);
}

}  // namespace u2
