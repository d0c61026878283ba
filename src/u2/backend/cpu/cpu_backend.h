// The CPU backend: OpenBLAS sgemm for every matrix product, hand-written loops (written so that
// GCC vectorises them under -march=native) for the rest, and a fork-join pool over rows.
#pragma once

#include <memory>

#include "u2/backend/ops.h"

namespace u2 {

// num_threads sets both OpenBLAS's thread count (process-wide) and this backend's row pool.
std::unique_ptr<Backend> CreateCpuBackend(int num_threads);

namespace cpu {
// exp(x) to ~2 ulp, branch-free so loops over it vectorise (Cephes' expf polynomial).
float FastExp(float x);
}  // namespace cpu

}  // namespace u2
