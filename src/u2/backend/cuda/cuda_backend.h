// The CUDA backend: every operator of u2/backend/ops.h on one NVIDIA GPU, with the CPU backend's
// semantics (tests/gpu compares them operator by operator and on the reference fixtures).
//
// Plain C++ header (no CUDA types), so that backend.cc and the engine can include it in any build;
// the functions are defined only when the build has the CUDA backend (U2_HAVE_CUDA).
//
// Execution model (docs/gpu.md): one CUDA stream and one cuBLAS handle per backend; operators are
// enqueued asynchronously under a mutex (so threads sharing one backend enqueue whole operators,
// never interleaved halves) and run in stream order. Device memory comes from CUDA's stream-ordered
// pool (cudaMallocAsync) with its release threshold raised so that freed blocks stay cached: after
// warm-up there is no cudaMalloc on the hot path. CopyToHost and DownloadRows synchronise.
//
// Errors: the Backend interface returns void, so the first CUDA/cuBLAS error is recorded (sticky),
// every later operator becomes a no-op, host copies out fill with NaN, and CudaSynchronize()
// returns the error as a Status. Nothing aborts the process.
#pragma once

#include <memory>
#include <string>

#include "u2/backend/ops.h"
#include "u2/util/status.h"

namespace u2 {

// How cuBLAS multiplies float32 matrices. kFp32 (default) is IEEE float32 (TF32 off): results
// match the CPU backend to ~1e-6 relative. The others keep float32 storage and accumulation but
// round the GEMM operands to a tensor-core format: kTf32 (10-bit mantissa), kFp16, kBf16.
enum class CudaGemmMath { kFp32, kTf32, kFp16, kBf16 };
const char* CudaGemmMathName(CudaGemmMath math);
StatusOr<CudaGemmMath> ParseCudaGemmMath(const std::string& name);  // "fp32", "tf32", "fp16", "bf16"

struct CudaBackendOptions {
  int device_id = 0;
  CudaGemmMath gemm_math = CudaGemmMath::kFp32;
  Status Validate() const;
  std::string ToString() const;
};

// Fails (FailedPrecondition / Unavailable) when there is no usable GPU or the driver is too old.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);
// CreateBackend's entry point for DeviceType::kCuda. Until BackendOptions has a precision field
// (docs/gpu.md), the GEMM math can be chosen with the environment variable U2_CUDA_GEMM_MATH.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackendFromOptions(const BackendOptions& options);

// Waits for all work queued on a CUDA backend and returns the first error recorded since it was
// created (Ok if none). Ok for any non-CUDA backend.
Status CudaSynchronize(const Backend& backend);
// True if `backend` is a CUDA backend created here.
bool IsCudaBackend(const Backend& backend);
// Number of visible CUDA devices (0 when the driver or device is missing).
int CudaDeviceCount();

}  // namespace u2
