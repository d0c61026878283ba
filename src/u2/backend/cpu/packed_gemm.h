// A GEMM against a weight matrix packed once at model load: C = A·Wᵀ (+ β·C), W (n × k, "out × in").
//
// Why not cblas_sgemm: OpenBLAS packs both operands on every call, and for the model's shapes
// (a few hundred rows of activations against a 0.25–9 MB weight) re-packing the weight costs as
// much as a sixth of the product. Here W is packed once into 16-column panels laid out for the
// micro-kernels (AVX2/FMA: a 6 × 16 register tile; AVX-512: a 12 × 16 tile, one zmm a row, twice
// the multiply-adds per instruction on the same panels), and A is read in place (its rows are short
// and contiguous, so the tile's row streams need no copy). Both kernels sum every element's
// products in the same order with one FMA each, so they give bit-identical results. The kernel is
// chosen once at run time (U2_CPU_FP32_KERNEL=avx512|avx2|portable overrides). The caller splits the product
// into tiles (row blocks × panel ranges) and runs them on its own thread pool: one pool for all parallelism,
// no BLAS threads.
#pragma once

#include <cstddef>
#include <memory>

namespace u2::cpu {

enum class PackedGemmKernel { kPortable, kAvx2, kAvx512 };
const char* PackedGemmKernelName(PackedGemmKernel k);  // "portable" | "avx2" | "avx512"
bool PackedGemmKernelSupported(PackedGemmKernel k);    // this CPU can run it
// The kernel in use: the best this CPU runs, or U2_CPU_FP32_KERNEL's when it can run that one.
PackedGemmKernel SelectedPackedGemmKernel();
// Whether this CPU runs a vector kernel (AVX2/FMA or better). Without it, callers use cblas_sgemm.
bool PackedGemmSupported();

class PackedWeight {
 public:
  static constexpr int kPanelWidth = 16;  // columns of C (rows of W) per panel

  // Packs W (n × k, leading dimension ldw): panel p holds rows [16p, 16p + 16) of W transposed,
  // k × 16 floats, zero-padded past n.
  PackedWeight(const float* w, int n, int k, int ldw);

  int n() const { return n_; }
  int k() const { return k_; }
  int num_panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }
  const float* panel(int p) const { return data_.get() + static_cast<size_t>(p) * k_ * kPanelWidth; }
  size_t bytes() const { return static_cast<size_t>(num_panels()) * k_ * kPanelWidth * sizeof(float); }

 private:
  struct AlignedDelete {
    void operator()(float* p) const;
  };
  int n_ = 0;
  int k_ = 0;
  std::unique_ptr<float[], AlignedDelete> data_;
};

// The K block the kernel runs over before touching C: k_block × 16 floats of a panel (16 KB)
// stay in L1 while the tile sweeps the rows of A.
constexpr int kPackedGemmKBlock = 384;
// Rows of A per block: kPackedGemmMBlock × kPackedGemmKBlock floats (≈ 200 KB) stay in L2 while
// the panels pass by.
constexpr int kPackedGemmMBlock = 288;

// One tile of C = A·Wᵀ + β·C: rows [row_begin, row_end) × panels [panel_begin, panel_end)
// (columns 16·panel_begin … min(16·panel_end, n)). A is m × k with leading dimension lda.
// β = 0 never reads C. Single-threaded; tiles may run concurrently when they are disjoint.
void PackedGemmTile(const float* a, int lda, int row_begin, int row_end, const PackedWeight& w,
                    int panel_begin, int panel_end, float beta, float* c, int ldc);
// The same with a given kernel (tests compare them); it must be supported.
void PackedGemmTile(PackedGemmKernel kernel, const float* a, int lda, int row_begin, int row_end,
                    const PackedWeight& w, int panel_begin, int panel_end, float beta, float* c, int ldc);

}  // namespace u2::cpu
