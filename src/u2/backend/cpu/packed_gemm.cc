#include "u2/backend/cpu/packed_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace u2::cpu {
namespace {

constexpr int kNr = PackedWeight::kPanelWidth;
constexpr int kMr = 6;  // rows per register tile: 6 × 2 accumulators + 2 B vectors + 1 broadcast ≤ 16 ymm

// How a tile's result meets C: the first K block overwrites (β = 0) or scales C, later blocks add.
enum class Store { kOverwrite, kScaleAdd, kAdd };

// Writes a tile row (16 accumulated values, `cols` of them valid) into C.
inline void StoreRow(const float* acc, float* c, int cols, Store mode, float beta) {
  switch (mode) {
    case Store::kOverwrite:
      for (int j = 0; j < cols; ++j) c[j] = acc[j];
      break;
    case Store::kScaleAdd:
      for (int j = 0; j < cols; ++j) c[j] = beta * c[j] + acc[j];
      break;
    case Store::kAdd:
      for (int j = 0; j < cols; ++j) c[j] += acc[j];
      break;
  }
}

// The MR × 16 tile over kc values of k: a points at A[row, k0] (leading dimension lda), b at the
// panel's k0-th 16-float group. Accumulates in registers, touches C once.
template <int MR>
__attribute__((target("avx2,fma"))) void KernelAvx2(int kc, const float* a, int lda, const float* b, float* c,
                                                    int ldc, int cols, Store mode, float beta) {
  const float* ar[MR];
  for (int r = 0; r < MR; ++r) ar[r] = a + static_cast<size_t>(r) * lda;
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    c0[r] = _mm256_setzero_ps();
    c1[r] = _mm256_setzero_ps();
  }
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    b += kNr;
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 x = _mm256_broadcast_ss(ar[r] + k);
      c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
    }
  }
  if (cols == kNr) {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      float* cr = c + static_cast<size_t>(r) * ldc;
      __m256 lo = c0[r], hi = c1[r];
      if (mode == Store::kAdd) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
      } else if (mode == Store::kScaleAdd) {
        lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), lo);
        hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), hi);
      }
      _mm256_storeu_ps(cr, lo);
      _mm256_storeu_ps(cr + 8, hi);
    }
    return;
  }
  // Constant indices only (unrolled), so the accumulators stay in registers in the loop above.
  alignas(32) float tile[MR][kNr];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile[r], c0[r]);
    _mm256_store_ps(tile[r] + 8, c1[r]);
  }
  for (int r = 0; r < MR; ++r) StoreRow(tile[r], c + static_cast<size_t>(r) * ldc, cols, mode, beta);
}

// The MR × 16 tile with one zmm accumulator a row (MR ≤ 12: 12 accumulators, one B vector and the
// broadcasts fit the 32 zmm registers). Same products in the same order as KernelAvx2.
template <int MR>
__attribute__((target("avx512f"))) void KernelAvx512(int kc, const float* a, int lda, const float* b,
                                                     float* c, int ldc, int cols, Store mode, float beta) {
  const float* ar[MR];
  for (int r = 0; r < MR; ++r) ar[r] = a + static_cast<size_t>(r) * lda;
  __m512 acc[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m512 bv = _mm512_load_ps(b);
    b += kNr;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ar[r][k]), bv, acc[r]);
  }
  if (cols == kNr) {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      float* cr = c + static_cast<size_t>(r) * ldc;
      __m512 v = acc[r];
      if (mode == Store::kAdd) {
        v = _mm512_add_ps(v, _mm512_loadu_ps(cr));
      } else if (mode == Store::kScaleAdd) {
        v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), v);
      }
      _mm512_storeu_ps(cr, v);
    }
    return;
  }
  alignas(64) float tile[MR][kNr];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) _mm512_store_ps(tile[r], acc[r]);
  for (int r = 0; r < MR; ++r) StoreRow(tile[r], c + static_cast<size_t>(r) * ldc, cols, mode, beta);
}

// Portable tile (CPUs without AVX2/FMA; the backend does not pack for them, tests still may).
void KernelPortable(int mr, int kc, const float* a, int lda, const float* b, float* c, int ldc, int cols,
                    Store mode, float beta) {
  for (int r = 0; r < mr; ++r) {
    float acc[kNr] = {};
    const float* ar = a + static_cast<size_t>(r) * lda;
    for (int k = 0; k < kc; ++k) {
      for (int j = 0; j < kNr; ++j) acc[j] += ar[k] * b[k * kNr + j];
    }
    StoreRow(acc, c + static_cast<size_t>(r) * ldc, cols, mode, beta);
  }
}

using KernelFn = void (*)(int, const float*, int, const float*, float*, int, int, Store, float);
constexpr KernelFn kAvx2Kernels[kMr + 1] = {nullptr,       KernelAvx2<1>, KernelAvx2<2>, KernelAvx2<3>,
                                            KernelAvx2<4>, KernelAvx2<5>, KernelAvx2<6>};
constexpr int kMr512 = 12;
constexpr KernelFn kAvx512Kernels[kMr512 + 1] = {
    nullptr,          KernelAvx512<1>,  KernelAvx512<2>, KernelAvx512<3>, KernelAvx512<4>,
    KernelAvx512<5>,  KernelAvx512<6>,  KernelAvx512<7>, KernelAvx512<8>, KernelAvx512<9>,
    KernelAvx512<10>, KernelAvx512<11>, KernelAvx512<12>};

}  // namespace

const char* PackedGemmKernelName(PackedGemmKernel k) {
  switch (k) {
    case PackedGemmKernel::kPortable:
      return "portable";
    case PackedGemmKernel::kAvx2:
      return "avx2";
    case PackedGemmKernel::kAvx512:
      return "avx512";
  }
  return "?";
}

bool PackedGemmKernelSupported(PackedGemmKernel k) {
  __builtin_cpu_init();
  switch (k) {
    case PackedGemmKernel::kPortable:
      return true;
    case PackedGemmKernel::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PackedGemmKernel::kAvx512:
      return __builtin_cpu_supports("avx512f");
  }
  return false;
}

PackedGemmKernel SelectedPackedGemmKernel() {
  static const PackedGemmKernel selected = [] {
    if (const char* name = std::getenv("U2_CPU_FP32_KERNEL")) {
      for (PackedGemmKernel k :
           {PackedGemmKernel::kPortable, PackedGemmKernel::kAvx2, PackedGemmKernel::kAvx512}) {
        if (std::strcmp(name, PackedGemmKernelName(k)) == 0 && PackedGemmKernelSupported(k)) return k;
      }
    }
    for (PackedGemmKernel k : {PackedGemmKernel::kAvx512, PackedGemmKernel::kAvx2}) {
      if (PackedGemmKernelSupported(k)) return k;
    }
    return PackedGemmKernel::kPortable;
  }();
  return selected;
}

bool PackedGemmSupported() { return SelectedPackedGemmKernel() != PackedGemmKernel::kPortable; }

void PackedWeight::AlignedDelete::operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }

PackedWeight::PackedWeight(const float* w, int n, int k, int ldw) : n_(std::max(n, 0)), k_(std::max(k, 0)) {
  const size_t floats = std::max<size_t>(bytes() / sizeof(float), 16);
  data_.reset(static_cast<float*>(::operator new[](floats * sizeof(float), std::align_val_t(64))));
  for (int p = 0; p < num_panels(); ++p) {
    float* dst = data_.get() + static_cast<size_t>(p) * k_ * kNr;
    const int cols = std::min(kNr, n_ - p * kNr);
    for (int kk = 0; kk < k_; ++kk) {
      float* d = dst + static_cast<size_t>(kk) * kNr;
      for (int j = 0; j < cols; ++j) d[j] = w[static_cast<size_t>(p * kNr + j) * ldw + kk];
      for (int j = cols; j < kNr; ++j) d[j] = 0.0f;
    }
  }
}

void PackedGemmTile(const float* a, int lda, int row_begin, int row_end, const PackedWeight& w,
                    int panel_begin, int panel_end, float beta, float* c, int ldc) {
  PackedGemmTile(SelectedPackedGemmKernel(), a, lda, row_begin, row_end, w, panel_begin, panel_end, beta, c,
                 ldc);
}

void PackedGemmTile(PackedGemmKernel kernel, const float* a, int lda, int row_begin, int row_end,
                    const PackedWeight& w, int panel_begin, int panel_end, float beta, float* c, int ldc) {
  const int K = w.k();
  if (K == 0) {
    for (int i = row_begin; i < row_end; ++i) {
      for (int p = panel_begin; p < panel_end; ++p) {
        const int cols = std::min(kNr, w.n() - p * kNr);
        float* cr = c + static_cast<size_t>(i) * ldc + p * kNr;
        for (int j = 0; j < cols; ++j) cr[j] = beta == 0.0f ? 0.0f : beta * cr[j];
      }
    }
    return;
  }
  const int tile_rows = kernel == PackedGemmKernel::kAvx512 ? kMr512 : kMr;
  // Loop order: row block (its A block, ≤ kPackedGemmMBlock × K-block floats, stays in L2) → K block
  // → panel (its K-block slice stays in L1) → register tiles of rows.
  for (int m0 = row_begin; m0 < row_end; m0 += kPackedGemmMBlock) {
    const int m1 = std::min(row_end, m0 + kPackedGemmMBlock);
    for (int k0 = 0; k0 < K; k0 += kPackedGemmKBlock) {
      const int kc = std::min(kPackedGemmKBlock, K - k0);
      const Store mode = k0 > 0 ? Store::kAdd : (beta == 0.0f ? Store::kOverwrite : Store::kScaleAdd);
      for (int p = panel_begin; p < panel_end; ++p) {
        const float* b = w.panel(p) + static_cast<size_t>(k0) * kNr;
        const int cols = std::min(kNr, w.n() - p * kNr);
        for (int i = m0; i < m1; i += tile_rows) {
          const int mr = std::min(tile_rows, m1 - i);
          const float* ai = a + static_cast<size_t>(i) * lda + k0;
          float* ci = c + static_cast<size_t>(i) * ldc + p * kNr;
          switch (kernel) {
            case PackedGemmKernel::kAvx512:
              kAvx512Kernels[mr](kc, ai, lda, b, ci, ldc, cols, mode, beta);
              break;
            case PackedGemmKernel::kAvx2:
              kAvx2Kernels[mr](kc, ai, lda, b, ci, ldc, cols, mode, beta);
              break;
            case PackedGemmKernel::kPortable:
              KernelPortable(mr, kc, ai, lda, b, ci, ldc, cols, mode, beta);
              break;
          }
        }
      }
    }
  }
}

}  // namespace u2::cpu
