// The CPU backend: weight products through an AVX2/FMA GEMM on weights packed once at load
// (packed_gemm.h) or, at int8 precision, through an int8 GEMM (int8_gemm.h), OpenBLAS sgemm (single-threaded)
// for the other products, hand-written loops (written so that GCC vectorises them under -march=native) for
// the rest, and one fork-join pool that runs all of it in parallel.
#pragma once

#include <memory>

#include "u2/backend/ops.h"

namespace u2 {

// num_threads sizes the backend's pool; OpenBLAS is set to one thread (process-wide), the pool
// splits its calls. precision: kFp32, or kInt8 (the linear layers' products through
// int8_gemm.h's fastest kernel for this CPU); the caller has validated it (BackendOptions).
std::unique_ptr<Backend> CreateCpuBackend(int num_threads, Precision precision = Precision::kFp32);

namespace cpu {
// exp(x) to ~2 ulp, branch-free so loops over it vectorise (Cephes' expf polynomial).
float FastExp(float x);
}  // namespace cpu

}  // namespace u2
