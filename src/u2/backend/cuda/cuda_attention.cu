// Multi-head attention over packed segments in one launch: a float32 "flash" kernel (online
// softmax over key tiles, nothing of size q_len × kv_len is stored), one block per
// (segment, head, tile of 32 queries). Semantics as CpuBackend::Attention (ops.h):
//   score = scale·q·k (+ scale·(u·k + v·p) and q·p through k+p for rel-pos), masked keys get
//   probability 0, a query with no visible key gets an all-zero output.
// Rel-pos is rewritten as the CPU does: (q+u)·k + (q+v)·p = q·(k+p) + (u·k + v·p); a prologue
// kernel builds k+p and the per-key bias once per segment.
#include <algorithm>
#include <cmath>
#include <vector>

#include "u2/backend/cuda/cuda_internal.h"
#include "u2/backend/cuda/cuda_reduce.cuh"

namespace u2::cuda {
namespace {

constexpr int kAttnThreads = 128;
constexpr int kTileQ = 32;

struct DevSegment {
  AttentionSegment s;
  int prep_row = 0;  // first row of this segment's k+p rows in the prologue buffer
  int bias_off = 0;  // offset of its (H, kv_len) key-bias block
};

struct AttnArgs {
  const float* q;
  int ldq;
  const float* k;
  int ldk;
  const float* v;
  int ldv;
  float* out;
  int ldo;
  int num_heads;
  int head_dim;
  float scale;
  int mask;  // AttentionMask as int
  int chunk_size;
  int left_chunks;
  int mask_stride;
  // Rel-pos: keys are k+p rows (ld = H·dk) from `kp`, plus key_bias; else keys are `k`.
  const float* kp;
  const float* key_bias;
};

// Visible key range [lo, hi) of query i (segment-relative), as CpuBackend's KeyRange.
__device__ __forceinline__ void KeyRange(const AttnArgs& a, const AttentionSegment& s, int i, int* lo,
                                         int* hi) {
  *lo = 0;
  *hi = s.kv_len;
  const int qpos = s.q_pos + i;
  if (a.mask == static_cast<int>(AttentionMask::kCausal)) {
    *hi = min(s.kv_len, qpos - s.k_pos + 1);
  } else if (a.mask == static_cast<int>(AttentionMask::kChunk) && a.chunk_size > 0) {
    // In mask positions (frames × mask_stride): the chunk of the query, then the first and one
    // past the last visible key frame, rounded up to whole frames.
    const int stride = a.mask_stride;
    const int chunk = qpos * stride / a.chunk_size;
    const int start = a.left_chunks < 0 ? 0 : max((chunk - a.left_chunks) * a.chunk_size, 0);
    const int end = (chunk + 1) * a.chunk_size;
    *lo = max(0, (start + stride - 1) / stride - s.k_pos);
    *hi = min(s.kv_len, (end + stride - 1) / stride - s.k_pos);
  }
  *hi = max(*hi, *lo);
}

// Grid (key j, segment): kp[j] = k_j + p_j and key_bias[h, j] = scale·(u_h·k_j + v_h·p_j).
__global__ void RelPosPrologueKernel(AttnArgs a, const DevSegment* segs, const float* pos, int ldp,
                                     const float* pos_bias_u, const float* pos_bias_v, float* kp,
                                     float* key_bias) {
  extern __shared__ float prod[];  // H·dk partial products
  const DevSegment d = segs[blockIdx.y];
  const int j = blockIdx.x;
  if (j >= d.s.kv_len) return;
  const int D = a.num_heads * a.head_dim;
  const float* kr = a.k + static_cast<long long>(d.s.kv_row + j) * a.ldk;
  const float* pr = pos ? pos + static_cast<long long>(d.s.pos_row + j) * ldp : nullptr;
  float* kpr = kp + static_cast<long long>(d.prep_row + j) * D;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    const float kv = kr[c];
    const float pv = pr ? pr[c] : 0.0f;
    kpr[c] = kv + pv;
    float b = pos_bias_u ? pos_bias_u[c] * kv : 0.0f;
    if (pos_bias_v && pr) b += pos_bias_v[c] * pv;
    prod[c] = b;
  }
  __syncthreads();
  for (int h = threadIdx.x; h < a.num_heads; h += blockDim.x) {
    float b = 0.0f;
    for (int c = 0; c < a.head_dim; ++c) b += prod[h * a.head_dim + c];
    key_bias[d.bias_off + static_cast<long long>(h) * d.s.kv_len + j] = b * a.scale;
  }
}

template <int kDk, int kTileK>
__global__ void __launch_bounds__(kAttnThreads) AttentionKernel(AttnArgs a, const DevSegment* segs) {
  constexpr int kPad = kDk + 1;
  constexpr int kScores = kTileK / 4;  // scores per thread per key tile
  constexpr int kChans = kDk / 4;      // output channels per thread
  __shared__ float qs[kTileQ][kPad];
  __shared__ float ks[kTileK][kPad];
  __shared__ float vs[kTileK][kPad];
  __shared__ float ps[kTileQ][kTileK + 1];

  const DevSegment d = segs[blockIdx.z];
  const AttentionSegment& s = d.s;
  const int h = blockIdx.y;
  const int q0 = blockIdx.x * kTileQ;
  if (q0 >= s.q_len) return;  // uniform per block
  const int dk = a.head_dim;
  const int D = a.num_heads * dk;
  const int tid = threadIdx.x;
  const int qi = tid >> 2;    // this thread's query within the tile
  const int lane4 = tid & 3;  // its quarter of the keys / channels
  const int nq = min(kTileQ, s.q_len - q0);

  const bool rel = a.kp != nullptr;
  const float* keys =
      rel ? a.kp + static_cast<long long>(d.prep_row) * D : a.k + static_cast<long long>(s.kv_row) * a.ldk;
  const int ldkeys = rel ? D : a.ldk;
  const float* vals = a.v + static_cast<long long>(s.kv_row) * a.ldv;
  const float* kbias = rel ? a.key_bias + d.bias_off + static_cast<long long>(h) * s.kv_len : nullptr;

  for (int e = tid; e < kTileQ * dk; e += kAttnThreads) {
    const int i = e / dk, c = e % dk;
    qs[i][c] = i < nq ? a.q[static_cast<long long>(s.q_row + q0 + i) * a.ldq + h * dk + c] : 0.0f;
  }
  int lo = 0, hi = 0;
  if (qi < nq) KeyRange(a, s, q0 + qi, &lo, &hi);
  // Key range of the whole tile: lo and hi never decrease with the query index.
  int tile_lo, tile_hi, unused;
  KeyRange(a, s, q0, &tile_lo, &unused);
  KeyRange(a, s, q0 + nq - 1, &unused, &tile_hi);
  tile_hi = max(tile_hi, tile_lo);

  float acc[kChans];
#pragma unroll
  for (int w = 0; w < kChans; ++w) acc[w] = 0.0f;
  float m_run = -INFINITY, l_run = 0.0f;

  for (int k0 = tile_lo; k0 < tile_hi; k0 += kTileK) {
    __syncthreads();  // the previous tile's readers are done
    for (int e = tid; e < kTileK * dk; e += kAttnThreads) {
      const int j = e / dk, c = e % dk;
      const bool in = k0 + j < s.kv_len;
      ks[j][c] = in ? keys[static_cast<long long>(k0 + j) * ldkeys + h * dk + c] : 0.0f;
      vs[j][c] = in ? vals[static_cast<long long>(k0 + j) * a.ldv + h * dk + c] : 0.0f;
    }
    __syncthreads();
    float sc[kScores];
    float tile_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kScores; ++u) {
      const int kj = lane4 + 4 * u;
      const int j = k0 + kj;
      float dot = 0.0f;
      for (int c = 0; c < dk; ++c) dot += qs[qi][c] * ks[kj][c];
      float v = a.scale * dot;
      if (kbias && j < s.kv_len) v += kbias[j];
      sc[u] = (j >= lo && j < hi) ? v : -INFINITY;
      tile_max = fmaxf(tile_max, sc[u]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m_run, tile_max);
    float sum = 0.0f;
#pragma unroll
    for (int u = 0; u < kScores; ++u) {
      const float p = m_new == -INFINITY ? 0.0f : expf(sc[u] - m_new);  // exp(-inf) = 0 for masked keys
      ps[qi][lane4 + 4 * u] = p;
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float corr = m_run == -INFINITY ? 0.0f : expf(m_run - m_new);
    l_run = l_run * corr + sum;
    m_run = m_new;
    __syncthreads();  // ps complete
#pragma unroll
    for (int w = 0; w < kChans; ++w) {
      const int c = lane4 + 4 * w;
      float o = acc[w] * corr;
      if (c < dk) {
        for (int kj = 0; kj < kTileK; ++kj) o += ps[qi][kj] * vs[kj][c];
      }
      acc[w] = o;
    }
  }
  if (qi >= nq) return;
  float* orow = a.out + static_cast<long long>(s.q_row + q0 + qi) * a.ldo + h * dk;
  const float inv = l_run > 0.0f ? 1.0f / l_run : 0.0f;
#pragma unroll
  for (int w = 0; w < kChans; ++w) {
    const int c = lane4 + 4 * w;
    if (c < dk) orow[c] = acc[w] * inv;
  }
}

// Zeroes the output rows of segments that have queries but no keys.
__global__ void ZeroRowsKernel(float* out, int ldo, int D, const DevSegment* segs) {
  const DevSegment d = segs[blockIdx.y];
  const int i = blockIdx.x;
  if (d.s.kv_len > 0 || i >= d.s.q_len) return;
  float* o = out + static_cast<long long>(d.s.q_row + i) * ldo;
  for (int c = threadIdx.x; c < D; c += blockDim.x) o[c] = 0.0f;
}

}  // namespace

void CudaBackend::Attention(const AttentionParams& p, std::span<const AttentionSegment> segs,
                            Workspace& ws) const {
  const int H = p.num_heads;
  const int dk = p.head_dim;
  const int D = H * dk;
  if (segs.empty() || H <= 0 || dk <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  if (dk > 128) {
    Check(cudaErrorNotSupported, "Attention: head_dim > 128 is not supported by the CUDA kernel");
    return;
  }
  const bool rel = p.pos != nullptr || p.pos_bias_u != nullptr;
  std::vector<DevSegment> host(segs.size());
  int max_q = 0, max_kv = 0, any_empty = 0;
  long long prep_rows = 0, bias_floats = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    host[i].s = segs[i];
    host[i].prep_row = static_cast<int>(prep_rows);
    host[i].bias_off = static_cast<int>(bias_floats);
    const int kv = std::max(segs[i].kv_len, 0);
    prep_rows += kv;
    bias_floats += static_cast<long long>(H) * kv;
    max_q = std::max(max_q, segs[i].q_len);
    max_kv = std::max(max_kv, kv);
    if (segs[i].q_len > 0 && kv == 0) any_empty = 1;
  }
  if (max_q <= 0) return;
  Staged d(*this, host.data(), host.size() * sizeof(DevSegment));
  if (!d.ok()) return;

  AttnArgs a{};
  a.q = p.q;
  a.ldq = p.ldq;
  a.k = p.k;
  a.ldk = p.ldk;
  a.v = p.v;
  a.ldv = p.ldv;
  a.out = p.out;
  a.ldo = p.ldo;
  a.num_heads = H;
  a.head_dim = dk;
  a.scale = 1.0f / std::sqrt(static_cast<float>(dk));
  a.mask = static_cast<int>(p.mask);
  a.chunk_size = p.chunk_size;
  a.left_chunks = p.left_chunks;
  a.mask_stride = std::max(p.mask_stride, 1);
  const unsigned nseg = static_cast<unsigned>(segs.size());

  if (rel && max_kv > 0) {
    float* kp = ws.Floats(Workspace::kBackendSlotBase + 1, static_cast<size_t>(prep_rows) * D);
    float* kb = ws.Floats(Workspace::kBackendSlotBase + 2, static_cast<size_t>(bias_floats));
    if (failed_) return;
    RelPosPrologueKernel<<<dim3(max_kv, nseg), RowThreads(D), static_cast<size_t>(D) * sizeof(float),
                           stream_>>>(a, d.as<DevSegment>(), p.pos, p.ldp, p.pos_bias_u, p.pos_bias_v, kp,
                                      kb);
    if (!CheckLaunch("Attention(rel-pos prologue)")) return;
    a.kp = kp;
    a.key_bias = kb;
  }
  if (max_kv > 0) {
    const dim3 grid(CeilDiv(max_q, kTileQ), H, nseg);
    if (dk <= 32) {
      AttentionKernel<32, 32><<<grid, kAttnThreads, 0, stream_>>>(a, d.as<DevSegment>());
    } else if (dk <= 64) {
      AttentionKernel<64, 32><<<grid, kAttnThreads, 0, stream_>>>(a, d.as<DevSegment>());
    } else {
      AttentionKernel<128, 16><<<grid, kAttnThreads, 0, stream_>>>(a, d.as<DevSegment>());
    }
    if (!CheckLaunch("Attention")) return;
  }
  if (any_empty) {
    ZeroRowsKernel<<<dim3(max_q, nseg), RowThreads(D), 0, stream_>>>(p.out, p.ldo, D, d.as<DevSegment>());
    CheckLaunch("Attention(empty segments)");
  }
}

}  // namespace u2::cuda
