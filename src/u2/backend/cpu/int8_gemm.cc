#include "u2/backend/cpu/int8_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace u2::cpu {
namespace {

constexpr int kNr = PackedInt8Weight::kPanelWidth;
constexpr int kGroupBytes = kNr * PackedInt8Weight::kGroup;  // 64: one k-group of one panel
// A register tile holds at most this many rows × two panels of int32 sums.
constexpr int kMaxMr = 8;
constexpr int kTileLd = 2 * kNr;

inline int32_t LoadGroup(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// ---- kernels: an MR × (16·NP) tile of int32 sums over kg groups of four k ----
// a: the tile's first quantized row (leading dimension lda); b: its first panel (the second, when
// NP = 2, follows at b + panel_bytes); tile: MR rows of kTileLd int32.

template <int MR, int NP>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void DotAvx512Vnni(int kg, const uint8_t* a, int lda,
                                                                          const int8_t* b, size_t panel_bytes,
                                                                          int32_t* tile) {
  __m512i acc[MR][NP];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_si512();
  }
  const int8_t* b1 = b + (NP == 2 ? panel_bytes : 0);
  for (int g = 0; g < kg; ++g) {
    const __m512i w0 = _mm512_load_si512(b + static_cast<size_t>(g) * kGroupBytes);
    const __m512i w1 = NP == 2 ? _mm512_load_si512(b1 + static_cast<size_t>(g) * kGroupBytes) : w0;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i x = _mm512_set1_epi32(LoadGroup(a + static_cast<size_t>(r) * lda + 4 * g));
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, w0);
      if constexpr (NP == 2) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, w1);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) _mm512_storeu_si512(tile + r * kTileLd + p * kNr, acc[r][p]);
  }
}

// The ymm kernels' accumulators (columns 0-7 in lo, 8-15 in hi) into the tile.
template <int MR>
__attribute__((target("avx2"))) inline void StoreTile256(const __m256i* lo, const __m256i* hi,
                                                         int32_t* tile) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kTileLd), lo[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kTileLd + 8), hi[r]);
  }
}

template <int MR, int NP>
__attribute__((target("avx2,avxvnni"))) void DotAvxVnni(int kg, const uint8_t* a, int lda, const int8_t* b,
                                                        size_t /*panel_bytes*/, int32_t* tile) {
  static_assert(NP == 1);
  __m256i lo[MR], hi[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  for (int g = 0; g < kg; ++g) {
    const int8_t* bg = b + static_cast<size_t>(g) * kGroupBytes;
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i x = _mm256_set1_epi32(LoadGroup(a + static_cast<size_t>(r) * lda + 4 * g));
      lo[r] = _mm256_dpbusd_avx_epi32(lo[r], x, w0);
      hi[r] = _mm256_dpbusd_avx_epi32(hi[r], x, w1);
    }
  }
  StoreTile256<MR>(lo, hi, tile);
}

template <int MR, int NP>
__attribute__((target("avx2"))) void DotAvx2(int kg, const uint8_t* a, int lda, const int8_t* b,
                                             size_t /*panel_bytes*/, int32_t* tile) {
  static_assert(NP == 1);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i lo[MR], hi[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  for (int g = 0; g < kg; ++g) {
    const int8_t* bg = b + static_cast<size_t>(g) * kGroupBytes;
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      // |qa| (≤ 127, as u8) times qw·sign(qa): pairs of products stay within int16.
      const __m256i x = _mm256_set1_epi32(LoadGroup(a + static_cast<size_t>(r) * lda + 4 * g));
      const __m256i ax = _mm256_abs_epi8(x);
      const __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, x));
      const __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, x));
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(p0, ones));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(p1, ones));
    }
  }
  StoreTile256<MR>(lo, hi, tile);
}

template <int MR, int NP>
void DotPortable(int kg, const uint8_t* a, int lda, const int8_t* b, size_t /*panel_bytes*/, int32_t* tile) {
  static_assert(NP == 1);
  for (int r = 0; r < MR; ++r) {
    const int8_t* ar = reinterpret_cast<const int8_t*>(a + static_cast<size_t>(r) * lda);
    int32_t* out = tile + r * kTileLd;
    for (int j = 0; j < kNr; ++j) out[j] = 0;
    for (int g = 0; g < kg; ++g) {
      const int8_t* bg = b + static_cast<size_t>(g) * kGroupBytes;
      for (int j = 0; j < kNr; ++j) {
        for (int t = 0; t < 4; ++t) out[j] += int32_t{ar[4 * g + t]} * int32_t{bg[4 * j + t]};
      }
    }
  }
}

using DotFn = void (*)(int, const uint8_t*, int, const int8_t*, size_t, int32_t*);

// A kernel family: its row tile, panels per tile, and the instance per (rows, panels).
struct KernelSet {
  int mr;
  int np;
  bool unsigned_a;  // A stored as qa + 128 (VNNI)
  DotFn fn[kMaxMr + 1][3];
};

#define U2_INT8_ROWS(F, NP) \
  { nullptr, F<1, NP>, F<2, NP>, F<3, NP>, F<4, NP>, F<5, NP>, F<6, NP>, F<7, NP>, F<8, NP> }

const KernelSet& Kernels(Int8Kernel kernel) {
  // Index [rows][panels]; a table row lists the instances for 1 and 2 panels.
  static const KernelSet avx512 = [] {
    KernelSet s{8, 2, true, {}};
    const DotFn one[] = U2_INT8_ROWS(DotAvx512Vnni, 1);
    const DotFn two[] = U2_INT8_ROWS(DotAvx512Vnni, 2);
    for (int r = 1; r <= kMaxMr; ++r) s.fn[r][1] = one[r], s.fn[r][2] = two[r];
    return s;
  }();
  static const KernelSet avxvnni = [] {
    KernelSet s{6, 1, true, {}};
    const DotFn one[] = U2_INT8_ROWS(DotAvxVnni, 1);
    for (int r = 1; r <= 6; ++r) s.fn[r][1] = one[r];
    return s;
  }();
  static const KernelSet avx2 = [] {
    KernelSet s{4, 1, false, {}};
    const DotFn one[] = U2_INT8_ROWS(DotAvx2, 1);
    for (int r = 1; r <= 4; ++r) s.fn[r][1] = one[r];
    return s;
  }();
  static const KernelSet portable = [] {
    KernelSet s{4, 1, false, {}};
    const DotFn one[] = U2_INT8_ROWS(DotPortable, 1);
    for (int r = 1; r <= 4; ++r) s.fn[r][1] = one[r];
    return s;
  }();
  switch (kernel) {
    case Int8Kernel::kAvx512Vnni:
      return avx512;
    case Int8Kernel::kAvxVnni:
      return avxvnni;
    case Int8Kernel::kAvx2:
      return avx2;
    case Int8Kernel::kPortable:
      break;
  }
  return portable;
}
#undef U2_INT8_ROWS

// Runs the kernel over rows [row_begin, row_end) × panels [panel_begin, panel_end) and hands each
// tile row's exact sums to sink(row, first column, sums, valid columns).
template <typename Sink>
void ForEachTileRow(Int8Kernel kernel, const uint8_t* qa, int ldqa, int row_begin, int row_end,
                    const PackedInt8Weight& w, int panel_begin, int panel_end, Sink&& sink) {
  const KernelSet& ks = Kernels(kernel);
  const int kg = w.k_groups();
  const size_t panel_bytes = static_cast<size_t>(w.k_padded()) * kNr;
  const int32_t* column_sums = w.column_sums();
  alignas(64) int32_t tile[kMaxMr * kTileLd];
  // Row block (its quantized rows stay in L2) → panel step → row tile.
  for (int m0 = row_begin; m0 < row_end; m0 += kInt8GemmMBlock) {
    const int m1 = std::min(row_end, m0 + kInt8GemmMBlock);
    for (int p = panel_begin; p < panel_end; p += ks.np) {
      const int np = std::min(ks.np, panel_end - p);
      const int j0 = p * kNr;
      const int cols = std::min(np * kNr, w.n() - j0);
      for (int i = m0; i < m1; i += ks.mr) {
        const int mr = std::min(ks.mr, m1 - i);
        ks.fn[mr][np](kg, qa + static_cast<size_t>(i) * ldqa, ldqa, w.panel(p), panel_bytes, tile);
        for (int r = 0; r < mr; ++r) {
          int32_t* sums = tile + r * kTileLd;
          if (ks.unsigned_a) {
            // (qa + 128)·qw summed = qa·qw summed + 128·Σ qw.
            for (int j = 0; j < cols; ++j) sums[j] -= 128 * column_sums[j0 + j];
          }
          sink(i + r, j0, sums, cols);
        }
      }
    }
  }
}

bool DetectSupport(Int8Kernel kernel) {
  __builtin_cpu_init();
  switch (kernel) {
    case Int8Kernel::kPortable:
      return true;
    case Int8Kernel::kAvx2:
      return __builtin_cpu_supports("avx2");
    case Int8Kernel::kAvxVnni:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case Int8Kernel::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

// max |a[k]| over a row.
__attribute__((target("avx2"))) float RowAbsMaxAvx2(const float* a, int k) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= k; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(a + i)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = 0.0f;
  for (float v : lanes) r = std::max(r, v);
  for (; i < k; ++i) r = std::max(r, std::fabs(a[i]));
  return r;
}

// out[0, k) = rint(a·inv) as bytes (xor 0x80: + 128 as u8). cvtps rounds to nearest even like
// nearbyint in the default rounding mode, so the tail agrees with the vector part.
__attribute__((target("avx2"))) void QuantizeRowAvx2(const float* a, int k, float inv, uint8_t flip,
                                                     uint8_t* out) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i lowest = _mm256_set1_epi8(-127);
  const __m256i vflip = _mm256_set1_epi8(static_cast<char>(flip));
  int i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + i), vinv));
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + i + 8), vinv));
    const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + i + 16), vinv));
    const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + i + 24), vinv));
    // packs work within 128-bit lanes: the permutation puts the four groups of 8 back in order.
    __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    q = _mm256_permutevar8x32_epi32(q, order);
    q = _mm256_max_epi8(q, lowest);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_xor_si256(q, vflip));
  }
  for (; i < k; ++i) {
    const float v = std::clamp(std::nearbyint(a[i] * inv), -127.0f, 127.0f);
    out[i] = static_cast<uint8_t>(static_cast<int8_t>(v)) ^ flip;
  }
}

void QuantizeRowPortable(const float* a, int k, float inv, uint8_t flip, uint8_t* out) {
  for (int i = 0; i < k; ++i) {
    const float v = std::clamp(std::nearbyint(a[i] * inv), -127.0f, 127.0f);
    out[i] = static_cast<uint8_t>(static_cast<int8_t>(v)) ^ flip;
  }
}

float RowAbsMaxPortable(const float* a, int k) {
  float r = 0.0f;
  for (int i = 0; i < k; ++i) r = std::max(r, std::fabs(a[i]));
  return r;
}

}  // namespace

const char* Int8KernelName(Int8Kernel kernel) {
  switch (kernel) {
    case Int8Kernel::kPortable:
      return "portable";
    case Int8Kernel::kAvx2:
      return "avx2";
    case Int8Kernel::kAvxVnni:
      return "avx-vnni";
    case Int8Kernel::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "?";
}

bool Int8KernelSupported(Int8Kernel kernel) {
  static const bool supported[4] = {DetectSupport(Int8Kernel::kPortable), DetectSupport(Int8Kernel::kAvx2),
                                    DetectSupport(Int8Kernel::kAvxVnni),
                                    DetectSupport(Int8Kernel::kAvx512Vnni)};
  return supported[static_cast<int>(kernel)];
}

Int8Kernel BestInt8Kernel() {
  static const Int8Kernel best = [] {
    for (Int8Kernel k : {Int8Kernel::kAvx512Vnni, Int8Kernel::kAvxVnni, Int8Kernel::kAvx2}) {
      if (Int8KernelSupported(k)) return k;
    }
    return Int8Kernel::kPortable;
  }();
  return best;
}

Int8Kernel SelectedInt8Kernel() {
  const char* name = std::getenv("U2_CPU_INT8_KERNEL");
  if (name != nullptr) {
    for (Int8Kernel k :
         {Int8Kernel::kPortable, Int8Kernel::kAvx2, Int8Kernel::kAvxVnni, Int8Kernel::kAvx512Vnni}) {
      if (std::strcmp(name, Int8KernelName(k)) == 0 && Int8KernelSupported(k)) return k;
    }
  }
  return BestInt8Kernel();
}

void QuantizeRowsSymmetric(const float* w, int rows, int cols, int ldw, int8_t* q, float* scales) {
  for (int r = 0; r < rows; ++r) {
    const float* wr = w + static_cast<size_t>(r) * ldw;
    float amax = 0.0f;
    for (int c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(wr[c]));
    const float s = amax == 0.0f ? 1.0f : amax / 127.0f;
    scales[r] = s;
    int8_t* qr = q + static_cast<size_t>(r) * cols;
    // A division, not a product with 1/s: the rule must match numpy's w / s bit for bit.
    for (int c = 0; c < cols; ++c)
      qr[c] = static_cast<int8_t>(std::clamp(std::nearbyint(wr[c] / s), -127.0f, 127.0f));
  }
}

void PackedInt8Weight::AlignedDelete::operator()(void* p) const {
  ::operator delete[](p, std::align_val_t(64));
}

PackedInt8Weight::PackedInt8Weight(const int8_t* q, const float* scales, int n, int k)
    : n_(std::max(n, 0)), k_(std::max(k, 0)) {
  const int padded_n = num_panels() * kNr;
  data_.reset(static_cast<int8_t*>(::operator new[](std::max<size_t>(bytes(), 64), std::align_val_t(64))));
  std::memset(data_.get(), 0, std::max<size_t>(bytes(), 64));
  scales_ = std::make_unique<float[]>(std::max(padded_n, 1));
  column_sums_ = std::make_unique<int32_t[]>(std::max(padded_n, 1));
  for (int j = 0; j < padded_n; ++j) {
    scales_[j] = j < n_ ? scales[j] : 0.0f;
    column_sums_[j] = 0;
  }
  for (int j = 0; j < n_; ++j) {
    const int8_t* row = q + static_cast<size_t>(j) * k_;
    int8_t* dst = data_.get() + static_cast<size_t>(j / kNr) * k_padded() * kNr + (j % kNr) * kGroup;
    int32_t sum = 0;
    for (int kk = 0; kk < k_; ++kk) {
      dst[static_cast<size_t>(kk / kGroup) * kGroupBytes + kk % kGroup] = row[kk];
      sum += row[kk];
    }
    column_sums_[j] = sum;
  }
}

void QuantizeActivationRows(Int8Kernel kernel, const float* a, int lda, int row_begin, int row_end, int k,
                            int k_padded, uint8_t* out, int ld_out, float* scales) {
  const bool avx2 = kernel != Int8Kernel::kPortable;
  const uint8_t flip = Kernels(kernel).unsigned_a ? 0x80 : 0x00;
  for (int i = row_begin; i < row_end; ++i) {
    const float* ar = a + static_cast<size_t>(i) * lda;
    uint8_t* o = out + static_cast<size_t>(i) * ld_out;
    const float amax = avx2 ? RowAbsMaxAvx2(ar, k) : RowAbsMaxPortable(ar, k);
    if (amax == 0.0f || !std::isfinite(amax)) {
      // An all-zero row is exactly zero. A row holding Inf/NaN has no scale; it gives zeros too
      // (the fp32 path would spread the NaN; the rows after it are unaffected either way).
      scales[i] = 0.0f;
      std::memset(o, flip, k_padded);
      continue;
    }
    scales[i] = amax / 127.0f;
    const float inv = 127.0f / amax;
    if (avx2) {
      QuantizeRowAvx2(ar, k, inv, flip, o);
    } else {
      QuantizeRowPortable(ar, k, inv, flip, o);
    }
    std::memset(o + k, flip, k_padded - k);
  }
}

void Int8GemmTile(Int8Kernel kernel, const uint8_t* qa, int ldqa, const float* a_scales, int row_begin,
                  int row_end, const PackedInt8Weight& w, int panel_begin, int panel_end, float beta,
                  float* c, int ldc) {
  const float* w_scales = w.scales();
  ForEachTileRow(kernel, qa, ldqa, row_begin, row_end, w, panel_begin, panel_end,
                 [&](int i, int j0, const int32_t* sums, int cols) {
                   const float sa = a_scales[i];
                   const float* sw = w_scales + j0;
                   float* ci = c + static_cast<size_t>(i) * ldc + j0;
                   if (beta == 0.0f) {
                     for (int j = 0; j < cols; ++j) ci[j] = static_cast<float>(sums[j]) * (sa * sw[j]);
                   } else {
                     for (int j = 0; j < cols; ++j) {
                       ci[j] = static_cast<float>(sums[j]) * (sa * sw[j]) + beta * ci[j];
                     }
                   }
                 });
}

void Int8DotTile(Int8Kernel kernel, const uint8_t* qa, int ldqa, int row_begin, int row_end,
                 const PackedInt8Weight& w, int panel_begin, int panel_end, int32_t* out, int ldo) {
  ForEachTileRow(kernel, qa, ldqa, row_begin, row_end, w, panel_begin, panel_end,
                 [&](int i, int j0, const int32_t* sums, int cols) {
                   std::memcpy(out + static_cast<size_t>(i) * ldo + j0, sums, cols * sizeof(int32_t));
                 });
}

}  // namespace u2::cpu
