// The CPU int8 GEMM (u2/backend/cpu/int8_gemm.h) and the int8 precision of the CPU backend.
//  * Every kernel this CPU has gives exactly the integer reference's int32 sums (computed here in
//    int64), on odd shapes and on the inputs that make a naive vpmaddubsw saturate.
//  * Weights and activations are quantized by the stated rules (checked element by element).
//  * The backend's int8 products are within the bound that int8 rounding allows of a float64
//    product of the original floats: per element Σ_k (|a_k|·sw/2 + |w_k|·sa/2 + sa·sw/4), plus a
//    float32 rounding term.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "support/random.h"
#include "u2/backend/cpu/cpu_backend.h"
#include "u2/backend/cpu/int8_gemm.h"
#include "u2/backend/ops.h"

namespace u2 {
namespace {

using cpu::Int8Kernel;

constexpr Int8Kernel kAllKernels[] = {Int8Kernel::kPortable, Int8Kernel::kAvx2, Int8Kernel::kAvxVnni,
                                      Int8Kernel::kAvx512Vnni};

std::vector<Int8Kernel> SupportedKernels() {
  std::vector<Int8Kernel> out;
  for (Int8Kernel k : kAllKernels) {
    if (cpu::Int8KernelSupported(k)) out.push_back(k);
  }
  return out;
}

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  return testing::RandomNormal(n, seed, scale);
}

std::vector<int8_t> RandomInt8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-127, 127);
  std::vector<int8_t> v(n);
  for (int8_t& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

// Quantizes integer-valued rows (each holding ±127 somewhere, so the row scale is 1 and q = a):
// the kernel then sees exactly the integers the reference multiplies.
std::vector<uint8_t> QuantizeExact(Int8Kernel kernel, const std::vector<int8_t>& qa, int m, int k, int kp) {
  std::vector<float> a(qa.begin(), qa.end());
  for (int i = 0; i < m; ++i) a[static_cast<size_t>(i) * k] = (i % 2) ? -127.0f : 127.0f;
  std::vector<uint8_t> out(static_cast<size_t>(m) * kp);
  std::vector<float> scales(m);
  cpu::QuantizeActivationRows(kernel, a.data(), k, 0, m, k, kp, out.data(), kp, scales.data());
  for (float s : scales) EXPECT_EQ(s, 1.0f);
  return out;
}

void CheckExactSums(Int8Kernel kernel, const std::vector<int8_t>& qa_in, const std::vector<int8_t>& qw, int m,
                    int n, int k, const char* what) {
  std::vector<int8_t> qa = qa_in;
  for (int i = 0; i < m; ++i) qa[static_cast<size_t>(i) * k] = (i % 2) ? -127 : 127;
  const std::vector<float> scales(n, 1.0f);
  const cpu::PackedInt8Weight w(qw.data(), scales.data(), n, k);
  const std::vector<uint8_t> a = QuantizeExact(kernel, qa, m, k, w.k_padded());
  std::vector<int32_t> got(static_cast<size_t>(m) * n, 12345);
  cpu::Int8DotTile(kernel, a.data(), w.k_padded(), 0, m, w, 0, w.num_panels(), got.data(), n);
  int bad = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      int64_t want = 0;
      for (int p = 0; p < k; ++p)
        want += int64_t{qa[static_cast<size_t>(i) * k + p]} * qw[static_cast<size_t>(j) * k + p];
      bad += got[static_cast<size_t>(i) * n + j] != want;
    }
  }
  EXPECT_EQ(bad, 0) << what << " kernel=" << cpu::Int8KernelName(kernel) << " m=" << m << " n=" << n
                    << " k=" << k;
}

TEST(Int8Gemm, ThisCpuRunsTheBestKernelItSupports) {
  EXPECT_TRUE(cpu::Int8KernelSupported(Int8Kernel::kPortable));
  EXPECT_TRUE(cpu::Int8KernelSupported(cpu::BestInt8Kernel()));
  std::printf("int8 kernels on this CPU:");
  for (Int8Kernel k : SupportedKernels()) std::printf(" %s", cpu::Int8KernelName(k));
  std::printf(" (best: %s)\n", cpu::Int8KernelName(cpu::BestInt8Kernel()));
}

TEST(Int8Gemm, EveryKernelGivesTheExactIntegerSumsOnOddShapes) {
  // Edges of every kernel: 4/6/8-row tiles, 16-column panels and 2-panel tiles, k not a multiple
  // of 4, 192-row blocks, and k long enough for sums beyond int16.
  const int ms[] = {1, 3, 7, 9, 17, 200};
  const std::tuple<int, int> nks[] = {{1, 1}, {15, 3}, {16, 4}, {17, 5}, {33, 63}, {47, 257}, {64, 1030}};
  for (Int8Kernel kernel : SupportedKernels()) {
    for (const auto& [n, k] : nks) {
      const auto qw = RandomInt8(static_cast<size_t>(n) * k, 10 + n);
      for (int m : ms) {
        CheckExactSums(kernel, RandomInt8(static_cast<size_t>(m) * k, 20 + m), qw, m, n, k, "random");
      }
    }
  }
}

TEST(Int8Gemm, EveryKernelGivesTheExactSumsWhereVpmaddubswWouldSaturate) {
  // Pairs of products that overflow int16 if activations are stored as u8 = q + 128 and fed to
  // vpmaddubsw: a = +127 or -127 everywhere against w = ±127 of the same sign, and alternating.
  const int m = 13, n = 35, k = 130;
  for (Int8Kernel kernel : SupportedKernels()) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      std::vector<int8_t> qa(static_cast<size_t>(m) * k), qw(static_cast<size_t>(n) * k);
      for (size_t e = 0; e < qa.size(); ++e) {
        qa[e] = pattern == 0 ? 127 : pattern == 1 ? -127 : (e % 2 ? 127 : -127);
      }
      for (size_t e = 0; e < qw.size(); ++e) {
        qw[e] = pattern == 0 ? 127 : pattern == 1 ? -127 : pattern == 2 ? (e % 2 ? 127 : -127) : -127;
      }
      CheckExactSums(kernel, qa, qw, m, n, k, "saturating pattern");
    }
  }
}

TEST(Int8Gemm, WeightsAreQuantizedPerRowByTheStatedRule) {
  const int rows = 5, cols = 37;
  auto w = Random(static_cast<size_t>(rows) * cols, 3, 0.2f);
  for (int c = 0; c < cols; ++c) w[2 * cols + c] = 0.0f;  // an all-zero row: scale 1, q = 0
  w[3 * cols + 4] = -0.9f;                                // the row's largest magnitude, negative
  w[4 * cols + 1] = 0.4f;                                 // the row's max: scale 0.4/127
  std::vector<int8_t> q(w.size());
  std::vector<float> s(rows);
  cpu::QuantizeRowsSymmetric(w.data(), rows, cols, cols, q.data(), s.data());
  EXPECT_EQ(s[2], 1.0f);
  EXPECT_EQ(q[3 * cols + 4], -127);
  for (int r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (int c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(w[static_cast<size_t>(r) * cols + c]));
    if (amax > 0.0f) {
      EXPECT_EQ(s[r], amax / 127.0f) << r;
    }
    for (int c = 0; c < cols; ++c) {
      const float x = w[static_cast<size_t>(r) * cols + c];
      EXPECT_EQ(q[static_cast<size_t>(r) * cols + c], static_cast<int8_t>(std::nearbyint(x / s[r])));
      EXPECT_LE(std::fabs(q[static_cast<size_t>(r) * cols + c] * s[r] - x), 0.5001f * s[r]);
    }
  }
}

TEST(Int8Gemm, ActivationsAreQuantizedPerRowTheSameByEveryKernel) {
  // rint(a·127/max|a|), ties to even, the same from the vector code and the scalar tail; an
  // all-zero row is zeros with scale 0. The VNNI kernels store q + 128.
  const int m = 6, k = 75, kp = 76;
  auto a = Random(static_cast<size_t>(m) * k, 5, 3.0f);
  for (int c = 0; c < k; ++c) a[1 * k + c] = 0.0f;
  for (int c = 0; c < k; ++c) a[2 * k + c] = (c % 5 - 2) * 0.5f;  // -1, -0.5, 0, 0.5, 1, ...
  a[2 * k] = 127.0f;  // the row's max: 127/max = 1, so the halves stay exact ties
  a[2 * k + 40] = 1.5f;
  a[2 * k + 41] = 2.5f;
  for (Int8Kernel kernel : SupportedKernels()) {
    std::vector<uint8_t> q(static_cast<size_t>(m) * kp, 0xEE);
    std::vector<float> s(m);
    cpu::QuantizeActivationRows(kernel, a.data(), k, 0, m, k, kp, q.data(), kp, s.data());
    const uint8_t flip = (kernel == Int8Kernel::kAvxVnni || kernel == Int8Kernel::kAvx512Vnni) ? 0x80 : 0;
    for (int i = 0; i < m; ++i) {
      float amax = 0.0f;
      for (int c = 0; c < k; ++c) amax = std::max(amax, std::fabs(a[static_cast<size_t>(i) * k + c]));
      EXPECT_EQ(s[i], amax == 0.0f ? 0.0f : amax / 127.0f);
      for (int c = 0; c < kp; ++c) {
        const int want =
            (c >= k || amax == 0.0f)
                ? 0
                : static_cast<int>(std::nearbyint(a[static_cast<size_t>(i) * k + c] * (127.0f / amax)));
        const int got = static_cast<int8_t>(q[static_cast<size_t>(i) * kp + c] ^ flip);
        EXPECT_EQ(got, want) << cpu::Int8KernelName(kernel) << " row " << i << " col " << c;
      }
    }
    // Ties go to even: 0.5 → 0, 1.5 → 2, -0.5 → 0.
    EXPECT_EQ(static_cast<int8_t>(q[2 * kp + 3] ^ flip), 0);   // 0.5
    EXPECT_EQ(static_cast<int8_t>(q[2 * kp + 1] ^ flip), 0);   // -0.5
    EXPECT_EQ(static_cast<int8_t>(q[2 * kp + 40] ^ flip), 2);  // 1.5
    EXPECT_EQ(static_cast<int8_t>(q[2 * kp + 41] ^ flip), 2);  // 2.5
  }
}

// The bound int8 rounding allows between the int8 product and float64's product of the floats.
double Int8Bound(const float* a, const float* w, int k, double sa, double sw) {
  double bound = 0, mag = 0;
  for (int p = 0; p < k; ++p) {
    bound += std::fabs(a[p]) * sw / 2 + std::fabs(w[p]) * sa / 2 + sa * sw / 4;
    mag += std::fabs(double(a[p]) * w[p]);
  }
  return bound * 1.0001 + 1e-6 * (mag + 1e-3);
}

class Int8Backend : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.num_threads = GetParam();
    o.precision = Precision::kInt8;
    auto b = CreateBackend(o);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    be_ = *b;
  }
  std::shared_ptr<const Backend> be_;
};

TEST_P(Int8Backend, GemmPreparedIsWithinTheInt8BoundOfFloat64) {
  const int ms[] = {1, 7, 45, 250};
  const std::tuple<int, int> nks[] = {{17, 5}, {70, 300}, {256, 1031}};
  for (const auto& [n, k] : nks) {
    const auto w = Random(static_cast<size_t>(n) * k, 100 + n, 0.05f);
    const auto pw = be_->PrepareWeight(w.data(), n, k);
    ASSERT_NE(pw, nullptr);
    EXPECT_EQ(pw->weight(), nullptr) << "an int8 handle keeps no fp32 copy";
    std::vector<int8_t> qw(w.size());
    std::vector<float> sw(n);
    cpu::QuantizeRowsSymmetric(w.data(), n, k, k, qw.data(), sw.data());
    for (int m : ms) {
      const int lda = k + 3, ldc = n + 2;
      auto a = Random(static_cast<size_t>(m) * lda, 200 + m, 2.0f);
      const auto bias = Random(n, 7);
      for (float beta : {0.0f, 0.5f}) {
        for (Activation act : {Activation::kNone, Activation::kRelu}) {
          std::vector<float> c(static_cast<size_t>(m) * ldc, 3.0f);
          be_->GemmPrepared(m, a.data(), lda, *pw, beta, c.data(), ldc, {bias.data(), act, 1.0f});
          int bad = 0;
          for (int i = 0; i < m; ++i) {
            const float* ai = a.data() + static_cast<size_t>(i) * lda;
            float amax = 0.0f;
            for (int p = 0; p < k; ++p) amax = std::max(amax, std::fabs(ai[p]));
            for (int j = 0; j < n; ++j) {
              double x = beta * 3.0 + bias[j];
              for (int p = 0; p < k; ++p) x += double(ai[p]) * w[static_cast<size_t>(j) * k + p];
              const double want = act == Activation::kRelu ? std::max(x, 0.0) : x;
              const double tol = Int8Bound(ai, w.data() + static_cast<size_t>(j) * k, k, amax / 127.0, sw[j]);
              bad += !(std::fabs(c[static_cast<size_t>(i) * ldc + j] - want) <= tol);
            }
            for (int j = n; j < ldc; ++j) bad += c[static_cast<size_t>(i) * ldc + j] != 3.0f;
          }
          EXPECT_EQ(bad, 0) << "m=" << m << " n=" << n << " k=" << k << " beta=" << beta;
        }
      }
    }
  }
}

TEST_P(Int8Backend, StoredInt8WeightsGiveTheSameProductAsQuantizingAtLoad) {
  // convert.py --quantize int8 stores q and the scales; quantizing the float weight at load must
  // give the same integers and scales, hence the same product bit for bit.
  const int m = 33, n = 50, k = 96;
  const auto w = Random(static_cast<size_t>(n) * k, 11, 0.1f);
  std::vector<int8_t> q(w.size());
  std::vector<float> s(n);
  cpu::QuantizeRowsSymmetric(w.data(), n, k, k, q.data(), s.data());
  const auto from_float = be_->PrepareWeight(w.data(), n, k);
  const auto from_int8 = be_->PrepareInt8Weight(q.data(), s.data(), n, k);
  ASSERT_NE(from_int8, nullptr);
  const auto a = Random(static_cast<size_t>(m) * k, 12);
  std::vector<float> c1(static_cast<size_t>(m) * n), c2(c1.size());
  be_->GemmPrepared(m, a.data(), k, *from_float, 0.0f, c1.data(), n, {});
  be_->GemmPrepared(m, a.data(), k, *from_int8, 0.0f, c2.data(), n, {});
  EXPECT_EQ(c1, c2);
}

TEST_P(Int8Backend, WeightsMarkedNeverStayFp32) {
  const int m = 20, n = 24, k = 40;
  const auto w = Random(static_cast<size_t>(n) * k, 13);
  const auto a = Random(static_cast<size_t>(m) * k, 14);
  const auto pw = be_->PrepareWeight(w.data(), n, k, WeightQuantization::kNever);
  EXPECT_EQ(pw->weight(), w.data());
  std::vector<float> c(static_cast<size_t>(m) * n);
  be_->GemmPrepared(m, a.data(), k, *pw, 0.0f, c.data(), n, {});
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double x = 0;
      for (int p = 0; p < k; ++p)
        x += double(a[static_cast<size_t>(i) * k + p]) * w[static_cast<size_t>(j) * k + p];
      EXPECT_NEAR(c[static_cast<size_t>(i) * n + j], x, 1e-4);
    }
  }
}

TEST_P(Int8Backend, ZeroAndNonFiniteRowsGiveZerosWithoutTouchingOtherRows) {
  const int m = 4, n = 16, k = 8;
  const auto w = Random(static_cast<size_t>(n) * k, 15);
  const auto pw = be_->PrepareWeight(w.data(), n, k);
  std::vector<float> a = Random(static_cast<size_t>(m) * k, 16);
  for (int p = 0; p < k; ++p) a[k + p] = 0.0f;
  a[2 * k + 3] = std::numeric_limits<float>::infinity();
  std::vector<float> c(static_cast<size_t>(m) * n, 7.0f);
  be_->GemmPrepared(m, a.data(), k, *pw, 0.0f, c.data(), n, {});
  for (int j = 0; j < n; ++j) {
    EXPECT_EQ(c[n + j], 0.0f);
    EXPECT_EQ(c[2 * n + j], 0.0f);
    EXPECT_TRUE(std::isfinite(c[j]) && std::isfinite(c[3 * n + j]));
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, Int8Backend, ::testing::Values(1, 2));

TEST(Int8Precision, ParsedAndRefusedOffTheCpu) {
  auto parsed = ParsePrecision("int8");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, Precision::kInt8);
  EXPECT_STREQ(PrecisionName(Precision::kInt8), "int8");
  BackendOptions o;
  o.precision = Precision::kInt8;
  EXPECT_TRUE(o.Validate().ok());
  o.device = DeviceType::kCuda;
  const Status s = o.Validate();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("CPU"), std::string::npos) << s.message();
  // A backend not computing in int8 does not take int8 weights: the loader dequantizes instead.
  auto fp32 = CreateBackend(BackendOptions{});
  ASSERT_TRUE(fp32.ok());
  const std::vector<int8_t> q(16 * 4, 1);
  const std::vector<float> s16(16, 0.5f);
  EXPECT_EQ((*fp32)->PrepareInt8Weight(q.data(), s16.data(), 16, 4), nullptr);
}

}  // namespace
}  // namespace u2
