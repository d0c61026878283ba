// Internal to the CUDA backend (included by its .cu/.cc files only): the CudaBackend class and
// helpers shared by the kernel files.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>
#include <span>
#include <string>

#include "u2/backend/cuda/cuda_backend.h"
#include "u2/backend/ops.h"

namespace u2::cuda {

class CudaBackend final : public Backend {
 public:
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  DeviceType device() const override { return DeviceType::kCuda; }
  std::string Name() const override;
  int num_threads() const override { return 1; }

  void* Allocate(size_t bytes) const override;
  void Free(void* p) const override;
  void CopyFromHost(void* dst, const void* src, size_t bytes) const override;
  void CopyToHost(void* dst, const void* src, size_t bytes) const override;
  void Copy(void* dst, const void* src, size_t bytes) const override;
  void CopyRows(float* dst, int ld_dst, const float* src, int ld_src, int rows, int cols) const override;

  void Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) const override;
  void BiasActivation(float* y, int m, int n, int ldy, const float* bias, Activation act,
                      float scale) const override;
  void BiasGlu(const float* x, int m, int n, int ldx, const float* bias, float* y, int ldy) const override;
  void Multiply(const float* a, int lda, const float* b, int ldb, int m, int n, float* y,
                int ldy) const override;
  void AveragePoolRows(const float* x, int n, std::span<const RowSegment> segs, std::span<const int> out_rows,
                       int window, float* y) const override;
  void LayerNorm(const float* x, int m, int n, int ldx, const LayerNormParams& norm, float* y,
                 int ldy) const override;
  void AddResidual(float* x, const float* delta, int ld_delta, const float* bias, float alpha, int m, int n,
                   const LayerNormParams* norm, float* y) const override;
  void Cmvn(const float* x, int m, int n, const float* mean, const float* istd, float* y) const override;
  void AddPositional(float* x, int n, std::span<const RowSegment> segs, const float* table,
                     int pos_offset) const override;
  void EmbedTokens(const float* table, int n, std::span<const int> ids, std::span<const RowSegment> segs,
                   float scale, const float* pos_table, float* y) const override;
  void Attention(const AttentionParams& p, std::span<const AttentionSegment> segs,
                 Workspace& ws) const override;
  void DepthwiseConv(const DepthwiseConvParams& p, const float* x, std::span<const DepthwiseSegment> segs,
                     float* y) const override;
  void Conv2d(const Conv2dParams& p, const float* x, int h_in, int w_in, float* y,
              Workspace& ws) const override;
  void LogSoftmax(float* x, int m, int n, int ld) const override;
  void TokenLogProbs(const float* logits, int m, int n, int ld, std::span<const int> rows,
                     std::span<const int> targets, float* out) const override;
  void GatherRows(float* dst, int ld_dst, const float* src, int ld_src, std::span<const int> rows,
                  int cols) const override;

  // Waits for the stream; returns the first recorded error.
  Status Synchronize() const override;
  cudaStream_t stream() const { return stream_; }
  const CudaBackendOptions& options() const { return options_; }

  // Records `err` (if not cudaSuccess) as the backend's sticky error; returns true if it was OK.
  bool Check(cudaError_t err, const char* what) const;
  bool CheckBlas(cublasStatus_t st, const char* what) const;
  // Checks the launch that just happened.
  bool CheckLaunch(const char* what) const { return Check(cudaGetLastError(), what); }
  bool failed() const { return failed_; }

  // A stream-ordered device copy of host bytes for the kernels enqueued next (segment tables, token
  // ids); it is freed (stream-ordered) by the returned guard's destructor, after those launches.
  class Staged {
   public:
    Staged(const CudaBackend& be, const void* host, size_t bytes);
    ~Staged();
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    template <typename T>
    const T* as() const {
      return static_cast<const T*>(ptr_);
    }
    bool ok() const { return ptr_ != nullptr; }

   private:
    const CudaBackend& be_;
    void* ptr_ = nullptr;
  };

  // Serialises enqueueing from concurrent callers; recursive because operators call Gemm.
  std::recursive_mutex& mutex() const { return mutex_; }

 private:
  CudaBackend() = default;
  CudaBackendOptions options_;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  mutable std::recursive_mutex mutex_;
  mutable bool failed_ = false;
  mutable std::string error_;
};

// Every operator holds this while it enqueues: the backend's lock, and its GPU made current on
// the calling thread. The engine calls the backend from its own worker threads, whose current
// device is 0 until set, and a process may run on any GPU (--device cuda:N).
class Lock {
 public:
  explicit Lock(const CudaBackend& backend) : lock_(backend.mutex()) {
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != backend.options().device_id) {
      backend.Check(cudaSetDevice(backend.options().device_id), "cudaSetDevice");
    }
  }

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

inline int CeilDiv(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace u2::cuda
