// The operator set of the model, declared once. A Backend implements every operator for one
// device (backend/cpu: OpenBLAS + vectorisable loops; backend/cuda: later). Model code calls only
// these operators; it never touches BLAS or writes numeric loops itself.
//
// Conventions: float32, row-major matrices given as (pointer, leading dimension); all data
// pointers are device pointers of the backend; small descriptor arrays (segments, token ids) are
// host spans, which a device backend uploads itself. A batch of sequences is *packed*: the rows of
// all sequences are stacked (M = sum of lengths) so that every position-wise GEMM runs once over the
// whole batch, and padding never exists (which makes a batched row equal its batch-size-1 result).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "u2/backend/tensor.h"
#include "u2/util/status.h"

namespace u2 {

class Backend;
class PreparedWeight;

// kGelu is the exact (erf) GELU of torch.nn.GELU(), which WeNet's cgMLP uses.
enum class Activation { kNone, kRelu, kSilu, kGelu };

// One sequence's rows [row, row+len) in a packed matrix; `pos` is the position of its first row
// in the sequence (non-zero when the rows continue a prefix stored elsewhere, EmbedTokens).
struct RowSegment {
  int row = 0;
  int len = 0;
  int pos = 0;
};

struct LayerNormParams {
  const float* gamma = nullptr;
  const float* beta = nullptr;
  float eps = 1e-5f;
};

// Scratch memory owned by one caller (e.g. one request being encoded): buffers grow to the largest
// size asked for and are then reused, so the hot path does not allocate. Not thread-safe; use one
// per concurrent call. Slots [0, kBackendSlotBase) belong to model code, the rest to backends.
class Workspace {
 public:
  static constexpr int kNumSlots = 64;
  static constexpr int kBackendSlotBase = 48;

  explicit Workspace(const Backend& backend);
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // At least `count` floats for `slot`; contents undefined; valid until the slot is asked for more.
  float* Floats(int slot, size_t count);
  const Backend& backend() const { return backend_; }
  size_t bytes_reserved() const;

 private:
  const Backend& backend_;
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
  };
  Buffer buffers_[kNumSlots];
};

enum class AttentionMask {
  kNone,    // every key of the segment is visible
  kCausal,  // key position <= query position (decoder self-attention)
  kChunk,   // WeNet chunk mask: keys in [max((q/C - left)·C, 0), (q/C + 1)·C); left < 0 = all history
            // (positions times AttentionParams::mask_stride)
};

// Where one sequence's queries, keys/values and key positions are.
struct AttentionSegment {
  int q_row = 0;  // first query row (also the first output row)
  int q_len = 0;
  int kv_row = 0;   // first key/value row
  int kv_len = 0;   // keys beyond kv_len are padding: never attended
  int pos_row = 0;  // row of `pos` for key 0 (rel-pos attention)
  int q_pos = 0;    // absolute position of query 0 and of key 0, for causal/chunk masks
  int k_pos = 0;
};

// Multi-head scaled dot-product attention, head h = columns [h·dk, (h+1)·dk) of q, k, v, out.
// With `pos` and/or `pos_bias_u` (WeNet rel_selfattn, no rel_shift):
//   score[i,j] = ((q_i + u_h)·k_j + (q_i + v_h)·p_j) / √dk,   p_j = pos row (pos_row + j)
// otherwise score[i,j] = q_i·k_j / √dk. Masked keys get probability 0; a query with no visible
// key gets an all-zero output.
struct AttentionParams {
  int num_heads = 1;
  int head_dim = 0;
  const float* q = nullptr;
  int ldq = 0;
  const float* k = nullptr;
  int ldk = 0;
  const float* v = nullptr;
  int ldv = 0;
  const float* pos = nullptr;  // projected positional embeddings (rows x H·dk) or null
  int ldp = 0;
  const float* pos_bias_u = nullptr;  // (H, dk) or null
  const float* pos_bias_v = nullptr;  // (H, dk) or null
  float* out = nullptr;
  int ldo = 0;
  AttentionMask mask = AttentionMask::kNone;
  int chunk_size = 0;
  int left_chunks = -1;
  // Squeezeformer's do_rel_shift: the positional term (q_r + v)·p_c is taken Transformer-XL
  // style from the T1 × T2 matrix of a segment (T1 = q_len, T2 = kv_len):
  //   f = T1 + i·T2 + j,  r = f / (T2 + 1),  c = f % (T2 + 1),  term(i, j) = c ? bd[r][c − 1] : 0.
  // Needs `pos` (T2 rows); the u·k term is unshifted. CPU only (AsrModel refuses it elsewhere).
  bool rel_shift = false;
  // The chunk mask's positions are in frames `mask_stride` times as long as the segments' (a layer
  // after a time reduction: query i and key j sit at positions i·mask_stride and j·mask_stride of
  // the chunking, as WeNet's mask[:, ::s, ::s]).
  int mask_stride = 1;
};

// Depthwise Conv1d over time per sequence, then optional LayerNorm over channels and activation:
//   y[t,c] = act(norm(bias[c] + Σ_k w[k,c] · x[t − left_pad + k, c]))
// Frames before the sequence start come from `history` (left_pad rows, streaming cache) when
// given, else are `pad_value` (null = zeros); frames after its end are zeros.
struct DepthwiseConvParams {
  int channels = 0;
  int kernel = 0;
  int left_pad = 0;                  // K−1 causal, (K−1)/2 symmetric
  const float* weight = nullptr;     // (kernel, channels): transposed so channels are contiguous
  const float* bias = nullptr;       // (channels) or null
  const float* pad_value = nullptr;  // (channels) or null
  const LayerNormParams* norm = nullptr;
  Activation activation = Activation::kNone;
};

struct DepthwiseSegment {
  int row = 0;
  int len = 0;
  const float* history = nullptr;  // (left_pad, channels) or null
};

// Conv2d without padding on channels-last images: x (h_in, w_in, c_in) → y (h_out, w_out, c_out),
// h_out = (h_in − kernel)/stride + 1, likewise w_out; weight (c_out, kernel, kernel, c_in).
// prepared_weight (optional): the weight as a (c_out × kernel·kernel·c_in) matrix from
// PrepareWeight, used for the im2col GEMM instead of `weight`.
struct Conv2dParams {
  int in_channels = 1;
  int out_channels = 0;
  int kernel = 3;
  int stride = 2;
  const float* weight = nullptr;
  const PreparedWeight* prepared_weight = nullptr;
  const float* bias = nullptr;
  Activation activation = Activation::kNone;
};

// A weight matrix W (n × k, "out × in", row-major, leading dimension k) made ready once, at model
// load, for many products C = A·Wᵀ (Backend::PrepareWeight, Backend::GemmPrepared). A backend may
// keep a re-laid-out copy (the CPU backend packs W into its GEMM micro-kernel's panels, so no call
// packs it again); this base form only remembers W. W itself must stay alive and unchanged as long
// as the handle is used (the model keeps both: LinearWeights).
class PreparedWeight {
 public:
  PreparedWeight(const float* weight, int n, int k) : weight_(weight), n_(n), k_(k) {}
  virtual ~PreparedWeight() = default;
  PreparedWeight(const PreparedWeight&) = delete;
  PreparedWeight& operator=(const PreparedWeight&) = delete;

  const float* weight() const { return weight_; }
  int n() const { return n_; }
  int k() const { return k_; }

 private:
  const float* weight_;
  int n_;
  int k_;
};

// What GemmPrepared does to each output row after the product: c = act((c + bias)·scale), the
// epilogue of a Linear (BiasActivation), applied while the block is still in cache.
struct GemmEpilogue {
  const float* bias = nullptr;  // (n) or null
  Activation activation = Activation::kNone;
  float scale = 1.0f;
  bool empty() const { return bias == nullptr && activation == Activation::kNone && scale == 1.0f; }
};

// Whether a reduced-precision backend (Precision::kInt8) may quantize a weight: the model's
// products may; the subsampling's first convolution (nine taps on the raw features, little of the
// compute) keeps fp32.
enum class WeightQuantization { kAllowed, kNever };

// Created as a shared_ptr (CreateBackend); tensors it allocates keep it alive.
class Backend : public std::enable_shared_from_this<Backend> {
 public:
  virtual ~Backend() = default;
  virtual DeviceType device() const = 0;
  virtual std::string Name() const = 0;
  virtual int num_threads() const = 0;

  // Waits for queued work and reports a device failure (CUDA: the sticky error). The model calls
  // it before returning results. CPU work is synchronous: always OK.
  virtual Status Synchronize() const { return Status::Ok(); }

  // ---- memory ----
  // Null when the memory is not there (CUDA: out of device memory); NewTensor and Workspace
  // turn that into std::bad_alloc, which the batcher and stream scheduler catch per batch.
  virtual void* Allocate(size_t bytes) const = 0;
  virtual void Free(void* p) const = 0;
  virtual void CopyFromHost(void* dst, const void* src, size_t bytes) const = 0;
  virtual void CopyToHost(void* dst, const void* src, size_t bytes) const = 0;
  virtual void Copy(void* dst, const void* src, size_t bytes) const = 0;  // device → device
  // An owning tensor on this device (uninitialised) and an upload of host floats.
  Tensor NewTensor(Tensor::Shape shape, DType dtype = DType::kF32) const;
  Tensor Upload(std::span<const float> host, Tensor::Shape shape) const;
  // Rows × cols floats of a device matrix (leading dimension ld) to a host vector.
  std::vector<float> DownloadRows(const float* src, int rows, int cols, int ld) const;
  // dst[r, :cols] = src[r, :cols] for r < rows (device → device, strided; e.g. appending K|V rows
  // to a streaming cache). The default copies row by row; a device backend may override it.
  virtual void CopyRows(float* dst, int ld_dst, const float* src, int ld_src, int rows, int cols) const;
  // dst[i, :cols] = src[rows[i], :cols] (device → device; `rows` on the host), e.g. the K|V rows of
  // a decoder prefix shared between hypotheses. The default copies row by row.
  virtual void GatherRows(float* dst, int ld_dst, const float* src, int ld_src, std::span<const int> rows,
                          int cols) const;

  // ---- operators ----
  // C = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n.
  virtual void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                    const float* b, int ldb, float beta, float* c, int ldc) const = 0;
  // W (n × k, device pointer, leading dimension k) prepared for GemmPrepared. The default keeps W
  // as it is (GemmPrepared then calls Gemm); a backend overrides it to re-lay W out once, and a
  // backend computing in int8 quantizes it (per output row, QuantizeRowsSymmetric's rule) unless
  // `quantization` is kNever.
  virtual std::shared_ptr<const PreparedWeight> PrepareWeight(
      const float* w, int n, int k, WeightQuantization quantization = WeightQuantization::kAllowed) const;
  // A weight stored as int8 (convert.py --quantize int8): W[r, :] = q[r, :]·scales[r], q and
  // scales on the host. A backend computing in int8 packs q as it is; the others return null, and
  // the caller dequantizes and calls PrepareWeight.
  virtual std::shared_ptr<const PreparedWeight> PrepareInt8Weight(const int8_t* /*q*/,
                                                                  const float* /*scales*/, int /*n*/,
                                                                  int /*k*/) const {
    return nullptr;
  }
  // C = epilogue(A·Wᵀ + beta·C): A m × w.k() (lda), C m × w.n() (ldc). `w` comes from this
  // backend's PrepareWeight. Same result as Gemm(false, true, m, n, k, 1, a, lda, W, k, beta, c,
  // ldc) followed by BiasActivation(c, m, n, ldc, bias, activation, scale), up to float rounding
  // (the order of the k-sum may differ).
  virtual void GemmPrepared(int m, const float* a, int lda, const PreparedWeight& w, float beta, float* c,
                            int ldc, const GemmEpilogue& epilogue) const;
  // y[i,:] = act((y[i,:] + bias)·scale), in place on an m×n block (the epilogue of a Linear).
  virtual void BiasActivation(float* y, int m, int n, int ldy, const float* bias, Activation act,
                              float scale) const = 0;
  // y[i,:] = (x[i,:n] + b[:n]) · sigmoid(x[i,n:] + b[n:]); x is m×2n (ldx), y m×n (ldy).
  virtual void BiasGlu(const float* x, int m, int n, int ldx, const float* bias, float* y, int ldy) const = 0;
  // y[i,:n] = a[i,:n] ⊙ b[i,:n], element by element (a cgMLP's gating); y may equal a or b.
  virtual void Multiply(const float* a, int lda, const float* b, int ldb, int m, int n, float* y,
                        int ldy) const = 0;
  // Average pooling over time within each sequence (PyTorch AvgPool1d with kernel = stride =
  // `window`, ceil_mode, count_include_pad=False): segment k's output row j (at out_rows[k] + j)
  // averages its input rows j·window … min((j+1)·window, len) − 1. x and y are n columns wide,
  // contiguous; y must not overlap x.
  virtual void AveragePoolRows(const float* x, int n, std::span<const RowSegment> segs,
                               std::span<const int> out_rows, int window, float* y) const = 0;
  // y = LayerNorm(x) row-wise over n (y may equal x).
  virtual void LayerNorm(const float* x, int m, int n, int ldx, const LayerNormParams& norm, float* y,
                         int ldy) const = 0;
  // x += alpha·(delta + bias) (x is m×n contiguous); then, if norm, y = LayerNorm(x) (y may be x).
  virtual void AddResidual(float* x, const float* delta, int ld_delta, const float* bias, float alpha, int m,
                           int n, const LayerNormParams* norm, float* y) const = 0;
  // y = (x − mean)·istd per row (global CMVN); y may equal x.
  virtual void Cmvn(const float* x, int m, int n, const float* mean, const float* istd, float* y) const = 0;
  // x[seg.row + t, :] += table[pos_offset + t, :] for each segment (absolute positional encoding).
  virtual void AddPositional(float* x, int n, std::span<const RowSegment> segs, const float* table,
                             int pos_offset) const = 0;
  // y[r,:] = table[ids[r], :]·scale + pos_table[seg.pos + r − seg.row, :] for the rows of each segment.
  virtual void EmbedTokens(const float* table, int n, std::span<const int> ids,
                           std::span<const RowSegment> segs, float scale, const float* pos_table,
                           float* y) const = 0;
  virtual void Attention(const AttentionParams& p, std::span<const AttentionSegment> segs,
                         Workspace& ws) const = 0;
  virtual void DepthwiseConv(const DepthwiseConvParams& p, const float* x,
                             std::span<const DepthwiseSegment> segs, float* y) const = 0;
  virtual void Conv2d(const Conv2dParams& p, const float* x, int h_in, int w_in, float* y,
                      Workspace& ws) const = 0;
  // Row-wise log_softmax in place.
  virtual void LogSoftmax(float* x, int m, int n, int ld) const = 0;
  // out[i] = log_softmax(logits[rows[i], :])[targets[i]] for i < targets.size(); logits is m × n
  // (ld). Several targets may read one row (hypotheses sharing a decoder prefix). rows, targets and
  // out are on the host; a row or target out of range gives NaN.
  virtual void TokenLogProbs(const float* logits, int m, int n, int ld, std::span<const int> rows,
                             std::span<const int> targets, float* out) const = 0;
};

// Precision of the GEMM operands; accumulation and activations stay fp32. kFp32 is exact (TF32
// off on the GPU); kFp16 / kBf16 round the operands to tensor-core formats (CUDA only); kInt8
// quantizes the linear layers' weights per output channel and their inputs per row, and sums the
// products in int32 (CPU only: backend/cpu/int8_gemm.h).
enum class Precision : uint8_t { kFp32, kFp16, kBf16, kInt8 };
const char* PrecisionName(Precision precision);
StatusOr<Precision> ParsePrecision(std::string_view name);  // "fp32" | "fp16" | "bf16" | "int8"

struct BackendOptions {
  DeviceType device = DeviceType::kCpu;
  int device_index = 0;  // which GPU (the N of cuda:N); 0 on the CPU
  int num_threads = 1;
  Precision precision = Precision::kFp32;
  Status Validate() const;
  std::string ToString() const;
};

StatusOr<std::shared_ptr<const Backend>> CreateBackend(const BackendOptions& options);

}  // namespace u2
