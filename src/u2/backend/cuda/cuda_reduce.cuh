// Block-wide reductions for the row kernels (blockDim.x a multiple of 32, at most 1024). Every
// thread gets the result; the summation order is fixed, so results are deterministic.
#pragma once

#include <cuda_runtime.h>

namespace u2::cuda {

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  v = WarpSum(v);
  __syncthreads();  // the previous reduction's readers are done with scratch
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.0f;
  const int warps = (blockDim.x + 31) >> 5;
  for (int w = 0; w < warps; ++w) s += scratch[w];
  return s;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  v = WarpMax(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float m = -INFINITY;
  const int warps = (blockDim.x + 31) >> 5;
  for (int w = 0; w < warps; ++w) m = fmaxf(m, scratch[w]);
  return m;
}

// In-place-safe LayerNorm of one row by the whole block: two-pass variance like PyTorch's.
__device__ __forceinline__ void BlockLayerNormRow(const float* x, int n, const float* gamma,
                                                  const float* beta, float eps, float* y, float* scratch) {
  float s = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) s += x[j];
  const float mean = BlockSum(s, scratch) / static_cast<float>(n);
  float v = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float d = x[j] - mean;
    v += d * d;
  }
  const float var = BlockSum(v, scratch) / static_cast<float>(n);
  const float rstd = 1.0f / sqrtf(var + eps);
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float g = gamma ? gamma[j] : 1.0f;
    const float b = beta ? beta[j] : 0.0f;
    y[j] = (x[j] - mean) * rstd * g + b;
  }
}

__device__ __forceinline__ float Activate(float v, int act) {  // act: 0 none, 1 relu, 2 silu, 3 gelu
  if (act == 1) return v > 0.0f ? v : 0.0f;
  if (act == 2) return v / (1.0f + expf(-v));
  if (act == 3) return 0.5f * v * erfcf(-v * 0.70710678118654752f);  // exact GELU, no cancellation
  return v;
}

// Threads for a row kernel over n columns: a multiple of 32 between 32 and 256.
inline int RowThreads(int n) {
  int t = 32;
  while (t < n && t < 256) t *= 2;
  return t;
}

}  // namespace u2::cuda
