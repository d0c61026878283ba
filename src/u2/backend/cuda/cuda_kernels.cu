// The CUDA backend's row-wise and elementwise operators, depthwise conv and Conv2d (im2col + GEMM).
// Each mirrors the CPU backend's loop (cpu_backend.cc) in float32; reductions are fp32 block
// reductions, so results agree with the CPU to float32 rounding, not bit for bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "u2/backend/cuda/cuda_internal.h"
#include "u2/backend/cuda/cuda_reduce.cuh"

namespace u2::cuda {
namespace {

constexpr int kThreads = 256;

int GridFor(long long total) { return std::max(1, std::min(CeilDiv(total, kThreads), 65535 * 8)); }

__global__ void BiasActivationKernel(float* y, int m, int n, int ldy, const float* bias, int act,
                                     float scale) {
  const long long total = static_cast<long long>(m) * n;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / n), j = static_cast<int>(i % n);
    float* p = y + static_cast<long long>(r) * ldy + j;
    float v = *p;
    if (bias) v += bias[j];
    if (scale != 1.0f) v *= scale;
    *p = Activate(v, act);
  }
}

__global__ void BiasGluKernel(const float* x, int m, int n, int ldx, const float* bias, float* y, int ldy) {
  const long long total = static_cast<long long>(m) * n;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(i / n), j = static_cast<int>(i % n);
    const float* row = x + static_cast<long long>(r) * ldx;
    const float a = row[j] + (bias ? bias[j] : 0.0f);
    const float g = row[n + j] + (bias ? bias[n + j] : 0.0f);
    y[static_cast<long long>(r) * ldy + j] = a / (1.0f + expf(-g));
  }
}

// Grid (output row j, segment k); threads over columns.
__global__ void AveragePoolRowsKernel(const float* x, int n, const RowSegment* segs, const int* out_rows,
                                      int window, float* y) {
  const RowSegment s = segs[blockIdx.y];
  const int j = blockIdx.x;
  const int first = j * window;
  if (first >= s.len) return;
  const int count = min(window, s.len - first);
  float* out = y + (static_cast<long long>(out_rows[blockIdx.y]) + j) * n;
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    float sum = 0.0f;
    for (int r = 0; r < count; ++r) sum += x[(static_cast<long long>(s.row) + first + r) * n + c];
    out[c] = sum / static_cast<float>(count);
  }
}

__global__ void MultiplyKernel(const float* a, int lda, const float* b, int ldb, int m, int n, float* y,
                               int ldy) {
  const long long total = static_cast<long long>(m) * n;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / n, j = i % n;
    y[r * ldy + j] = a[r * lda + j] * b[r * ldb + j];
  }
}

__global__ void LayerNormKernel(const float* x, int n, int ldx, const float* gamma, const float* beta,
                                float eps, float* y, int ldy) {
  __shared__ float scratch[32];
  const long long r = blockIdx.x;
  BlockLayerNormRow(x + r * ldx, n, gamma, beta, eps, y + r * ldy, scratch);
}

__global__ void AddResidualKernel(float* x, const float* delta, int ld_delta, const float* bias, float alpha,
                                  int n, bool norm, const float* gamma, const float* beta, float eps,
                                  float* y) {
  __shared__ float scratch[32];
  const long long r = blockIdx.x;
  float* xr = x + r * n;
  const float* dr = delta + r * ld_delta;
  for (int j = threadIdx.x; j < n; j += blockDim.x) xr[j] += alpha * (dr[j] + (bias ? bias[j] : 0.0f));
  if (!norm) return;
  __syncthreads();  // the row is complete before LayerNorm reads it
  BlockLayerNormRow(xr, n, gamma, beta, eps, y + r * n, scratch);
}

__global__ void CmvnKernel(const float* x, int m, int n, const float* mean, const float* istd, float* y) {
  const long long total = static_cast<long long>(m) * n;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(i % n);
    y[i] = (x[i] - mean[j]) * istd[j];
  }
}

// Grid (t, segment): row t of each segment.
__global__ void AddPositionalKernel(float* x, int n, const RowSegment* segs, const float* table,
                                    int pos_offset) {
  const RowSegment s = segs[blockIdx.y];
  const int t = blockIdx.x;
  if (t >= s.len) return;
  float* xr = x + static_cast<long long>(s.row + t) * n;
  const float* pr = table + static_cast<long long>(pos_offset + t) * n;
  for (int j = threadIdx.x; j < n; j += blockDim.x) xr[j] += pr[j];
}

__global__ void EmbedTokensKernel(const float* table, int n, const int* ids, const RowSegment* segs,
                                  float scale, const float* pos_table, float* y) {
  const RowSegment s = segs[blockIdx.y];
  const int t = blockIdx.x;
  if (t >= s.len) return;
  const int r = s.row + t;
  const float* er = table + static_cast<long long>(ids[r]) * n;
  const float* pr = pos_table + static_cast<long long>(s.pos + t) * n;
  float* yr = y + static_cast<long long>(r) * n;
  for (int j = threadIdx.x; j < n; j += blockDim.x) yr[j] = er[j] * scale + pr[j];
}

// Grid (t, segment); with a norm the row is assembled in shared memory (C floats) first.
__global__ void DepthwiseConvKernel(const float* x, const DepthwiseSegment* segs, int C, int K, int left_pad,
                                    const float* weight, const float* bias, const float* pad_value, bool norm,
                                    const float* gamma, const float* beta, float eps, int act, float* y) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const DepthwiseSegment s = segs[blockIdx.y];
  const int t = blockIdx.x;
  if (t >= s.len) return;  // uniform per block: no barrier is skipped by part of it
  float* out = y + static_cast<long long>(s.row + t) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float acc = bias ? bias[c] : 0.0f;
    for (int k = 0; k < K; ++k) {
      const int src = t - left_pad + k;
      const float* in;
      if (src < 0) {
        if (s.history) {
          in = s.history + static_cast<long long>(left_pad + src) * C;
        } else if (pad_value) {
          in = pad_value;
        } else {
          continue;
        }
      } else if (src >= s.len) {
        continue;
      } else {
        in = x + static_cast<long long>(s.row + src) * C;
      }
      acc += weight[static_cast<long long>(k) * C + c] * in[c];
    }
    if (norm) {
      row[c] = acc;
    } else {
      out[c] = Activate(acc, act);
    }
  }
  if (!norm) return;
  __syncthreads();
  BlockLayerNormRow(row, C, gamma, beta, eps, row, scratch);
  __syncthreads();
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[c] = Activate(row[c], act);
}

// col[(dt·w_out + f)·K + (ki·kk + kj)·cin + ci] = x[((t0 + dt)·stride + ki, f·stride + kj, ci)].
__global__ void Im2ColKernel(const float* x, int w_in, int cin, int kk, int stride, int t0, int nt, int w_out,
                             float* col) {
  const int K = kk * kk * cin;
  const long long total = static_cast<long long>(nt) * w_out * K;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long rowi = i / K;
    const int e = static_cast<int>(i % K);
    const int dt = static_cast<int>(rowi / w_out), f = static_cast<int>(rowi % w_out);
    const int ki = e / (kk * cin), rem = e % (kk * cin);
    const int kj = rem / cin, ci = rem % cin;
    const long long src =
        (static_cast<long long>((t0 + dt) * stride + ki) * w_in + f * stride + kj) * cin + ci;
    col[i] = x[src];
  }
}

// One block per row: out = log_softmax(row)[target] (tokens) or the whole row in place.
__global__ void LogSoftmaxKernel(float* x, int n, int ld) {
  __shared__ float scratch[32];
  float* row = x + static_cast<long long>(blockIdx.x) * ld;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, row[j]);
  m = BlockMax(m, scratch);
  float lse = m;
  if (isfinite(m)) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(row[j] - m);
    lse = m + logf(BlockSum(s, scratch));
  }
  for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] -= lse;
}

// One block per target: its row's log-sum-exp, then the target's log-probability (a row read by
// several targets is reduced once per target; the rows are few and short next to the GEMMs).
__global__ void TokenLogProbsKernel(const float* logits, int m, int n, int ld, const int* rows,
                                    const int* targets, float* out) {
  __shared__ float scratch[32];
  const int r = rows[blockIdx.x];
  const int target = targets[blockIdx.x];
  if (r < 0 || r >= m || target < 0 || target >= n) {
    if (threadIdx.x == 0) out[blockIdx.x] = nanf("");
    return;
  }
  const float* row = logits + static_cast<long long>(r) * ld;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j]);
  mx = BlockMax(mx, scratch);
  float lse = mx;
  if (isfinite(mx)) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(row[j] - mx);
    lse = mx + logf(BlockSum(s, scratch));
  }
  if (threadIdx.x == 0) out[blockIdx.x] = row[target] - lse;
}

__global__ void GatherRowsKernel(float* dst, int ld_dst, const float* src, int ld_src, const int* rows,
                                 int cols) {
  const float* s = src + static_cast<long long>(rows[blockIdx.x]) * ld_src;
  float* d = dst + static_cast<long long>(blockIdx.x) * ld_dst;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) d[j] = s[j];
}

template <typename Seg>
int MaxLen(std::span<const Seg> segs) {
  int m = 0;
  for (const Seg& s : segs) m = std::max(m, s.len);
  return m;
}

}  // namespace

void CudaBackend::BiasActivation(float* y, int m, int n, int ldy, const float* bias, Activation act,
                                 float scale) const {
  if (m <= 0 || n <= 0) return;
  if (!bias && act == Activation::kNone && scale == 1.0f) return;
  Lock lock(*this);
  if (failed_) return;
  BiasActivationKernel<<<GridFor(static_cast<long long>(m) * n), kThreads, 0, stream_>>>(
      y, m, n, ldy, bias, static_cast<int>(act), scale);
  CheckLaunch("BiasActivation");
}

void CudaBackend::BiasGlu(const float* x, int m, int n, int ldx, const float* bias, float* y, int ldy) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  BiasGluKernel<<<GridFor(static_cast<long long>(m) * n), kThreads, 0, stream_>>>(x, m, n, ldx, bias, y, ldy);
  CheckLaunch("BiasGlu");
}

void CudaBackend::AveragePoolRows(const float* x, int n, std::span<const RowSegment> segs,
                                  std::span<const int> out_rows, int window, float* y) const {
  const size_t k = std::min(segs.size(), out_rows.size());
  int max_out = 0;
  for (size_t i = 0; i < k; ++i) max_out = std::max(max_out, (segs[i].len + window - 1) / window);
  if (k == 0 || max_out == 0 || n <= 0 || window <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Staged d_segs(*this, segs.data(), k * sizeof(RowSegment));
  Staged d_rows(*this, out_rows.data(), k * sizeof(int));
  if (!d_segs.ok() || !d_rows.ok()) return;
  AveragePoolRowsKernel<<<dim3(max_out, static_cast<unsigned>(k)), RowThreads(n), 0, stream_>>>(
      x, n, d_segs.as<RowSegment>(), d_rows.as<int>(), window, y);
  CheckLaunch("AveragePoolRows");
}

void CudaBackend::Multiply(const float* a, int lda, const float* b, int ldb, int m, int n, float* y,
                           int ldy) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  MultiplyKernel<<<GridFor(static_cast<long long>(m) * n), kThreads, 0, stream_>>>(a, lda, b, ldb, m, n, y,
                                                                                   ldy);
  CheckLaunch("Multiply");
}

void CudaBackend::LayerNorm(const float* x, int m, int n, int ldx, const LayerNormParams& norm, float* y,
                            int ldy) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  LayerNormKernel<<<m, RowThreads(n), 0, stream_>>>(x, n, ldx, norm.gamma, norm.beta, norm.eps, y, ldy);
  CheckLaunch("LayerNorm");
}

void CudaBackend::AddResidual(float* x, const float* delta, int ld_delta, const float* bias, float alpha,
                              int m, int n, const LayerNormParams* norm, float* y) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  const LayerNormParams p = norm ? *norm : LayerNormParams{};
  AddResidualKernel<<<m, RowThreads(n), 0, stream_>>>(x, delta, ld_delta, bias, alpha, n, norm != nullptr,
                                                      p.gamma, p.beta, p.eps, y);
  CheckLaunch("AddResidual");
}

void CudaBackend::Cmvn(const float* x, int m, int n, const float* mean, const float* istd, float* y) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  CmvnKernel<<<GridFor(static_cast<long long>(m) * n), kThreads, 0, stream_>>>(x, m, n, mean, istd, y);
  CheckLaunch("Cmvn");
}

void CudaBackend::AddPositional(float* x, int n, std::span<const RowSegment> segs, const float* table,
                                int pos_offset) const {
  const int max_len = MaxLen(segs);
  if (max_len <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Staged d(*this, segs.data(), segs.size_bytes());
  if (!d.ok()) return;
  const dim3 grid(max_len, static_cast<unsigned>(segs.size()));
  AddPositionalKernel<<<grid, RowThreads(n), 0, stream_>>>(x, n, d.as<RowSegment>(), table, pos_offset);
  CheckLaunch("AddPositional");
}

void CudaBackend::EmbedTokens(const float* table, int n, std::span<const int> ids,
                              std::span<const RowSegment> segs, float scale, const float* pos_table,
                              float* y) const {
  const int max_len = MaxLen(segs);
  if (max_len <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Staged d_ids(*this, ids.data(), ids.size_bytes());
  Staged d_segs(*this, segs.data(), segs.size_bytes());
  if (!d_ids.ok() || !d_segs.ok()) return;
  const dim3 grid(max_len, static_cast<unsigned>(segs.size()));
  EmbedTokensKernel<<<grid, RowThreads(n), 0, stream_>>>(table, n, d_ids.as<int>(), d_segs.as<RowSegment>(),
                                                         scale, pos_table, y);
  CheckLaunch("EmbedTokens");
}

void CudaBackend::DepthwiseConv(const DepthwiseConvParams& p, const float* x,
                                std::span<const DepthwiseSegment> segs, float* y) const {
  const int max_len = MaxLen(segs);
  if (max_len <= 0 || p.channels <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Staged d(*this, segs.data(), segs.size_bytes());
  if (!d.ok()) return;
  const LayerNormParams np = p.norm ? *p.norm : LayerNormParams{};
  const size_t smem = p.norm ? static_cast<size_t>(p.channels) * sizeof(float) : 0;
  if (smem > 48 * 1024) {  // C > 12288 channels: never in a Conformer; refuse rather than fault
    Check(cudaErrorInvalidValue, "DepthwiseConv: too many channels for the fused LayerNorm");
    return;
  }
  const dim3 grid(max_len, static_cast<unsigned>(segs.size()));
  DepthwiseConvKernel<<<grid, RowThreads(p.channels), smem, stream_>>>(
      x, d.as<DepthwiseSegment>(), p.channels, p.kernel, p.left_pad, p.weight, p.bias, p.pad_value,
      p.norm != nullptr, np.gamma, np.beta, np.eps, static_cast<int>(p.activation), y);
  CheckLaunch("DepthwiseConv");
}

void CudaBackend::Conv2d(const Conv2dParams& p, const float* x, int h_in, int w_in, float* y,
                         Workspace& ws) const {
  const int kk = p.kernel;
  const int h_out = h_in < kk ? 0 : (h_in - kk) / p.stride + 1;
  const int w_out = w_in < kk ? 0 : (w_in - kk) / p.stride + 1;
  if (h_out <= 0 || w_out <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  const int cin = p.in_channels;
  const int K = kk * kk * cin;
  // im2col in blocks of output rows: the column buffer stays under ~64 MB whatever the length.
  const long long row_floats = static_cast<long long>(w_out) * K;
  const int block = static_cast<int>(std::clamp<long long>((16LL << 20) / row_floats, 1, h_out));
  float* col = ws.Floats(Workspace::kBackendSlotBase + 0, static_cast<size_t>(block) * row_floats);
  if (failed_) return;
  for (int t0 = 0; t0 < h_out; t0 += block) {
    const int nt = std::min(block, h_out - t0);
    Im2ColKernel<<<GridFor(nt * row_floats), kThreads, 0, stream_>>>(x, w_in, cin, kk, p.stride, t0, nt,
                                                                     w_out, col);
    if (!CheckLaunch("Conv2d(im2col)")) return;
    float* yb = y + static_cast<size_t>(t0) * w_out * p.out_channels;
    Gemm(false, true, nt * w_out, p.out_channels, K, 1.0f, col, K, p.weight, K, 0.0f, yb, p.out_channels);
    BiasActivation(yb, nt * w_out, p.out_channels, p.out_channels, p.bias, p.activation, 1.0f);
  }
}

void CudaBackend::LogSoftmax(float* x, int m, int n, int ld) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  LogSoftmaxKernel<<<m, RowThreads(n), 0, stream_>>>(x, n, ld);
  CheckLaunch("LogSoftmax");
}

void CudaBackend::TokenLogProbs(const float* logits, int m, int n, int ld, std::span<const int> rows,
                                std::span<const int> targets, float* out) const {
  const size_t count = targets.size();
  if (count == 0) return;
  if (rows.size() != count) {
    std::fill(out, out + count, std::nanf(""));
    return;
  }
  Lock lock(*this);
  if (!failed_ && m > 0 && n > 0) {
    Staged d_rows(*this, rows.data(), rows.size_bytes());
    Staged d_targets(*this, targets.data(), targets.size_bytes());
    void* d_out = nullptr;
    if (d_rows.ok() && d_targets.ok() &&
        Check(cudaMallocAsync(&d_out, count * sizeof(float), stream_), "cudaMallocAsync(TokenLogProbs)")) {
      TokenLogProbsKernel<<<static_cast<unsigned>(count), RowThreads(n), 0, stream_>>>(
          logits, m, n, ld, d_rows.as<int>(), d_targets.as<int>(), static_cast<float*>(d_out));
      if (CheckLaunch("TokenLogProbs")) {
        Check(cudaMemcpyAsync(out, d_out, count * sizeof(float), cudaMemcpyDeviceToHost, stream_),
              "cudaMemcpyAsync(TokenLogProbs)");
      }
      Check(cudaFreeAsync(d_out, stream_), "cudaFreeAsync(TokenLogProbs)");
    }
    Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(TokenLogProbs)");
  }
  if (failed_ || m <= 0 || n <= 0) std::fill(out, out + count, std::nanf(""));
}

void CudaBackend::GatherRows(float* dst, int ld_dst, const float* src, int ld_src, std::span<const int> rows,
                             int cols) const {
  if (rows.empty() || cols <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Staged d_rows(*this, rows.data(), rows.size_bytes());
  if (!d_rows.ok()) return;
  GatherRowsKernel<<<static_cast<unsigned>(rows.size()), RowThreads(cols), 0, stream_>>>(
      dst, ld_dst, src, ld_src, d_rows.as<int>(), cols);
  CheckLaunch("GatherRows");
}

}  // namespace u2::cuda
