// The CPU backend: weight products through an AVX2/FMA GEMM on weights packed once at load
// (packed_gemm.h) or, at int8 precision, through an int8 GEMM (int8_gemm.h), OpenBLAS sgemm (single-threaded)
// for the other products, hand-written loops (written so that GCC vectorises them under -march=native) for
// the rest, and one fork-join pool that runs all of it in parallel.
#pragma once

#include <memory>
#include <string>

#include "u2/backend/ops.h"

namespace u2 {

// num_threads sizes the backend's pool; OpenBLAS is set to one thread (process-wide), the pool
// splits its calls. precision: kFp32, or kInt8 (the linear layers' products through
// int8_gemm.h's fastest kernel for this CPU); the caller has validated it (BackendOptions).
std::unique_ptr<Backend> CreateCpuBackend(int num_threads, Precision precision = Precision::kFp32);

namespace cpu {
// Empty, or a warning that OpenBLAS runs slower kernels than this CPU allows: OpenBLAS picks its
// kernels once, at load, from the CPU model it recognises, and a version older than the CPU (e.g.
// Debian 12's 0.3.21 on Emerald Rapids) falls back to its SSE3 "Prescott" kernels, ~4× slower
// (measured: 30 vs 125 GFLOP/s a core on the attention's shapes, 2026-12-02). The fix is the environment
// variable OPENBLAS_CORETYPE (Haswell for AVX2, SkylakeX for AVX-512), named in the message.
std::string OpenBlasCoreWarning();
// exp(x) to ~2 ulp, branch-free so loops over it vectorise (Cephes' expf polynomial).
float FastExp(float x);
}  // namespace cpu

}  // namespace u2
