// The int8 GEMM of the CPU backend's int8 precision: C = A·Wᵀ with W quantized once at load
// (symmetric, one scale per output channel) and A quantized at every call (symmetric, one scale per
// row: per token), products summed exactly in int32, then rescaled to float.
//
//   C[i,j] = (Σ_k qa[i,k]·qw[j,k]) · sa[i] · sw[j]      qa = rint(a/sa), qw = rint(w/sw), |q| ≤ 127
//
// Four kernels compute the same int32 sums (so every CPU gives the same result, bit for bit):
//   * AVX-512 VNNI (vpdpbusd on zmm) and AVX-VNNI (the same on ymm) multiply unsigned by signed
//     bytes. A is stored as u8 = qa + 128, and the extra 128·Σ_k qw[j,k] is subtracted afterwards
//     (vpdpbusd adds its four products into int32 without saturating, so nothing is lost).
//   * AVX2 (vpmaddubsw, then vpmaddwd into int32): vpmaddubsw adds two u8×s8 products into a
//     *saturating* int16, and with u8 up to 255 two products reach 2·255·127 > 32767. So A stays
//     signed here and the kernel multiplies |qa| by qw·sign(qa) (vpabsb, vpsignb): two products are
//     then at most 2·127·127 = 32258, which always fits. (-128 is never produced, so |q| ≤ 127.)
//   * A portable loop for CPUs without AVX2, and the reference of the tests.
// The kernel is chosen once at run time from what the CPU supports (the machines this is built
// and tested on have been both AVX-512 and AVX2-only); tests run every kernel the CPU has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace u2::cpu {

enum class Int8Kernel { kPortable, kAvx2, kAvxVnni, kAvx512Vnni };
const char* Int8KernelName(Int8Kernel kernel);
bool Int8KernelSupported(Int8Kernel kernel);
// The fastest kernel this CPU runs (checked once).
Int8Kernel BestInt8Kernel();
// The kernel the CPU backend uses: BestInt8Kernel(), unless the environment variable
// U2_CPU_INT8_KERNEL names another one this CPU supports (portable | avx2 | avx-vnni |
// avx512-vnni), e.g. to measure on an AVX-512 machine what an AVX2-only one would run. The
// backend's Name() says which kernel it runs.
Int8Kernel SelectedInt8Kernel();

// The rule for weights, shared with tools/convert.py --quantize int8: per row r,
// s = max_k |w[r,k]| / 127 (1 for an all-zero row), q = rint(w / s) (ties to even; float32).
void QuantizeRowsSymmetric(const float* w, int rows, int cols, int ldw, int8_t* q, float* scales);

// W (n × k int8, row-major, leading dimension k) and its n scales, laid out for the kernels:
// panel p holds rows [16p, 16p+16) of W; within it, k is taken four at a time, and each group of
// four is 16 columns × 4 bytes (what vpdpbusd / vpmaddubsw read in one 64-byte or two 32-byte
// loads). k is zero-padded to a multiple of 4 and n to a multiple of 16 (scale 0 there).
class PackedInt8Weight {
 public:
  static constexpr int kPanelWidth = 16;
  static constexpr int kGroup = 4;

  PackedInt8Weight(const int8_t* q, const float* scales, int n, int k);

  int n() const { return n_; }
  int k() const { return k_; }
  int k_groups() const { return (k_ + kGroup - 1) / kGroup; }
  int k_padded() const { return k_groups() * kGroup; }
  int num_panels() const { return (n_ + kPanelWidth - 1) / kPanelWidth; }
  const int8_t* panel(int p) const { return data_.get() + static_cast<size_t>(p) * k_padded() * kPanelWidth; }
  // Per output column (padded to the panels): the scale, and Σ_k q[j,k] (the u8 kernels' correction).
  const float* scales() const { return scales_.get(); }
  const int32_t* column_sums() const { return column_sums_.get(); }
  size_t bytes() const { return static_cast<size_t>(num_panels()) * k_padded() * kPanelWidth; }

 private:
  struct AlignedDelete {
    void operator()(void* p) const;
  };
  int n_ = 0;
  int k_ = 0;
  std::unique_ptr<int8_t[], AlignedDelete> data_;
  std::unique_ptr<float[]> scales_;
  std::unique_ptr<int32_t[]> column_sums_;
};

// A quantized per row for `kernel`: out[i, :] holds k_padded bytes (s8 = qa for kPortable / kAvx2,
// u8 = qa + 128 for the VNNI kernels; the padding is the value of 0), scales[i] = sa.
// qa = rint(a·127/max|a_i|) (an all-zero row: qa = 0, sa = 0). ld_out ≥ k_padded.
void QuantizeActivationRows(Int8Kernel kernel, const float* a, int lda, int row_begin, int row_end, int k,
                            int k_padded, uint8_t* out, int ld_out, float* scales);

// One tile of C: rows [row_begin, row_end) × panels [panel_begin, panel_end) of
//   C[i,j] = (Σ_k qa[i,k]·qw[j,k]) · sa[i] · sw[j] + β·C[i,j]      (β = 0 never reads C)
// from rows quantized by QuantizeActivationRows for the same kernel. Single-threaded; disjoint
// tiles may run concurrently.
void Int8GemmTile(Int8Kernel kernel, const uint8_t* qa, int ldqa, const float* a_scales, int row_begin,
                  int row_end, const PackedInt8Weight& w, int panel_begin, int panel_end, float beta,
                  float* c, int ldc);

// The exact int32 sums Σ_k qa[i,k]·qw[j,k] of the same tile (tests: every kernel against an
// integer reference).
void Int8DotTile(Int8Kernel kernel, const uint8_t* qa, int ldqa, int row_begin, int row_end,
                 const PackedInt8Weight& w, int panel_begin, int panel_end, int32_t* out, int ldo);

// Rows of A per block: its quantized rows (≤ 192 × k bytes) stay in L2 while the panels pass by.
constexpr int kInt8GemmMBlock = 192;

}  // namespace u2::cpu
