#include "u2/backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <new>

#include "u2/backend/cpu/int8_gemm.h"
#include "u2/backend/cpu/packed_gemm.h"
#include "u2/backend/cpu/thread_pool.h"

namespace u2 {
namespace cpu {

namespace {

// exp(x) for x in [-88, 88] (Cephes expf: range reduction by ln 2, degree-6 polynomial, ~1 ulp).
// Branch-free, and floor done as an int conversion (x·log2e + 127.5 > 0), so loops over it vectorise.
inline float ExpNoClamp(float x) {
  const float fx = static_cast<float>(static_cast<int32_t>(x * 1.44269504088896341f + 127.5f)) - 127.0f;
  float r = x - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(fx) + 127) << 23;
  return y * std::bit_cast<float>(e);
}

inline float Clamp88(float x) { return std::min(std::max(x, -88.0f), 88.0f); }

// x[j] = exp(x[j]). The clamp is its own loop: fused with the polynomial, GCC splits the loop on
// the clamp's branches and vectorises neither.
inline void ExpInPlace(float* x, int n) {
  for (int j = 0; j < n; ++j) x[j] = Clamp88(x[j]);
  for (int j = 0; j < n; ++j) x[j] = ExpNoClamp(x[j]);
}

inline float ExpInline(float x) { return ExpNoClamp(Clamp88(x)); }

constexpr int kBlock = 256;

// Applies `act` to a contiguous row; separate loops per activation so each vectorises.
inline void ActivateRow(float* y, int n, Activation act) {
  if (act == Activation::kRelu) {
    for (int j = 0; j < n; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
  } else if (act == Activation::kSilu) {
    float e[kBlock];
    for (int j0 = 0; j0 < n; j0 += kBlock) {
      const int len = std::min(kBlock, n - j0);
      float* yb = y + j0;
      for (int j = 0; j < len; ++j) e[j] = -yb[j];
      ExpInPlace(e, len);
      for (int j = 0; j < len; ++j) yb[j] = yb[j] / (1.0f + e[j]);
    }
  } else if (act == Activation::kGelu) {
    // GELU(x) = x·Φ(x) = x·(1 − ½·erfc(x/√2)) for x ≥ 0 and ½·x·erfc(|x|/√2) for x < 0, with
    // erfc(z) = t·P(t)·exp(−z²), t = 1/(1 + p·z) (Abramowitz & Stegun 7.1.26: |error| ≤ 1.5e-7
    // in erf). Branch-free and built on ExpInPlace, so each loop vectorises like the SiLU's.
    constexpr float kP = 0.3275911f, kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f,
                    kA4 = -1.453152027f, kA5 = 1.061405429f, kInvSqrt2 = 0.70710678118654752f;
    float e[kBlock];
    for (int j0 = 0; j0 < n; j0 += kBlock) {
      const int len = std::min(kBlock, n - j0);
      float* yb = y + j0;
      for (int j = 0; j < len; ++j) {
        const float z = std::fabs(yb[j]) * kInvSqrt2;
        e[j] = -z * z;
      }
      ExpInPlace(e, len);
      for (int j = 0; j < len; ++j) {
        const float x = yb[j];
        const float z = std::fabs(x) * kInvSqrt2;
        const float t = 1.0f / (1.0f + kP * z);
        const float half_erfc = 0.5f * t * (kA1 + t * (kA2 + t * (kA3 + t * (kA4 + t * kA5)))) * e[j];
        yb[j] = x >= 0.0f ? x - x * half_erfc : x * half_erfc;
      }
    }
  }
}

// out[j] = (a[j] + ba[j]) · sigmoid(g[j] + bg[j]); biases may be null.
inline void GluRow(const float* a, const float* g, const float* ba, const float* bg, int n, float* out) {
  float e[kBlock];
  for (int j0 = 0; j0 < n; j0 += kBlock) {
    const int len = std::min(kBlock, n - j0);
    if (bg) {
      for (int j = 0; j < len; ++j) e[j] = -(g[j0 + j] + bg[j0 + j]);
    } else {
      for (int j = 0; j < len; ++j) e[j] = -g[j0 + j];
    }
    ExpInPlace(e, len);
    if (ba) {
      for (int j = 0; j < len; ++j) out[j0 + j] = (a[j0 + j] + ba[j0 + j]) / (1.0f + e[j]);
    } else {
      for (int j = 0; j < len; ++j) out[j0 + j] = a[j0 + j] / (1.0f + e[j]);
    }
  }
}

// Sums with 8 independent accumulators: vectorises without -ffast-math and is more accurate than
// one running sum.
inline float SumRow(const float* x, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += x[j + l];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) s += x[j];
  return s;
}

inline float MaxRow(const float* x, int n) {
  float acc[8];
  for (int l = 0; l < 8; ++l) acc[l] = -INFINITY;
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) acc[l] = std::max(acc[l], x[j + l]);
  }
  float m = -INFINITY;
  for (int l = 0; l < 8; ++l) m = std::max(m, acc[l]);
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// In-place y = LN(y) over a contiguous row (two-pass variance, like PyTorch's).
inline void LayerNormRow(const float* x, int n, const LayerNormParams& p, float* y) {
  const float mean = SumRow(x, n) / static_cast<float>(n);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) {
      const float d = x[j + l] - mean;
      acc[l] += d * d;
    }
  }
  float var = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= static_cast<float>(n);
  const float rstd = 1.0f / std::sqrt(var + p.eps);
  const float* g = p.gamma;
  const float* b = p.beta;
  if (g && b) {
    for (int k = 0; k < n; ++k) y[k] = (x[k] - mean) * rstd * g[k] + b[k];
  } else {
    for (int k = 0; k < n; ++k) y[k] = (x[k] - mean) * rstd * (g ? g[k] : 1.0f) + (b ? b[k] : 0.0f);
  }
}

// log(Σ exp(x)) over a row, stable.
inline float LogSumExp(const float* x, int n, float* scratch) {
  const float m = MaxRow(x, n);
  if (!std::isfinite(m)) return m;
  for (int j = 0; j < n; ++j) scratch[j] = x[j] - m;
  ExpInPlace(scratch, n);
  return m + std::log(SumRow(scratch, n));
}

// Products smaller than this many multiply-adds run on the calling thread: waking the pool costs
// more than the second core saves.
constexpr int64_t kMinParallelMacs = int64_t{1} << 18;

// A weight packed for the AVX2/FMA micro-kernel (packed_gemm.h).
class CpuPreparedWeight final : public PreparedWeight {
 public:
  CpuPreparedWeight(const float* w, int n, int k) : PreparedWeight(w, n, k), packed_(w, n, k, k) {}
  const PackedWeight& packed() const { return packed_; }

 private:
  PackedWeight packed_;
};

// A weight quantized to int8 and packed for the int8 kernels (int8_gemm.h). It has no fp32 copy:
// weight() is null, and only this backend's GemmPrepared reads it.
class CpuInt8PreparedWeight final : public PreparedWeight {
 public:
  CpuInt8PreparedWeight(const int8_t* q, const float* scales, int n, int k)
      : PreparedWeight(nullptr, n, k), packed_(q, scales, n, k) {}
  const PackedInt8Weight& packed() const { return packed_; }

 private:
  PackedInt8Weight packed_;
};

// c[i, j0 .. j0+cols) = act((c + bias)·scale) for rows [r0, r1): a GEMM tile's epilogue, run
// while its block of C is still in cache.
void ApplyEpilogue(const GemmEpilogue& epilogue, float* c, int ldc, int r0, int r1, int j0, int cols) {
  if (epilogue.empty()) return;
  for (int i = r0; i < r1; ++i) {
    float* row = c + static_cast<size_t>(i) * ldc + j0;
    if (epilogue.bias) {
      const float* b = epilogue.bias + j0;
      for (int j = 0; j < cols; ++j) row[j] += b[j];
    }
    if (epilogue.scale != 1.0f) {
      for (int j = 0; j < cols; ++j) row[j] *= epilogue.scale;
    }
    ActivateRow(row, cols, epilogue.activation);
  }
}

// Rows per parallel chunk so that a chunk holds about `target` elements.
inline int64_t RowGrain(int n, int64_t target = 16384) {
  return std::max<int64_t>(1, target / std::max(n, 1));
}

// How a GEMM against a packed weight is cut into tiles for the pool: row blocks of at most
// m_block rows (equal sizes, multiples of row_multiple: the kernel's register tile) × panel
// ranges (multiples of panel_multiple), about four tiles per thread so the dynamic hand-out
// balances. tile(r0, r1, p0, p1) computes one; its block of C then gets the epilogue while it is
// still in L2 (bias, scale and activation now, not in another pass).
struct GemmTiling {
  int m_block = 1;
  int row_multiple = 1;
  int panel_multiple = 1;
};

template <typename Tile>
void RunGemmTiles(const ThreadPool& pool, int num_threads, int m, int n, int k, int panels, GemmTiling tiling,
                  float* c, int ldc, const GemmEpilogue& epilogue, Tile&& tile) {
  static_assert(PackedWeight::kPanelWidth == PackedInt8Weight::kPanelWidth);
  constexpr int kPanelWidth = PackedWeight::kPanelWidth;
  const int row_blocks = (m + tiling.m_block - 1) / tiling.m_block;
  const int rows_per_block = ((m + row_blocks - 1) / row_blocks + tiling.row_multiple - 1) /
                             tiling.row_multiple * tiling.row_multiple;
  int panel_chunks = 1;
  if (num_threads > 1 && static_cast<int64_t>(m) * n * k >= kMinParallelMacs) {
    panel_chunks = std::clamp((4 * num_threads + row_blocks - 1) / row_blocks, 1, panels);
  }
  const int pm = tiling.panel_multiple;
  const int panels_per_chunk = ((panels + panel_chunks - 1) / panel_chunks + pm - 1) / pm * pm;
  panel_chunks = (panels + panels_per_chunk - 1) / panels_per_chunk;
  pool.ParallelFor(static_cast<int64_t>(row_blocks) * panel_chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int r0 = static_cast<int>(t / panel_chunks) * rows_per_block;
      const int p0 = static_cast<int>(t % panel_chunks) * panels_per_chunk;
      if (r0 >= m) continue;
      const int r1 = std::min(m, r0 + rows_per_block);
      const int p1 = std::min(panels, p0 + panels_per_chunk);
      tile(r0, r1, p0, p1);
      const int j0 = p0 * kPanelWidth;
      ApplyEpilogue(epilogue, c, ldc, r0, r1, j0, std::min(n, p1 * kPanelWidth) - j0);
    }
  });
}

class CpuBackend final : public Backend {
 public:
  // OpenBLAS runs single-threaded on whichever pool thread calls it: all parallelism goes through
  // pool_, so OpenBLAS's spinning workers never compete with ours for the cores.
  CpuBackend(int num_threads, Precision precision)
      : pool_(num_threads),
        num_threads_(num_threads),
        precision_(precision),
        int8_kernel_(SelectedInt8Kernel()) {
    openblas_set_num_threads(1);
  }

  DeviceType device() const override { return DeviceType::kCpu; }
  std::string Name() const override {
    std::string gemm =
        precision_ == Precision::kInt8
            ? std::string("int8 ") + Int8KernelName(int8_kernel_) + " gemm + "
            : (PackedGemmSupported()
                   ? std::string("packed ") + PackedGemmKernelName(SelectedPackedGemmKernel()) + " gemm + "
                   : std::string());
    return "cpu(" + gemm + "openblas, " + std::to_string(num_threads_) + " threads)";
  }
  int num_threads() const override { return num_threads_; }

  void* Allocate(size_t bytes) const override {
    return ::operator new[](std::max<size_t>(bytes, 64), std::align_val_t(64));
  }
  void Free(void* p) const override { ::operator delete[](p, std::align_val_t(64)); }
  void CopyFromHost(void* dst, const void* src, size_t bytes) const override { std::memcpy(dst, src, bytes); }
  void CopyToHost(void* dst, const void* src, size_t bytes) const override { std::memcpy(dst, src, bytes); }
  void Copy(void* dst, const void* src, size_t bytes) const override { std::memmove(dst, src, bytes); }

  void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) const override {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
      for (int i = 0; i < m; ++i) {
        float* row = c + static_cast<size_t>(i) * ldc;
        for (int j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
      }
      return;
    }
    const int64_t macs = static_cast<int64_t>(m) * n * k;
    const int64_t grain = macs < kMinParallelMacs ? m : (m + num_threads_ - 1) / num_threads_;
    // One row slice per thread, each a single-threaded sgemm (op(A)'s rows are A's columns when
    // trans_a).
    pool_.ParallelFor(m, std::max<int64_t>(grain, 8), [&](int64_t r0, int64_t r1) {
      const float* a_rows = trans_a ? a + r0 : a + r0 * lda;
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                  static_cast<int>(r1 - r0), n, k, alpha, a_rows, lda, b, ldb, beta, c + r0 * ldc, ldc);
    });
  }

  std::shared_ptr<const PreparedWeight> PrepareWeight(const float* w, int n, int k,
                                                      WeightQuantization quantization) const override {
    if (n <= 0 || k <= 0) return Backend::PrepareWeight(w, n, k, quantization);
    if (precision_ == Precision::kInt8 && quantization == WeightQuantization::kAllowed) {
      std::vector<int8_t> q(static_cast<size_t>(n) * k);
      std::vector<float> scales(n);
      QuantizeRowsSymmetric(w, n, k, k, q.data(), scales.data());
      return std::make_shared<const CpuInt8PreparedWeight>(q.data(), scales.data(), n, k);
    }
    if (!PackedGemmSupported()) return Backend::PrepareWeight(w, n, k, quantization);
    return std::make_shared<const CpuPreparedWeight>(w, n, k);
  }

  std::shared_ptr<const PreparedWeight> PrepareInt8Weight(const int8_t* q, const float* scales, int n,
                                                          int k) const override {
    if (precision_ != Precision::kInt8 || n <= 0 || k <= 0) return nullptr;
    return std::make_shared<const CpuInt8PreparedWeight>(q, scales, n, k);
  }

  void GemmPrepared(int m, const float* a, int lda, const PreparedWeight& w, float beta, float* c, int ldc,
                    const GemmEpilogue& epilogue) const override;
  void GemmInt8(int m, const float* a, int lda, const PackedInt8Weight& w, float beta, float* c, int ldc,
                const GemmEpilogue& epilogue) const;

  void BiasActivation(float* y, int m, int n, int ldy, const float* bias, Activation act,
                      float scale) const override {
    pool_.ParallelFor(m, RowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        float* row = y + i * ldy;
        if (bias) {
          for (int j = 0; j < n; ++j) row[j] += bias[j];
        }
        if (scale != 1.0f) {
          for (int j = 0; j < n; ++j) row[j] *= scale;
        }
        ActivateRow(row, n, act);
      }
    });
  }

  void BiasGlu(const float* x, int m, int n, int ldx, const float* bias, float* y, int ldy) const override {
    pool_.ParallelFor(m, RowGrain(2 * n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float* a = x + i * ldx;
        const float* g = a + n;
        float* out = y + i * ldy;
        GluRow(a, g, bias, bias ? bias + n : nullptr, n, out);
      }
    });
  }

  void Multiply(const float* a, int lda, const float* b, int ldb, int m, int n, float* y,
                int ldy) const override {
    pool_.ParallelFor(m, RowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float* ar = a + i * lda;
        const float* br = b + i * ldb;
        float* yr = y + i * ldy;
        for (int j = 0; j < n; ++j) yr[j] = ar[j] * br[j];
      }
    });
  }

  void AveragePoolRows(const float* x, int n, std::span<const RowSegment> segs, std::span<const int> out_rows,
                       int window, float* y) const override {
    for (size_t k = 0; k < segs.size() && k < out_rows.size(); ++k) {
      const RowSegment& s = segs[k];
      const int outs = (s.len + window - 1) / window;
      pool_.ParallelFor(outs, RowGrain(n * window), [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          const int first = static_cast<int>(j) * window;
          const int count = std::min(window, s.len - first);
          float* out = y + (static_cast<size_t>(out_rows[k]) + j) * n;
          std::copy_n(x + (static_cast<size_t>(s.row) + first) * n, n, out);
          for (int r = 1; r < count; ++r) {
            const float* in = x + (static_cast<size_t>(s.row) + first + r) * n;
            for (int c = 0; c < n; ++c) out[c] += in[c];
          }
          // Divided like PyTorch: the sum over the window, then / count.
          const float inv_count = static_cast<float>(count);
          for (int c = 0; c < n; ++c) out[c] /= inv_count;
        }
      });
    }
  }

  void LayerNorm(const float* x, int m, int n, int ldx, const LayerNormParams& norm, float* y,
                 int ldy) const override {
    pool_.ParallelFor(m, RowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) LayerNormRow(x + i * ldx, n, norm, y + i * ldy);
    });
  }

  void AddResidual(float* x, const float* delta, int ld_delta, const float* bias, float alpha, int m, int n,
                   const LayerNormParams* norm, float* y) const override {
    pool_.ParallelFor(m, RowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        float* xr = x + i * n;
        const float* dr = delta + i * ld_delta;
        if (bias) {
          for (int j = 0; j < n; ++j) xr[j] += alpha * (dr[j] + bias[j]);
        } else {
          for (int j = 0; j < n; ++j) xr[j] += alpha * dr[j];
        }
        if (norm) LayerNormRow(xr, n, *norm, y + i * n);
      }
    });
  }

  void Cmvn(const float* x, int m, int n, const float* mean, const float* istd, float* y) const override {
    pool_.ParallelFor(m, RowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0; i < r1; ++i) {
        const float* xr = x + i * n;
        float* yr = y + i * n;
        for (int j = 0; j < n; ++j) yr[j] = (xr[j] - mean[j]) * istd[j];
      }
    });
  }

  void AddPositional(float* x, int n, std::span<const RowSegment> segs, const float* table,
                     int pos_offset) const override {
    for (const RowSegment& s : segs) {
      for (int t = 0; t < s.len; ++t) {
        float* xr = x + static_cast<size_t>(s.row + t) * n;
        const float* pr = table + static_cast<size_t>(pos_offset + t) * n;
        for (int j = 0; j < n; ++j) xr[j] += pr[j];
      }
    }
  }

  void EmbedTokens(const float* table, int n, std::span<const int> ids, std::span<const RowSegment> segs,
                   float scale, const float* pos_table, float* y) const override {
    for (const RowSegment& s : segs) {
      for (int t = 0; t < s.len; ++t) {
        const int r = s.row + t;
        const float* er = table + static_cast<size_t>(ids[r]) * n;
        const float* pr = pos_table + static_cast<size_t>(s.pos + t) * n;
        float* yr = y + static_cast<size_t>(r) * n;
        for (int j = 0; j < n; ++j) yr[j] = er[j] * scale + pr[j];
      }
    }
  }

  void Attention(const AttentionParams& p, std::span<const AttentionSegment> segs,
                 Workspace& ws) const override;
  void DepthwiseConv(const DepthwiseConvParams& p, const float* x, std::span<const DepthwiseSegment> segs,
                     float* y) const override;
  // rel_shift: adds scale·(shifted positional term) to a block of a head's scores (AttentionParams).
  void AddShiftedPositionScores(const AttentionParams& p, const AttentionSegment& s, int h, int q_begin,
                                int q_count, float scale, float* scores) const;
  void Conv2d(const Conv2dParams& p, const float* x, int h_in, int w_in, float* y,
              Workspace& ws) const override;

  void LogSoftmax(float* x, int m, int n, int ld) const override {
    pool_.ParallelFor(m, RowGrain(n, 4096), [&](int64_t r0, int64_t r1) {
      std::vector<float> scratch(n);
      for (int64_t i = r0; i < r1; ++i) {
        float* row = x + i * ld;
        const float lse = LogSumExp(row, n, scratch.data());
        for (int j = 0; j < n; ++j) row[j] -= lse;
      }
    });
  }

  void TokenLogProbs(const float* logits, int m, int n, int ld, std::span<const int> rows,
                     std::span<const int> targets, float* out) const override {
    // The normaliser once per row, however many targets read it.
    std::vector<float> lse(std::max(m, 0));
    pool_.ParallelFor(m, RowGrain(n, 4096), [&](int64_t r0, int64_t r1) {
      std::vector<float> scratch(n);
      for (int64_t i = r0; i < r1; ++i) lse[i] = LogSumExp(logits + i * ld, n, scratch.data());
    });
    for (size_t i = 0; i < targets.size(); ++i) {
      const int r = i < rows.size() ? rows[i] : -1;
      const int t = targets[i];
      out[i] = (r < 0 || r >= m || t < 0 || t >= n) ? std::nanf("")
                                                    : logits[static_cast<size_t>(r) * ld + t] - lse[r];
    }
  }

 private:
  ThreadPool pool_;
  int num_threads_;
  Precision precision_;
  Int8Kernel int8_kernel_;
};

// Visible key range [lo, hi) of query i of a segment.
inline void KeyRange(const AttentionParams& p, const AttentionSegment& s, int i, int* lo, int* hi) {
  *lo = 0;
  *hi = s.kv_len;
  const int qpos = s.q_pos + i;
  if (p.mask == AttentionMask::kCausal) {
    *hi = std::min(s.kv_len, qpos - s.k_pos + 1);
  } else if (p.mask == AttentionMask::kChunk && p.chunk_size > 0) {
    // In mask positions (frames × mask_stride): the chunk of the query, then the first and one
    // past the last visible key frame, rounded up to whole frames.
    const int stride = std::max(p.mask_stride, 1);
    const int chunk = qpos * stride / p.chunk_size;
    const int start = p.left_chunks < 0 ? 0 : std::max((chunk - p.left_chunks) * p.chunk_size, 0);
    const int end = (chunk + 1) * p.chunk_size;
    *lo = std::max(0, (start + stride - 1) / stride - s.k_pos);
    *hi = std::min(s.kv_len, (end + stride - 1) / stride - s.k_pos);
  }
  *hi = std::max(*hi, *lo);
}

void CpuBackend::GemmPrepared(int m, const float* a, int lda, const PreparedWeight& w, float beta, float* c,
                              int ldc, const GemmEpilogue& epilogue) const {
  if (const auto* iw = dynamic_cast<const CpuInt8PreparedWeight*>(&w)) {
    if (m > 0) GemmInt8(m, a, lda, iw->packed(), beta, c, ldc, epilogue);
    return;
  }
  const auto* cw = dynamic_cast<const CpuPreparedWeight*>(&w);
  if (cw == nullptr) {  // not packed (no AVX2/FMA, or an empty matrix)
    Backend::GemmPrepared(m, a, lda, w, beta, c, ldc, epilogue);
    return;
  }
  if (m <= 0) return;
  const PackedWeight& pw = cw->packed();
  RunGemmTiles(
      pool_, num_threads_, m, pw.n(), pw.k(), pw.num_panels(), {kPackedGemmMBlock, 6, 1}, c, ldc, epilogue,
      [&](int r0, int r1, int p0, int p1) { PackedGemmTile(a, lda, r0, r1, pw, p0, p1, beta, c, ldc); });
}

void CpuBackend::GemmInt8(int m, const float* a, int lda, const PackedInt8Weight& w, float beta, float* c,
                          int ldc, const GemmEpilogue& epilogue) const {
  const int k = w.k();
  const int ldq = w.k_padded();
  // The rows of A, quantized once per call (per row: its own scale) and read by every tile. The
  // buffers belong to the calling thread; the pool's workers only read them during this call.
  thread_local std::vector<uint8_t> quantized;
  thread_local std::vector<float> row_scales;
  // Grown, never shrunk: resize() would zero-fill the regrown part on every larger call.
  if (quantized.size() < static_cast<size_t>(m) * ldq) quantized.resize(static_cast<size_t>(m) * ldq);
  if (row_scales.size() < static_cast<size_t>(m)) row_scales.resize(m);
  // Plain pointers for the workers: inside their lambdas the thread_local names would be theirs.
  uint8_t* const qa = quantized.data();
  float* const sa = row_scales.data();
  const int64_t macs = static_cast<int64_t>(m) * w.n() * k;
  const bool parallel = num_threads_ > 1 && macs >= kMinParallelMacs;
  pool_.ParallelFor(m, parallel ? RowGrain(k, 32768) : m, [&](int64_t r0, int64_t r1) {
    QuantizeActivationRows(int8_kernel_, a, lda, static_cast<int>(r0), static_cast<int>(r1), k, ldq, qa, ldq,
                           sa);
  });
  // Panel ranges in pairs: the AVX-512 kernel's tile is 8 rows × two panels.
  RunGemmTiles(pool_, num_threads_, m, w.n(), k, w.num_panels(), {kInt8GemmMBlock, 8, 2}, c, ldc, epilogue,
               [&](int r0, int r1, int p0, int p1) {
                 Int8GemmTile(int8_kernel_, qa, ldq, sa, r0, r1, w, p0, p1, beta, c, ldc);
               });
}

void CpuBackend::Attention(const AttentionParams& p, std::span<const AttentionSegment> segs,
                           Workspace& ws) const {
  const int H = p.num_heads;
  const int dk = p.head_dim;
  const int D = H * dk;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  const bool rel = p.pos != nullptr || p.pos_bias_u != nullptr;
  // With rel_shift the positional term is not (q_i + v)·p_j: keys stay k (plus u·k) and the
  // positional scores are computed per task below, then shifted.
  const bool shift = p.rel_shift && p.pos != nullptr;

  // Rel-pos: (q+u)·k + (q+v)·p = q·(k+p) + (u·k + v·p), so each head needs one score GEMM against
  // k+p plus a per-key bias. Both are computed here for every segment's keys.
  std::vector<size_t> key_offset(segs.size() + 1, 0);
  for (size_t i = 0; i < segs.size(); ++i) key_offset[i + 1] = key_offset[i] + std::max(segs[i].kv_len, 0);
  float* kp_all = nullptr;
  float* key_bias_all = nullptr;  // (H, kv_len) per segment
  if (rel && key_offset.back() > 0) {
    kp_all = ws.Floats(Workspace::kBackendSlotBase + 1, key_offset.back() * D);
    key_bias_all = ws.Floats(Workspace::kBackendSlotBase + 2, key_offset.back() * H);
    for (size_t si = 0; si < segs.size(); ++si) {
      const AttentionSegment& s = segs[si];
      if (s.q_len <= 0 || s.kv_len <= 0) continue;
      const float* k0 = p.k + static_cast<size_t>(s.kv_row) * p.ldk;
      const float* p0 = p.pos && !shift ? p.pos + static_cast<size_t>(s.pos_row) * p.ldp : nullptr;
      float* kp = kp_all + key_offset[si] * D;
      float* key_bias = key_bias_all + key_offset[si] * H;
      pool_.ParallelFor(s.kv_len, RowGrain(D, 8192), [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          const float* kr = k0 + j * p.ldk;
          const float* pr = p0 ? p0 + j * p.ldp : nullptr;
          float* kpr = kp + j * D;
          for (int c = 0; c < D; ++c) kpr[c] = kr[c] + (pr ? pr[c] : 0.0f);
          for (int h = 0; h < H; ++h) {
            float b = 0.0f;
            if (p.pos_bias_u) {
              const float* u = p.pos_bias_u + h * dk;
              for (int c = 0; c < dk; ++c) b += u[c] * kr[h * dk + c];
            }
            if (p.pos_bias_v && pr) {
              const float* vb = p.pos_bias_v + h * dk;
              for (int c = 0; c < dk; ++c) b += vb[c] * pr[h * dk + c];
            }
            key_bias[h * s.kv_len + j] = b * scale;
          }
        }
      });
    }
  }

  // Tasks: (segment, head, block of queries), all independent; each writes its own rows × head
  // columns of `out` and runs single-threaded sgemms on the pool thread that takes it.
  struct Task {
    int seg;
    int head;
    int q_begin;
    int q_count;
  };
  std::vector<Task> tasks;
  // Blocks of up to 64 queries: a block's scores (64 × kv_len) stay in L2.
  for (size_t si = 0; si < segs.size(); ++si) {
    const AttentionSegment& s = segs[si];
    if (s.q_len <= 0) continue;
    float* out0 = p.out + static_cast<size_t>(s.q_row) * p.ldo;
    if (s.kv_len <= 0) {
      for (int i = 0; i < s.q_len; ++i) std::fill_n(out0 + static_cast<size_t>(i) * p.ldo, D, 0.0f);
      continue;
    }
    const int block = std::max(8, std::min(64, s.q_len));
    for (int i0 = 0; i0 < s.q_len; i0 += block) {
      for (int h = 0; h < H; ++h)
        tasks.push_back({static_cast<int>(si), h, i0, std::min(block, s.q_len - i0)});
    }
  }
  pool_.ParallelFor(static_cast<int64_t>(tasks.size()), 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scores_buffer;  // grows to the largest block, then reused
    for (int64_t t = t0; t < t1; ++t) {
      const Task& task = tasks[t];
      const AttentionSegment& s = segs[task.seg];
      const int h = task.head;
      const float* keys =
          rel ? kp_all + key_offset[task.seg] * D : p.k + static_cast<size_t>(s.kv_row) * p.ldk;
      const int ldkeys = rel ? D : p.ldk;
      const float* kb =
          rel ? key_bias_all + key_offset[task.seg] * H + static_cast<size_t>(h) * s.kv_len : nullptr;
      const float* v0 = p.v + static_cast<size_t>(s.kv_row) * p.ldv;
      const float* q = p.q + static_cast<size_t>(s.q_row + task.q_begin) * p.ldq + h * dk;
      float* out = p.out + static_cast<size_t>(s.q_row + task.q_begin) * p.ldo + h * dk;
      const size_t need = static_cast<size_t>(task.q_count) * s.kv_len;
      if (scores_buffer.size() < need) scores_buffer.resize(need);
      float* scores = scores_buffer.data();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, task.q_count, s.kv_len, dk, scale, q, p.ldq,
                  keys + h * dk, ldkeys, 0.0f, scores, s.kv_len);
      if (shift) AddShiftedPositionScores(p, s, h, task.q_begin, task.q_count, scale, scores);
      for (int i = 0; i < task.q_count; ++i) {
        float* row = scores + static_cast<size_t>(i) * s.kv_len;
        int lo, hi;
        KeyRange(p, s, task.q_begin + i, &lo, &hi);
        std::fill(row, row + lo, 0.0f);
        std::fill(row + hi, row + s.kv_len, 0.0f);
        if (hi <= lo) continue;  // nothing visible: all-zero probabilities
        float* r = row + lo;
        const int n = hi - lo;
        if (kb) {
          const float* b = kb + lo;
          for (int j = 0; j < n; ++j) r[j] += b[j];
        }
        const float mx = MaxRow(r, n);
        for (int j = 0; j < n; ++j) r[j] -= mx;
        ExpInPlace(r, n);
        const float inv = 1.0f / SumRow(r, n);
        for (int j = 0; j < n; ++j) r[j] *= inv;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, task.q_count, dk, s.kv_len, 1.0f, scores,
                  s.kv_len, v0 + h * dk, p.ldv, 0.0f, out, p.ldo);
    }
  });
}

void CpuBackend::AddShiftedPositionScores(const AttentionParams& p, const AttentionSegment& s, int h,
                                          int q_begin, int q_count, float scale, float* scores) const {
  // Rows r of bd needed by queries [q_begin, q_begin + q_count): r = f / (T2 + 1) is i or i + 1.
  const int T1 = s.q_len, T2 = s.kv_len, dk = p.head_dim;
  const int r0 = q_begin, r1 = std::min(q_begin + q_count + 1, T1);
  thread_local std::vector<float> bd_buffer, vp_buffer;
  bd_buffer.resize(static_cast<size_t>(r1 - r0) * T2);
  vp_buffer.resize(T2);
  const float* q = p.q + static_cast<size_t>(s.q_row + r0) * p.ldq + h * dk;
  const float* pos = p.pos + static_cast<size_t>(s.pos_row) * p.ldp + h * dk;
  // bd[r][c] = (q_r + v_h)·p_c = q_r·p_c + v_h·p_c.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, T2, dk, 1.0f, q, p.ldq, pos, p.ldp, 0.0f,
              bd_buffer.data(), T2);
  const float* vb = p.pos_bias_v ? p.pos_bias_v + h * dk : nullptr;
  for (int c = 0; c < T2; ++c) {
    float acc = 0.0f;
    if (vb) {
      const float* pc = pos + static_cast<size_t>(c) * p.ldp;
      for (int d = 0; d < dk; ++d) acc += vb[d] * pc[d];
    }
    vp_buffer[c] = acc;
  }
  for (int i = 0; i < q_count; ++i) {
    float* row = scores + static_cast<size_t>(i) * T2;
    const int64_t qi = q_begin + i;
    for (int j = 0; j < T2; ++j) {
      const int64_t f = T1 + qi * T2 + j;
      const int64_t r = f / (T2 + 1), c = f % (T2 + 1);
      if (c == 0) continue;
      row[j] += scale * (bd_buffer[static_cast<size_t>(r - r0) * T2 + (c - 1)] + vp_buffer[c - 1]);
    }
  }
}

void CpuBackend::DepthwiseConv(const DepthwiseConvParams& p, const float* x,
                               std::span<const DepthwiseSegment> segs, float* y) const {
  const int C = p.channels;
  const int K = p.kernel;
  for (const DepthwiseSegment& s : segs) {
    pool_.ParallelFor(s.len, RowGrain(C * K, 16384), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* out = y + static_cast<size_t>(s.row + t) * C;
        if (p.bias) {
          std::copy_n(p.bias, C, out);
        } else {
          std::fill_n(out, C, 0.0f);
        }
        for (int k = 0; k < K; ++k) {
          const int64_t src = t - p.left_pad + k;
          const float* in;
          if (src < 0) {
            if (s.history) {
              in = s.history + static_cast<size_t>(p.left_pad + src) * C;
            } else if (p.pad_value) {
              in = p.pad_value;
            } else {
              continue;
            }
          } else if (src >= s.len) {
            continue;
          } else {
            in = x + static_cast<size_t>(s.row + src) * C;
          }
          const float* w = p.weight + static_cast<size_t>(k) * C;
          for (int c = 0; c < C; ++c) out[c] += w[c] * in[c];
        }
        if (p.norm) LayerNormRow(out, C, *p.norm, out);
        ActivateRow(out, C, p.activation);
      }
    });
  }
}

void CpuBackend::Conv2d(const Conv2dParams& p, const float* x, int h_in, int w_in, float* y,
                        Workspace& ws) const {
  const int kk = p.kernel;
  const int h_out = h_in < kk ? 0 : (h_in - kk) / p.stride + 1;
  const int w_out = w_in < kk ? 0 : (w_in - kk) / p.stride + 1;
  if (h_out <= 0 || w_out <= 0) return;
  const int cin = p.in_channels;
  const int K = kk * kk * cin;
  // im2col in blocks of output rows so the column buffer stays ~4 MB whatever the length.
  const int64_t row_floats = static_cast<int64_t>(w_out) * K;
  const int block = static_cast<int>(std::clamp<int64_t>((int64_t{1} << 20) / row_floats, 1, h_out));
  float* col = ws.Floats(Workspace::kBackendSlotBase + 0, static_cast<size_t>(block) * row_floats);
  for (int t0 = 0; t0 < h_out; t0 += block) {
    const int nt = std::min(block, h_out - t0);
    pool_.ParallelFor(nt, 1, [&](int64_t a, int64_t b) {
      for (int64_t dt = a; dt < b; ++dt) {
        const int t = t0 + static_cast<int>(dt);
        for (int f = 0; f < w_out; ++f) {
          float* dst = col + (dt * w_out + f) * K;
          for (int ki = 0; ki < kk; ++ki) {
            const float* src = x + (static_cast<size_t>(t * p.stride + ki) * w_in + f * p.stride) * cin;
            std::memcpy(dst, src, sizeof(float) * kk * cin);  // kk frequency taps × all channels
            dst += kk * cin;
          }
        }
      }
    });
    float* yb = y + static_cast<size_t>(t0) * w_out * p.out_channels;
    if (p.prepared_weight) {
      GemmPrepared(nt * w_out, col, K, *p.prepared_weight, 0.0f, yb, p.out_channels, {p.bias, p.activation});
    } else {
      Gemm(false, true, nt * w_out, p.out_channels, K, 1.0f, col, K, p.weight, K, 0.0f, yb, p.out_channels);
      BiasActivation(yb, nt * w_out, p.out_channels, p.out_channels, p.bias, p.activation, 1.0f);
    }
  }
}

}  // namespace

float FastExp(float x) { return ExpInline(x); }

std::string OpenBlasCoreWarning() {
  const std::string core = openblas_get_corename();
  if (core != "Prescott" && core != "Core2" && core != "Nehalem" && core != "Penryn" &&
      core != "Dunnington") {
    return "";
  }
  __builtin_cpu_init();
  const char* better = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                         : nullptr;
  if (better == nullptr) return "";
  return "OpenBLAS chose its " + core + " kernels on a CPU with " + (better[0] == 'S' ? "AVX-512" : "AVX2") +
         " (this OpenBLAS does not know the CPU model): its sgemm, which runs the attention products, is "
         "about 4x slower than it could be. Set "
         "OPENBLAS_CORETYPE=" +
         better + " in the environment.";
}

}  // namespace cpu

std::unique_ptr<Backend> CreateCpuBackend(int num_threads, Precision precision) {
  return std::make_unique<cpu::CpuBackend>(num_threads, precision);
}

}  // namespace u2
