// CudaBackend: device, stream, cuBLAS handle, stream-ordered memory pool, copies, GEMM and the
// public entry points of cuda_backend.h. Kernels live in cuda_kernels.cu and cuda_attention.cu.
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "u2/backend/cuda/cuda_internal.h"

namespace u2 {

const char* CudaGemmMathName(CudaGemmMath math) {
  switch (math) {
    case CudaGemmMath::kFp32:
      return "fp32";
    case CudaGemmMath::kTf32:
      return "tf32";
    case CudaGemmMath::kFp16:
      return "fp16";
    case CudaGemmMath::kBf16:
      return "bf16";
  }
  return "?";
}

StatusOr<CudaGemmMath> ParseCudaGemmMath(const std::string& name) {
  for (CudaGemmMath m :
       {CudaGemmMath::kFp32, CudaGemmMath::kTf32, CudaGemmMath::kFp16, CudaGemmMath::kBf16}) {
    if (name == CudaGemmMathName(m)) return m;
  }
  return InvalidArgument("unknown CUDA GEMM math '" + name + "' (expected fp32, tf32, fp16 or bf16)");
}

Status CudaBackendOptions::Validate() const {
  if (device_id < 0 || device_id > 255) {
    return InvalidArgument("CudaBackendOptions: device_id must be in [0, 255], got " +
                           std::to_string(device_id));
  }
  return Status::Ok();
}

std::string CudaBackendOptions::ToString() const {
  return "CudaBackendOptions{device_id=" + std::to_string(device_id) +
         ", gemm_math=" + CudaGemmMathName(gemm_math) + "}";
}

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  U2_ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBackend> b, cuda::CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackendFromOptions(const BackendOptions& options) {
  CudaBackendOptions o;
  o.device_id = options.device_index;
  switch (options.precision) {
    case Precision::kFp32:
      o.gemm_math = CudaGemmMath::kFp32;
      break;
    case Precision::kFp16:
      o.gemm_math = CudaGemmMath::kFp16;
      break;
    case Precision::kBf16:
      o.gemm_math = CudaGemmMath::kBf16;
      break;
    case Precision::kInt8:
      return InvalidArgument("precision int8 runs on the CPU backend only");
  }
  // A debugging override for experiments (e.g. tf32), above the model's precision.
  if (const char* math = std::getenv("U2_CUDA_GEMM_MATH"); math != nullptr && *math != '\0') {
    auto parsed = ParseCudaGemmMath(math);
    if (!parsed.ok()) return parsed.status().WithContext("U2_CUDA_GEMM_MATH");
    o.gemm_math = *parsed;
  }
  return CreateCudaBackend(o);
}

bool IsCudaBackend(const Backend& backend) {
  return dynamic_cast<const cuda::CudaBackend*>(&backend) != nullptr;
}

Status CudaSynchronize(const Backend& backend) {
  const auto* b = dynamic_cast<const cuda::CudaBackend*>(&backend);
  return b ? b->Synchronize() : Status::Ok();
}

namespace cuda {

namespace {

__global__ void ScaleMatrixKernel(float* c, int m, int n, int ldc, float beta) {
  const long long total = static_cast<long long>(m) * n;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long r = i / n, j = i % n;
    float* p = c + r * ldc + j;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

}  // namespace

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  U2_RETURN_IF_ERROR(options.Validate());
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return Unavailable(std::string("CUDA backend: no usable CUDA driver/device: ") + cudaGetErrorString(err));
  }
  if (options.device_id >= count) {
    return FailedPrecondition("CUDA backend: device " + std::to_string(options.device_id) + " requested, " +
                              std::to_string(count) + " visible");
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->options_ = options;
  auto fail = [](const char* what, cudaError_t e) {
    return Internal(std::string("CUDA backend: ") + what + ": " + cudaGetErrorString(e));
  };
  if ((err = cudaSetDevice(options.device_id)) != cudaSuccess) return fail("cudaSetDevice", err);
  cudaDeviceProp prop{};
  if ((err = cudaGetDeviceProperties(&prop, options.device_id)) != cudaSuccess) {
    return fail("cudaGetDeviceProperties", err);
  }
  b->device_name_ = prop.name;
  if (prop.major < 8) {
    return FailedPrecondition("CUDA backend: " + b->device_name_ + " has compute capability " +
                              std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                              "; 8.0+ required");
  }
  if ((err = cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking)) != cudaSuccess) {
    return fail("cudaStreamCreate", err);
  }
  // Keep freed blocks in the device's default pool (a caching allocator): no cudaMalloc/cudaFree
  // on the hot path once the workspaces have reached their working size.
  cudaMemPool_t pool = nullptr;
  if ((err = cudaDeviceGetDefaultMemPool(&pool, options.device_id)) != cudaSuccess) {
    return fail("cudaDeviceGetDefaultMemPool", err);
  }
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  if ((err = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold)) != cudaSuccess) {
    return fail("cudaMemPoolSetAttribute", err);
  }
  cublasStatus_t st = cublasCreate(&b->blas_);
  if (st != CUBLAS_STATUS_SUCCESS) {
    return Internal(std::string("CUDA backend: cublasCreate: ") + cublasGetStatusString(st));
  }
  if ((st = cublasSetStream(b->blas_, b->stream_)) != CUBLAS_STATUS_SUCCESS ||
      (st = cublasSetMathMode(b->blas_, options.gemm_math == CudaGemmMath::kFp32 ? CUBLAS_PEDANTIC_MATH
                                                                                 : CUBLAS_DEFAULT_MATH)) !=
          CUBLAS_STATUS_SUCCESS) {
    return Internal(std::string("CUDA backend: cuBLAS set-up: ") + cublasGetStatusString(st));
  }
  return b;
}

CudaBackend::~CudaBackend() {
  Lock lock(*this);  // the stream and handle belong to this backend's GPU
  if (stream_) cudaStreamSynchronize(stream_);
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaBackend::Name() const {
  return "cuda(" + device_name_ + ", device " + std::to_string(options_.device_id) + ", gemm " +
         CudaGemmMathName(options_.gemm_math) + ")";
}

bool CudaBackend::Check(cudaError_t err, const char* what) const {
  if (err == cudaSuccess) return true;
  (void)cudaGetLastError();  // clear a non-sticky error so the next check reports its own
  if (!failed_) {
    failed_ = true;
    error_ = std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
  }
  return false;
}

bool CudaBackend::CheckBlas(cublasStatus_t st, const char* what) const {
  if (st == CUBLAS_STATUS_SUCCESS) return true;
  if (!failed_) {
    failed_ = true;
    error_ = std::string(what) + ": " + cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ")";
  }
  return false;
}

Status CudaBackend::Synchronize() const {
  Lock lock(*this);
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  if (failed_) return Internal("CUDA backend: " + error_);
  return Status::Ok();
}

void* CudaBackend::Allocate(size_t bytes) const {
  Lock lock(*this);
  void* p = nullptr;
  if (!Check(cudaMallocAsync(&p, std::max<size_t>(bytes, 256), stream_), "cudaMallocAsync")) return nullptr;
  return p;
}

void CudaBackend::Free(void* p) const {
  if (!p) return;
  Lock lock(*this);
  Check(cudaFreeAsync(p, stream_), "cudaFreeAsync");
}

void CudaBackend::CopyFromHost(void* dst, const void* src, size_t bytes) const {
  if (bytes == 0) return;
  Lock lock(*this);
  if (failed_) return;
  // From pageable memory the call returns once `src` has been staged: the caller may reuse it.
  Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync(H2D)");
}

void CudaBackend::CopyToHost(void* dst, const void* src, size_t bytes) const {
  if (bytes == 0) return;
  Lock lock(*this);
  if (!failed_) {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync(D2H)");
    Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  if (failed_) {  // never hand back stale data as if it were a result
    float* f = static_cast<float*>(dst);
    for (size_t i = 0; i < bytes / sizeof(float); ++i) f[i] = std::numeric_limits<float>::quiet_NaN();
  }
}

void CudaBackend::Copy(void* dst, const void* src, size_t bytes) const {
  if (bytes == 0 || dst == src) return;
  Lock lock(*this);
  if (failed_) return;
  Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "cudaMemcpyAsync(D2D)");
}

void CudaBackend::CopyRows(float* dst, int ld_dst, const float* src, int ld_src, int rows, int cols) const {
  if (rows <= 0 || cols <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  Check(cudaMemcpy2DAsync(dst, static_cast<size_t>(ld_dst) * sizeof(float), src,
                          static_cast<size_t>(ld_src) * sizeof(float),
                          static_cast<size_t>(cols) * sizeof(float), rows, cudaMemcpyDeviceToDevice, stream_),
        "cudaMemcpy2DAsync(CopyRows)");
}

CudaBackend::Staged::Staged(const CudaBackend& be, const void* host, size_t bytes) : be_(be) {
  if (be.failed_) return;
  if (!be.Check(cudaMallocAsync(&ptr_, std::max<size_t>(bytes, 16), be.stream_),
                "cudaMallocAsync(staging)")) {
    ptr_ = nullptr;
    return;
  }
  if (bytes > 0 && !be.Check(cudaMemcpyAsync(ptr_, host, bytes, cudaMemcpyHostToDevice, be.stream_),
                             "cudaMemcpyAsync(staging)")) {
    cudaFreeAsync(ptr_, be.stream_);
    ptr_ = nullptr;
  }
}

CudaBackend::Staged::~Staged() {
  if (ptr_) be_.Check(cudaFreeAsync(ptr_, be_.stream_), "cudaFreeAsync(staging)");
}

void CudaBackend::Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                       const float* b, int ldb, float beta, float* c, int ldc) const {
  if (m <= 0 || n <= 0) return;
  Lock lock(*this);
  if (failed_) return;
  if (k <= 0) {
    const int blocks = std::min(CeilDiv(static_cast<long long>(m) * n, 256), 4096);
    ScaleMatrixKernel<<<blocks, 256, 0, stream_>>>(c, m, n, ldc, beta);
    CheckLaunch("Gemm(k=0)");
    return;
  }
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
  const cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (options_.gemm_math == CudaGemmMath::kFp32) {
    CheckBlas(cublasSgemm(blas_, ob, oa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc), "cublasSgemm");
    return;
  }
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  if (options_.gemm_math == CudaGemmMath::kFp16) compute = CUBLAS_COMPUTE_32F_FAST_16F;
  if (options_.gemm_math == CudaGemmMath::kBf16) compute = CUBLAS_COMPUTE_32F_FAST_16BF;
  CheckBlas(cublasGemmEx(blas_, ob, oa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c,
                         CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
}

}  // namespace cuda
}  // namespace u2
