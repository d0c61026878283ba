// Reproducible random test data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace u2::testing {

// n values from N(0, scale²), the same for the same seed.
inline std::vector<float> RandomNormal(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace u2::testing
