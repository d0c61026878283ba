// Batched GPU fbank (cuda_fbank.h). Three steps per pass of up to max_frames_per_pass frames:
//   FrameKernel: frame, scale, remove DC, pre-emphasis, window, zero-pad to the FFT size;
//   cuFFT R2C (batched);
//   MelKernel: |X|² as torch computes it (sqrt, then square), sparse mel triangles, log floor.
// The mel triangles are computed exactly as Fbank::Create does (torchaudio's get_mel_banks).
#include <cufft.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <map>
#include <numeric>

#include "u2/backend/cuda/cuda_fbank.h"
#include "u2/backend/cuda/cuda_reduce.cuh"

namespace u2 {
namespace {

__global__ void FrameKernel(const float* samples, const long long* frame_start, int m, int n, float scale,
                            bool remove_dc, float preemph, const float* window, float* frames) {
  extern __shared__ float x[];  // m floats
  __shared__ float scratch[32];
  const long long f = blockIdx.x;
  const float* src = samples + frame_start[f];
  float s = 0.0f;
  for (int j = threadIdx.x; j < m; j += blockDim.x) {
    x[j] = src[j] * scale;
    s += x[j];
  }
  if (remove_dc) {
    const float mean = cuda::BlockSum(s, scratch) / static_cast<float>(m);
    for (int j = threadIdx.x; j < m; j += blockDim.x) x[j] -= mean;
  }
  __syncthreads();
  float* out = frames + f * n;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float v = 0.0f;
    if (j < m) {
      v = x[j];
      if (preemph != 0.0f) v = v - preemph * x[j > 0 ? j - 1 : 0];
      v *= window[j];
    }
    out[j] = v;
  }
}

__global__ void MelKernel(const cufftComplex* spec, int bins_per_frame, int num_bins, const int* first,
                          const int* len, const int* woff, const float* weights, float* out) {
  const long long f = blockIdx.x;
  const cufftComplex* x = spec + f * bins_per_frame;
  for (int b = threadIdx.x; b < num_bins; b += blockDim.x) {
    const float* w = weights + woff[b];
    float e = 0.0f;
    for (int k = 0; k < len[b]; ++k) {
      const cufftComplex c = x[first[b] + k];
      const float mag = sqrtf(c.x * c.x + c.y * c.y);
      e += w[k] * (mag * mag);
    }
    out[f * num_bins + b] = logf(fmaxf(e, FLT_EPSILON));
  }
}

Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  (void)cudaGetLastError();
  return Internal(std::string("CudaFbank: ") + what + ": " + cudaGetErrorString(e));
}

}  // namespace

struct CudaFbank::Impl {
  FbankConfig config;
  int device_id = 0;
  int frame_length = 0, frame_shift = 0, fft_size = 0, max_frames = 0;
  cudaStream_t stream = nullptr;
  std::map<int, cufftHandle> plans;  // batch size → plan
  float* d_window = nullptr;
  int* d_first = nullptr;
  int* d_len = nullptr;
  int* d_woff = nullptr;
  float* d_weights = nullptr;
  float* d_frames = nullptr;       // max_frames × fft_size
  cufftComplex* d_spec = nullptr;  // max_frames × (fft_size/2 + 1)

  ~Impl() {
    if (stream) cudaStreamSynchronize(stream);
    for (auto& [b, plan] : plans) cufftDestroy(plan);
    for (void* p : {static_cast<void*>(d_window), static_cast<void*>(d_first), static_cast<void*>(d_len),
                    static_cast<void*>(d_woff), static_cast<void*>(d_weights), static_cast<void*>(d_frames),
                    static_cast<void*>(d_spec)}) {
      if (p) cudaFree(p);
    }
    if (stream) cudaStreamDestroy(stream);
  }

  int64_t NumFrames(int64_t num_samples) const {
    if (num_samples < frame_length) return 0;
    return 1 + (num_samples - frame_length) / frame_shift;
  }

  StatusOr<cufftHandle> PlanFor(int frames) {
    int batch = 64;
    while (batch < frames) batch *= 2;
    batch = std::min(batch, max_frames);
    auto it = plans.find(batch);
    if (it != plans.end()) return it->second;
    cufftHandle plan;
    int n = fft_size;
    if (cufftPlanMany(&plan, 1, &n, nullptr, 1, fft_size, nullptr, 1, fft_size / 2 + 1, CUFFT_R2C, batch) !=
        CUFFT_SUCCESS) {
      return Internal("CudaFbank: cufftPlanMany failed for batch " + std::to_string(batch));
    }
    if (cufftSetStream(plan, stream) != CUFFT_SUCCESS) {
      cufftDestroy(plan);
      return Internal("CudaFbank: cufftSetStream failed");
    }
    plans[batch] = plan;
    return plan;
  }
};

CudaFbank::CudaFbank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaFbank::~CudaFbank() = default;
const FbankConfig& CudaFbank::config() const { return impl_->config; }
int CudaFbank::dim() const { return impl_->config.num_mel_bins; }
int64_t CudaFbank::NumFrames(int64_t num_samples) const { return impl_->NumFrames(num_samples); }

StatusOr<std::unique_ptr<CudaFbank>> CudaFbank::Create(const FbankConfig& config, int device_id,
                                                       int max_frames_per_pass) {
  U2_RETURN_IF_ERROR(config.Validate());
  if (max_frames_per_pass < 64 || max_frames_per_pass > (1 << 22)) {
    return InvalidArgument("CudaFbank: max_frames_per_pass must be in [64, 4194304]");
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_id < 0 || device_id >= count) {
    (void)cudaGetLastError();
    return Unavailable("CudaFbank: CUDA device " + std::to_string(device_id) + " is not available");
  }
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.config = config;
  t.device_id = device_id;
  t.frame_length = config.FrameLengthSamples();
  t.frame_shift = config.FrameShiftSamples();
  t.fft_size = config.FftSize();
  t.max_frames = max_frames_per_pass;
  U2_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_id), "cudaSetDevice"));
  U2_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&t.stream, cudaStreamNonBlocking), "cudaStreamCreate"));

  // The same mel triangles as the CPU Fbank, flattened for the device.
  const std::vector<MelBin> bins = MelFilterbank(config);
  const int num_bins = static_cast<int>(bins.size());
  std::vector<int> first(num_bins), len(num_bins), woff(num_bins);
  std::vector<float> weights;
  for (int b = 0; b < num_bins; ++b) {
    first[b] = bins[b].first;
    len[b] = static_cast<int>(bins[b].weights.size());
    woff[b] = static_cast<int>(weights.size());
    weights.insert(weights.end(), bins[b].weights.begin(), bins[b].weights.end());
  }
  const std::vector<float> window = PoveyWindow(t.frame_length);
  auto upload = [&](auto** dst, const auto& host) -> Status {
    const size_t bytes = std::max<size_t>(host.size() * sizeof(host[0]), 4);
    U2_RETURN_IF_ERROR(CudaStatus(cudaMalloc(reinterpret_cast<void**>(dst), bytes), "cudaMalloc"));
    if (!host.empty()) {
      U2_RETURN_IF_ERROR(
          CudaStatus(cudaMemcpy(*dst, host.data(), host.size() * sizeof(host[0]), cudaMemcpyHostToDevice),
                     "cudaMemcpy"));
    }
    return Status::Ok();
  };
  U2_RETURN_IF_ERROR(upload(&t.d_window, window));
  U2_RETURN_IF_ERROR(upload(&t.d_first, first));
  U2_RETURN_IF_ERROR(upload(&t.d_len, len));
  U2_RETURN_IF_ERROR(upload(&t.d_woff, woff));
  U2_RETURN_IF_ERROR(upload(&t.d_weights, weights));
  const size_t frame_bytes = static_cast<size_t>(t.max_frames) * t.fft_size * sizeof(float);
  U2_RETURN_IF_ERROR(
      CudaStatus(cudaMalloc(reinterpret_cast<void**>(&t.d_frames), frame_bytes), "cudaMalloc"));
  U2_RETURN_IF_ERROR(CudaStatus(cudaMemset(t.d_frames, 0, frame_bytes), "cudaMemset"));  // spare batch rows
  U2_RETURN_IF_ERROR(
      CudaStatus(cudaMalloc(reinterpret_cast<void**>(&t.d_spec),
                            static_cast<size_t>(t.max_frames) * (t.fft_size / 2 + 1) * sizeof(cufftComplex)),
                 "cudaMalloc"));
  return std::unique_ptr<CudaFbank>(new CudaFbank(std::move(impl)));
}

Status CudaFbank::ComputeToDevice(std::span<const std::span<const float>> waveforms, float* device_out,
                                  std::vector<int>* row_offsets) {
  Impl& t = *impl_;
  U2_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(t.device_id), "cudaSetDevice"));
  row_offsets->assign(waveforms.size(), 0);
  std::vector<long long> frame_start;
  std::vector<float> samples;
  long long sample_base = 0;
  for (size_t b = 0; b < waveforms.size(); ++b) {
    Status st = CheckFbankInput(waveforms[b]);
    if (!st.ok()) return st.WithContext("utterance " + std::to_string(b));
    (*row_offsets)[b] = static_cast<int>(frame_start.size());
    const int64_t nf = t.NumFrames(static_cast<int64_t>(waveforms[b].size()));
    for (int64_t f = 0; f < nf; ++f) frame_start.push_back(sample_base + f * t.frame_shift);
    if (frame_start.size() > (size_t{1} << 31) / std::max(1, dim())) {
      return ResourceExhausted("CudaFbank: batch too long");
    }
    samples.insert(samples.end(), waveforms[b].begin(), waveforms[b].end());
    sample_base += static_cast<long long>(waveforms[b].size());
  }
  const long long total = static_cast<long long>(frame_start.size());
  if (total == 0) return Status::Ok();
  float* d_samples = nullptr;
  long long* d_starts = nullptr;
  const Status st = [&]() -> Status {
    U2_RETURN_IF_ERROR(CudaStatus(
        cudaMallocAsync(reinterpret_cast<void**>(&d_samples), samples.size() * sizeof(float), t.stream),
        "cudaMallocAsync"));
    U2_RETURN_IF_ERROR(CudaStatus(cudaMallocAsync(reinterpret_cast<void**>(&d_starts),
                                                  frame_start.size() * sizeof(long long), t.stream),
                                  "cudaMallocAsync"));
    U2_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(d_samples, samples.data(), samples.size() * sizeof(float),
                                                  cudaMemcpyHostToDevice, t.stream),
                                  "cudaMemcpyAsync"));
    U2_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(d_starts, frame_start.data(), frame_start.size() * sizeof(long long),
                                   cudaMemcpyHostToDevice, t.stream),
                   "cudaMemcpyAsync"));
    const FbankConfig& c = t.config;
    const int bins_per_frame = t.fft_size / 2 + 1;
    for (long long f0 = 0; f0 < total; f0 += t.max_frames) {
      const int nf = static_cast<int>(std::min<long long>(t.max_frames, total - f0));
      FrameKernel<<<nf, 128, static_cast<size_t>(t.frame_length) * sizeof(float), t.stream>>>(
          d_samples, d_starts + f0, t.frame_length, t.fft_size, c.input_scale, c.remove_dc, c.preemph,
          t.d_window, t.d_frames);
      U2_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "FrameKernel"));
      U2_ASSIGN_OR_RETURN(cufftHandle plan, t.PlanFor(nf));
      if (cufftExecR2C(plan, t.d_frames, t.d_spec) != CUFFT_SUCCESS) {
        return Internal("CudaFbank: cufftExecR2C failed");
      }
      MelKernel<<<nf, 128, 0, t.stream>>>(t.d_spec, bins_per_frame, c.num_mel_bins, t.d_first, t.d_len,
                                          t.d_woff, t.d_weights, device_out + f0 * c.num_mel_bins);
      U2_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "MelKernel"));
    }
    return Status::Ok();
  }();
  if (d_samples) cudaFreeAsync(d_samples, t.stream);
  if (d_starts) cudaFreeAsync(d_starts, t.stream);
  const Status sync = CudaStatus(cudaStreamSynchronize(t.stream), "cudaStreamSynchronize");
  return st.ok() ? sync : st;
}

StatusOr<std::vector<FeatureMatrix>> CudaFbank::Compute(std::span<const std::span<const float>> waveforms) {
  Impl& t = *impl_;
  long long total = 0;
  for (const auto& w : waveforms) total += t.NumFrames(static_cast<int64_t>(w.size()));
  std::vector<FeatureMatrix> out(waveforms.size());
  const int D = dim();
  if (total > (1LL << 31) / std::max(1, D)) return ResourceExhausted("CudaFbank: batch too long");
  float* d_out = nullptr;
  U2_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(t.device_id), "cudaSetDevice"));
  U2_RETURN_IF_ERROR(CudaStatus(cudaMallocAsync(reinterpret_cast<void**>(&d_out),
                                                std::max<long long>(total, 1) * D * sizeof(float), t.stream),
                                "cudaMallocAsync"));
  std::vector<int> offsets;
  const Status computed = ComputeToDevice(waveforms, d_out, &offsets);
  std::vector<float> host(static_cast<size_t>(total) * D);
  const Status copied = computed.ok() && total > 0
                            ? CudaStatus(cudaMemcpyAsync(host.data(), d_out, host.size() * sizeof(float),
                                                         cudaMemcpyDeviceToHost, t.stream),
                                         "cudaMemcpyAsync")
                            : computed;
  cudaFreeAsync(d_out, t.stream);
  const Status sync = CudaStatus(cudaStreamSynchronize(t.stream), "cudaStreamSynchronize");
  U2_RETURN_IF_ERROR(copied);
  U2_RETURN_IF_ERROR(sync);
  for (size_t b = 0; b < waveforms.size(); ++b) {
    FeatureMatrix& m = out[b];
    m.num_frames = static_cast<int>(t.NumFrames(static_cast<int64_t>(waveforms[b].size())));
    m.dim = D;
    const float* src = host.data() + static_cast<size_t>(offsets[b]) * D;
    m.data.assign(src, src + static_cast<size_t>(m.num_frames) * D);
  }
  return out;
}

}  // namespace u2
