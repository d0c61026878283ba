// Every CPU operator against a float64 loop written here, straight from the operator's definition
// in u2/backend/ops.h. Run with 1 and 2 threads (the backend's pool splits GEMM tiles, attention
// heads and rows).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "support/random.h"
#include "u2/backend/cpu/cpu_backend.h"
#include "u2/backend/cpu/packed_gemm.h"
#include "u2/backend/ops.h"

namespace u2 {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  return testing::RandomNormal(n, seed, scale);
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// torch.nn.GELU(): x·Φ(x), in float64.
double Gelu(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }

class BackendOps : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.num_threads = GetParam();
    auto b = CreateBackend(o);
    ASSERT_TRUE(b.ok());
    be_ = *b;
    ws_ = std::make_unique<Workspace>(*be_);
  }
  std::shared_ptr<const Backend> be_;
  std::unique_ptr<Workspace> ws_;
};

TEST_P(BackendOps, GemmAllTransposesWithLeadingDims) {
  // The second shape is large enough for the CPU backend to split C's rows across its threads.
  for (const auto& [m, n, k] : {std::tuple{37, 29, 53}, std::tuple{131, 70, 90}})
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
        auto a = Random(static_cast<size_t>(ta ? k : m) * lda, 1);
        auto b = Random(static_cast<size_t>(tb ? n : k) * ldb, 2);
        auto c = Random(static_cast<size_t>(m) * ldc, 3);
        std::vector<double> want(c.begin(), c.end());
        const float alpha = 0.7f, beta = 0.3f;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double s = 0;
            for (int p = 0; p < k; ++p) {
              const double av = ta ? a[p * lda + i] : a[i * lda + p];
              const double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
              s += av * bv;
            }
            want[i * ldc + j] = alpha * s + beta * c[i * ldc + j];
          }
        }
        be_->Gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        EXPECT_LT(MaxAbsDiff(c, want), 2e-5) << "ta=" << ta << " tb=" << tb << " m=" << m;
      }
    }
  // k = 0: C = beta·C.
  std::vector<float> c(6, 2.0f);
  be_->Gemm(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.5f, c.data(), 3);
  for (float v : c) EXPECT_EQ(v, 1.0f);
}

// C = A·Wᵀ + β·C through a prepared weight against float64. Tolerance: the worst-case error bound
// of a float32 sum of k+1 products in any order, (k + 2)·2⁻²⁴·(Σ_p |a_ip·w_jp| + |β·c_ij|); a wrong
// element, offset or panel is off by the order of the terms themselves.
void CheckPreparedGemm(const Backend& be, const PreparedWeight& pw, const std::vector<float>& w, int m, int n,
                       int k, float beta, const std::string& what) {
  const int lda = k + 3, ldc = n + 5;
  auto a = Random(static_cast<size_t>(m) * lda, 101 + m);
  auto c0 = Random(static_cast<size_t>(m) * ldc, 102 + n);
  std::vector<float> c = c0;
  if (beta == 0.0f) {
    // β = 0 must not read C: NaNs there would survive a 0·C term.
    for (int i = 0; i < m; ++i) std::fill_n(c.begin() + static_cast<size_t>(i) * ldc, n, std::nanf(""));
  }
  be.GemmPrepared(m, a.data(), lda, pw, beta, c.data(), ldc, {});
  int bad = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const float got = c[static_cast<size_t>(i) * ldc + j];
      if (j >= n) {  // padding columns of C are untouched
        if (got != c0[static_cast<size_t>(i) * ldc + j]) ++bad;
        continue;
      }
      double ref = 0, mag = std::abs(double(beta) * c0[static_cast<size_t>(i) * ldc + j]);
      for (int p = 0; p < k; ++p) {
        const double t = double(a[static_cast<size_t>(i) * lda + p]) * w[static_cast<size_t>(j) * k + p];
        ref += t;
        mag += std::abs(t);
      }
      if (beta != 0.0f) ref += double(beta) * c0[static_cast<size_t>(i) * ldc + j];
      if (!(std::abs(got - ref) <= (k + 2) * std::ldexp(1.0, -24) * mag)) ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << " m=" << m << " n=" << n << " k=" << k << " beta=" << beta;
}

TEST_P(BackendOps, GemmPreparedMatchesFloat64OnOddShapes) {
  // Shapes around the CPU kernel's edges: 6-row register tiles, 16-column panels, 256-deep K
  // blocks, 192-row M blocks, and products small enough to run unsplit.
  const int ms[] = {1, 5, 6, 7, 13, 200, 250};
  const std::tuple<int, int> nks[] = {{1, 1}, {15, 3}, {16, 256}, {17, 257}, {33, 100}, {70, 513}, {300, 64}};
  for (const auto& [n, k] : nks) {
    const auto w = Random(static_cast<size_t>(n) * k, 100 + n);
    const std::shared_ptr<const PreparedWeight> pw = be_->PrepareWeight(w.data(), n, k);
    ASSERT_NE(pw, nullptr);
    EXPECT_EQ(pw->n(), n);
    EXPECT_EQ(pw->k(), k);
    for (int m : ms) {
      for (float beta : {0.0f, 1.0f, 0.5f}) CheckPreparedGemm(*be_, *pw, w, m, n, k, beta, "packed");
    }
  }
  // m = 0 leaves C alone.
  const auto w = Random(16 * 8, 7);
  auto pw = be_->PrepareWeight(w.data(), 16, 8);
  std::vector<float> c(4, 3.0f);
  be_->GemmPrepared(0, nullptr, 8, *pw, 0.0f, c.data(), 16, {});
  for (float x : c) EXPECT_EQ(x, 3.0f);
}

TEST_P(BackendOps, GemmPreparedEpilogueAddsBiasScalesAndActivates) {
  // c = act((A·Wᵀ + bias)·scale), checked against float64 with the product's bound (above, times
  // the activation's slope ≤ 1.1) plus a few ulp of the result for the activation itself.
  const int m = 45, n = 70, k = 300, ldc = n + 3;
  const auto a = Random(static_cast<size_t>(m) * k, 61), w = Random(static_cast<size_t>(n) * k, 62);
  const auto bias = Random(n, 63, 3.0f);
  for (const std::shared_ptr<const PreparedWeight>& pw :
       {be_->PrepareWeight(w.data(), n, k), be_->Backend::PrepareWeight(w.data(), n, k)}) {
    for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kSilu, Activation::kGelu}) {
      for (const float scale : {1.0f, 0.5f}) {
        std::vector<float> c(static_cast<size_t>(m) * ldc, 9.0f);
        be_->GemmPrepared(m, a.data(), k, *pw, 0.0f, c.data(), ldc, {bias.data(), act, scale});
        int bad = 0;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double s = 0, mag = std::abs(double(bias[j]));
            for (int p = 0; p < k; ++p) {
              const double t = double(a[static_cast<size_t>(i) * k + p]) * w[static_cast<size_t>(j) * k + p];
              s += t;
              mag += std::abs(t);
            }
            const double x = (s + bias[j]) * scale;
            const double want = act == Activation::kRelu   ? std::max(x, 0.0)
                                : act == Activation::kSilu ? x * Sigmoid(x)
                                : act == Activation::kGelu ? Gelu(x)
                                                           : x;
            // GELU's erf approximation adds at most 1.5e-7·|x|/2 (Abramowitz & Stegun 7.1.26).
            const double tol = 1.1 * (k + 4) * std::ldexp(1.0, -24) * mag * scale + 5e-7 * std::abs(want) +
                               1e-7 + (act == Activation::kGelu ? 1e-7 * std::abs(x) : 0.0);
            if (!(std::abs(c[static_cast<size_t>(i) * ldc + j] - want) <= tol)) ++bad;
          }
          for (int j = n; j < ldc; ++j) bad += c[static_cast<size_t>(i) * ldc + j] != 9.0f;
        }
        EXPECT_EQ(bad, 0) << "act=" << int(act) << " scale=" << scale;
      }
    }
  }
}

TEST_P(BackendOps, GeluFollowsTorchOverItsWholeRange) {
  // Every x on a fine grid over [-12, 12] (both tails, where Φ(x) is ~1e-33 or 1 − 1e-33) against
  // float64: at most 1.5e-7·|x|/2 from the erf approximation plus float32 rounding.
  const int n = 24001;
  std::vector<float> y(n);
  for (int i = 0; i < n; ++i) y[i] = -12.0f + 24.0f * static_cast<float>(i) / (n - 1);
  const std::vector<float> x = y;
  be_->BiasActivation(y.data(), 1, n, n, nullptr, Activation::kGelu, 1.0f);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const double want = Gelu(x[i]);
    const double err = std::abs(y[i] - want);
    EXPECT_LE(err, 1e-7 * std::abs(x[i]) + 3e-7 * std::abs(want) + 1e-30) << "x=" << x[i];
    worst = std::max(worst, err);
  }
  std::printf("[%s] GELU max abs error over [-12, 12]: %.3g\n", be_->Name().c_str(), worst);
}

TEST_P(BackendOps, MultiplyIsElementwiseOnStridedRows) {
  const int m = 37, n = 70, lda = 90, ldb = 75, ldy = 80;
  const auto a = Random(static_cast<size_t>(m) * lda, 71), b = Random(static_cast<size_t>(m) * ldb, 72);
  std::vector<float> y(static_cast<size_t>(m) * ldy, 5.0f);
  be_->Multiply(a.data(), lda, b.data(), ldb, m, n, y.data(), ldy);
  int bad = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) bad += y[i * ldy + j] != a[i * lda + j] * b[i * ldb + j];
    for (int j = n; j < ldy; ++j) bad += y[i * ldy + j] != 5.0f;
  }
  EXPECT_EQ(bad, 0);
  // In place on either operand.
  std::vector<float> c(b.begin(), b.end());
  be_->Multiply(a.data(), lda, c.data(), ldb, m, n, c.data(), ldb);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) bad += c[i * ldb + j] != a[i * lda + j] * b[i * ldb + j];
  EXPECT_EQ(bad, 0);
}

// The fp32 micro-kernels (backend/cpu/packed_gemm.h): AVX-512 gives the AVX2 kernel's bits (one FMA
// per product, the same order), and every kernel is within the float64 product's rounding bound,
// on shapes that cut register tiles, panels and K blocks, for β = 0 and β ≠ 0.
TEST(PackedGemmKernels, AgreeBitForBitAndWithFloat64) {
  using cpu::PackedGemmKernel;
  std::vector<PackedGemmKernel> kernels;
  for (PackedGemmKernel k :
       {PackedGemmKernel::kPortable, PackedGemmKernel::kAvx2, PackedGemmKernel::kAvx512}) {
    if (cpu::PackedGemmKernelSupported(k)) kernels.push_back(k);
  }
  std::printf("fp32 kernels on this CPU:");
  for (PackedGemmKernel k : kernels) std::printf(" %s", cpu::PackedGemmKernelName(k));
  std::printf(" (selected: %s)\n", cpu::PackedGemmKernelName(cpu::SelectedPackedGemmKernel()));
  for (const auto& [m, n, k] : std::vector<std::tuple<int, int, int>>{
           {1, 16, 7}, {13, 17, 385}, {25, 70, 1000}, {300, 33, 64}, {12, 1, 384}}) {
    const auto a = Random(static_cast<size_t>(m) * k, 81), w = Random(static_cast<size_t>(n) * k, 82);
    const cpu::PackedWeight packed(w.data(), n, k, k);
    for (const float beta : {0.0f, 0.5f}) {
      const auto c0 = Random(static_cast<size_t>(m) * n, 83);
      std::vector<std::vector<float>> results;
      for (PackedGemmKernel kernel : kernels) {
        std::vector<float> c = c0;
        cpu::PackedGemmTile(kernel, a.data(), k, 0, m, packed, 0, packed.num_panels(), beta, c.data(), n);
        int bad = 0;
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < n; ++j) {
            double s = beta * double(c0[i * n + j]), mag = std::abs(s);
            for (int p = 0; p < k; ++p) {
              const double t = double(a[static_cast<size_t>(i) * k + p]) * w[static_cast<size_t>(j) * k + p];
              s += t;
              mag += std::abs(t);
            }
            bad += !(std::abs(c[i * n + j] - s) <= 1.1 * (k + 2) * std::ldexp(1.0, -24) * mag);
          }
        }
        EXPECT_EQ(bad, 0) << cpu::PackedGemmKernelName(kernel) << " m=" << m << " n=" << n << " k=" << k;
        results.push_back(std::move(c));
      }
      for (size_t i = 1; i < kernels.size(); ++i) {
        if (kernels[i] == PackedGemmKernel::kAvx512 && kernels[i - 1] == PackedGemmKernel::kAvx2) {
          EXPECT_EQ(results[i], results[i - 1]) << "avx512 vs avx2, m=" << m << " n=" << n << " k=" << k;
        }
      }
    }
  }
}

TEST_P(BackendOps, GemmPreparedAcceptsTheBaseHandle) {
  // A handle made by the base Backend (what a backend without its own packing returns) works on
  // any backend: GemmPrepared falls back to Gemm on the plain W.
  const int n = 40, k = 70;
  const auto w = Random(static_cast<size_t>(n) * k, 9);
  const std::shared_ptr<const PreparedWeight> pw = be_->Backend::PrepareWeight(w.data(), n, k);
  EXPECT_EQ(pw->weight(), w.data());
  CheckPreparedGemm(*be_, *pw, w, 77, n, k, 0.0f, "base handle");
  CheckPreparedGemm(*be_, *pw, w, 9, n, k, 0.5f, "base handle");
}

TEST_P(BackendOps, BiasActivationAndGlu) {
  const int m = 70, n = 45, ld = 50;
  auto bias = Random(2 * n, 4);
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kSilu, Activation::kGelu}) {
    auto y = Random(static_cast<size_t>(m) * ld, 5, 4.0f);
    std::vector<double> want(y.begin(), y.end());
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double v = (double(y[i * ld + j]) + bias[j]) * 1.5;
        if (act == Activation::kRelu) v = std::max(v, 0.0);
        if (act == Activation::kSilu) v = v * Sigmoid(v);
        if (act == Activation::kGelu) v = Gelu(v);
        want[i * ld + j] = v;
      }
    }
    be_->BiasActivation(y.data(), m, n, ld, bias.data(), act, 1.5f);
    EXPECT_LT(MaxAbsDiff(y, want), 1e-5) << static_cast<int>(act);
  }
  auto x = Random(static_cast<size_t>(m) * 2 * n, 6, 3.0f);
  std::vector<float> y(static_cast<size_t>(m) * n);
  std::vector<double> want(y.size());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      want[i * n + j] =
          (double(x[i * 2 * n + j]) + bias[j]) * Sigmoid(double(x[i * 2 * n + n + j]) + bias[n + j]);
  be_->BiasGlu(x.data(), m, n, 2 * n, bias.data(), y.data(), n);
  EXPECT_LT(MaxAbsDiff(y, want), 1e-5);
}

TEST_P(BackendOps, FastExpIsAccurate) {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.01371f) {
    const double e = std::exp(double(x));
    worst = std::max(worst, std::abs(cpu::FastExp(x) - e) / e);
  }
  EXPECT_LT(worst, 3e-7);
}

std::vector<double> LayerNormRef(const float* x, int n, const float* g, const float* b, double eps) {
  double mean = 0, var = 0;
  for (int j = 0; j < n; ++j) mean += x[j];
  mean /= n;
  for (int j = 0; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= n;
  std::vector<double> y(n);
  for (int j = 0; j < n; ++j) y[j] = (x[j] - mean) / std::sqrt(var + eps) * g[j] + b[j];
  return y;
}

TEST_P(BackendOps, LayerNormAndResidual) {
  const int m = 33, n = 77;
  auto x = Random(static_cast<size_t>(m) * n, 7, 3.0f);
  for (float& v : x) v += 5.0f;  // a large mean, as in real activations
  auto g = Random(n, 8), b = Random(n, 9);
  LayerNormParams p{g.data(), b.data(), 1e-5f};
  std::vector<float> y(x.size());
  std::vector<double> want;
  for (int i = 0; i < m; ++i) {
    auto r = LayerNormRef(x.data() + i * n, n, g.data(), b.data(), 1e-5);
    want.insert(want.end(), r.begin(), r.end());
  }
  be_->LayerNorm(x.data(), m, n, n, p, y.data(), n);
  EXPECT_LT(MaxAbsDiff(y, want), 1e-5);

  auto delta = Random(static_cast<size_t>(m) * (n + 3), 10);
  auto bias = Random(n, 11);
  std::vector<float> xr = x;
  std::vector<double> xs(x.size());
  std::vector<double> ln;
  std::vector<float> tmp(n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      xs[i * n + j] = x[i * n + j] + 0.5 * (double(delta[i * (n + 3) + j]) + bias[j]);
      tmp[j] = static_cast<float>(xs[i * n + j]);
    }
    auto r = LayerNormRef(tmp.data(), n, g.data(), b.data(), 1e-5);
    ln.insert(ln.end(), r.begin(), r.end());
  }
  std::vector<float> out(x.size());
  be_->AddResidual(xr.data(), delta.data(), n + 3, bias.data(), 0.5f, m, n, &p, out.data());
  EXPECT_LT(MaxAbsDiff(xr, xs), 1e-5);
  EXPECT_LT(MaxAbsDiff(out, ln), 1e-5);
  // In place (y == x), as norm_final is applied.
  std::vector<float> xi = x;
  be_->AddResidual(xi.data(), delta.data(), n + 3, bias.data(), 0.5f, m, n, &p, xi.data());
  EXPECT_LT(MaxAbsDiff(xi, ln), 1e-5);
}

TEST_P(BackendOps, CmvnPositionalEmbedding) {
  const int m = 5, n = 8;
  auto x = Random(m * n, 12), mean = Random(n, 13), istd = Random(n, 14);
  std::vector<float> y(x.size());
  std::vector<double> want(x.size());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) want[i * n + j] = (double(x[i * n + j]) - mean[j]) * istd[j];
  be_->Cmvn(x.data(), m, n, mean.data(), istd.data(), y.data());
  EXPECT_LT(MaxAbsDiff(y, want), 1e-6);

  auto table = Random(10 * n, 15);
  std::vector<RowSegment> segs = {{0, 2}, {2, 3}};
  std::vector<float> z = x;
  std::vector<double> wz(x.begin(), x.end());
  for (const auto& s : segs)
    for (int t = 0; t < s.len; ++t)
      for (int j = 0; j < n; ++j) wz[(s.row + t) * n + j] += table[(4 + t) * n + j];
  be_->AddPositional(z.data(), n, segs, table.data(), 4);
  EXPECT_LT(MaxAbsDiff(z, wz), 1e-6);

  // Token embeddings; the second segment continues a prefix: its first row is position 4.
  auto emb = Random(6 * n, 16);
  std::vector<int> ids = {5, 0, 3, 3, 1};
  std::vector<RowSegment> emb_segs = {{0, 2, 0}, {2, 3, 4}};
  std::vector<float> e(m * n);
  std::vector<double> we(m * n);
  for (const auto& s : emb_segs)
    for (int t = 0; t < s.len; ++t)
      for (int j = 0; j < n; ++j)
        we[(s.row + t) * n + j] = double(emb[ids[s.row + t] * n + j]) * 2.0 + table[(s.pos + t) * n + j];
  be_->EmbedTokens(emb.data(), n, ids, emb_segs, 2.0f, table.data(), e.data());
  EXPECT_LT(MaxAbsDiff(e, we), 1e-6);
}

TEST_P(BackendOps, GatherRows) {
  const int cols = 7, ld_src = 11, ld_dst = 9;
  auto src = Random(6 * ld_src, 18);
  const std::vector<int> rows = {4, 0, 4, 5, 2};  // repeats allowed
  std::vector<float> dst(rows.size() * ld_dst, -7.0f);
  be_->GatherRows(dst.data(), ld_dst, src.data(), ld_src, rows, cols);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int j = 0; j < ld_dst; ++j) {
      EXPECT_EQ(dst[i * ld_dst + j], j < cols ? src[rows[i] * ld_src + j] : -7.0f) << i << "," << j;
    }
  }
}

TEST_P(BackendOps, LogSoftmaxAndTokenLogProbs) {
  const int m = 9, n = 301, ld = 310;
  auto x = Random(static_cast<size_t>(m) * ld, 17, 5.0f);
  std::vector<double> want(x.begin(), x.end());
  std::vector<int> targets;
  std::vector<double> tw;
  for (int i = 0; i < m; ++i) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < n; ++j) mx = std::max(mx, double(x[i * ld + j]));
    for (int j = 0; j < n; ++j) s += std::exp(x[i * ld + j] - mx);
    for (int j = 0; j < n; ++j) want[i * ld + j] = x[i * ld + j] - mx - std::log(s);
    targets.push_back((i * 37) % n);
    tw.push_back(want[i * ld + targets.back()]);
  }
  std::vector<int> rows(m);
  for (int i = 0; i < m; ++i) rows[i] = i;
  std::vector<float> out(m);
  be_->TokenLogProbs(x.data(), m, n, ld, rows, targets, out.data());
  EXPECT_LT(MaxAbsDiff(out, tw), 1e-5);
  // Several targets per row (a shared decoder prefix), rows in any order; out of range -> NaN.
  const std::vector<int> shared_rows = {3, 3, 0, 8, 3, m, 2};
  const std::vector<int> shared_targets = {1, 300, 7, 0, 42, 0, n};
  std::vector<float> shared(shared_rows.size());
  be_->TokenLogProbs(x.data(), m, n, ld, shared_rows, shared_targets, shared.data());
  for (size_t i = 0; i < shared.size(); ++i) {
    if (shared_rows[i] >= m || shared_targets[i] >= n) {
      EXPECT_TRUE(std::isnan(shared[i])) << i;
    } else {
      EXPECT_NEAR(shared[i], want[shared_rows[i] * ld + shared_targets[i]], 1e-5) << i;
    }
  }
  be_->LogSoftmax(x.data(), m, n, ld);
  EXPECT_LT(MaxAbsDiff(x, want), 1e-5);
}

// float64 attention straight from the definition, including masks.
struct AttnCase {
  int H = 2, dk = 8;
  AttentionMask mask = AttentionMask::kNone;
  int chunk = 0, left = -1;
  bool rel = false;
  // Query / key counts of the two packed sequences; more than 64 queries spans several of the CPU
  // backend's query blocks.
  int q0 = 7, kv0 = 9, q1 = 5, kv1 = 5;
};

void RunAttention(const Backend& be, Workspace& ws, const AttnCase& c) {
  const int D = c.H * c.dk;
  // Two sequences packed, keys in a separate buffer with an offset (as the decoder's memory).
  std::vector<AttentionSegment> segs(2);
  segs[0] = {0, c.q0, 3, c.kv0, 0, 0, 0};
  segs[1] = {c.q0, c.q1, 3 + c.kv0, c.kv1, 0, 0, 0};
  if (c.mask == AttentionMask::kCausal) segs[0].kv_len = c.q0;
  const int q_rows = c.q0 + c.q1, kv_rows = 3 + std::max(c.kv0, c.q0) + c.kv1, ldq = D + 4, ldk = 3 * D,
            ldo = D + 1;
  auto q = Random(static_cast<size_t>(q_rows) * ldq, 20);
  auto kv = Random(static_cast<size_t>(kv_rows) * ldk, 21);
  auto pos = Random(static_cast<size_t>(std::max({c.kv0, c.kv1, c.q0})) * D, 22);
  auto u = Random(D, 23), v = Random(D, 24);
  std::vector<float> out(static_cast<size_t>(q_rows) * ldo, 123.0f);
  AttentionParams p;
  p.num_heads = c.H;
  p.head_dim = c.dk;
  p.q = q.data();
  p.ldq = ldq;
  p.k = kv.data();
  p.v = kv.data() + D;
  p.ldk = p.ldv = ldk;
  p.out = out.data();
  p.ldo = ldo;
  p.mask = c.mask;
  p.chunk_size = c.chunk;
  p.left_chunks = c.left;
  if (c.rel) {
    p.pos = pos.data();
    p.ldp = D;
    p.pos_bias_u = u.data();
    p.pos_bias_v = v.data();
  }
  std::vector<double> want(out.begin(), out.end());
  for (const auto& s : segs) {
    for (int h = 0; h < c.H; ++h) {
      for (int i = 0; i < s.q_len; ++i) {
        std::vector<double> sc(s.kv_len);
        std::vector<bool> vis(s.kv_len);
        double mx = -1e300;
        for (int j = 0; j < s.kv_len; ++j) {
          const int qp = s.q_pos + i, kp = s.k_pos + j;
          bool ok = true;
          if (c.mask == AttentionMask::kCausal) ok = kp <= qp;
          if (c.mask == AttentionMask::kChunk) {
            const int start = c.left < 0 ? 0 : std::max((qp / c.chunk - c.left) * c.chunk, 0);
            ok = kp >= start && kp < (qp / c.chunk + 1) * c.chunk;
          }
          vis[j] = ok;
          double a = 0, bd = 0;
          for (int d = 0; d < c.dk; ++d) {
            const double qd = q[(s.q_row + i) * ldq + h * c.dk + d];
            const double kd = kv[(s.kv_row + j) * ldk + h * c.dk + d];
            a += (qd + (c.rel ? u[h * c.dk + d] : 0.0)) * kd;
            if (c.rel) bd += (qd + v[h * c.dk + d]) * pos[(s.pos_row + j) * D + h * c.dk + d];
          }
          sc[j] = (a + bd) / std::sqrt(double(c.dk));
          if (ok) mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int j = 0; j < s.kv_len; ++j) sum += vis[j] ? std::exp(sc[j] - mx) : 0.0;
        for (int d = 0; d < c.dk; ++d) {
          double o = 0;
          for (int j = 0; j < s.kv_len; ++j) {
            if (vis[j]) o += std::exp(sc[j] - mx) / sum * kv[(s.kv_row + j) * ldk + D + h * c.dk + d];
          }
          want[(s.q_row + i) * ldo + h * c.dk + d] = o;  // all-zero when nothing is visible
        }
      }
    }
  }
  be.Attention(p, segs, ws);
  EXPECT_LT(MaxAbsDiff(out, want), 2e-5) << "mask=" << int(c.mask) << " rel=" << c.rel;
}

TEST_P(BackendOps, AttentionMasksAndRelPos) {
  for (bool rel : {false, true}) {
    AttnCase c;
    c.rel = rel;
    RunAttention(*be_, *ws_, c);
    c.mask = AttentionMask::kCausal;
    RunAttention(*be_, *ws_, c);
    c.mask = AttentionMask::kChunk;
    c.chunk = 2;
    c.left = 1;
    RunAttention(*be_, *ws_, c);
    c.left = -1;
    c.chunk = 3;
    RunAttention(*be_, *ws_, c);
  }
}

TEST_P(BackendOps, AttentionLongSequencesSpanQueryBlocks) {
  for (bool rel : {false, true}) {
    AttnCase c;
    c.H = 3;
    c.rel = rel;
    c.q0 = 150;
    c.kv0 = 131;
    c.q1 = 65;
    c.kv1 = 70;
    RunAttention(*be_, *ws_, c);
    c.mask = AttentionMask::kCausal;
    RunAttention(*be_, *ws_, c);
    c.mask = AttentionMask::kChunk;
    c.chunk = 16;
    c.left = 2;
    RunAttention(*be_, *ws_, c);
  }
}

TEST_P(BackendOps, AttentionFullyMaskedRowsAreZero) {
  // k_pos far ahead of the queries with a causal mask: no query sees any key.
  const int H = 2, dk = 4, D = H * dk;
  auto q = Random(3 * D, 30), kv = Random(4 * 2 * D, 31);
  std::vector<float> out(3 * D, 7.0f);
  AttentionParams p;
  p.num_heads = H;
  p.head_dim = dk;
  p.q = q.data();
  p.ldq = D;
  p.k = kv.data();
  p.v = kv.data() + D;
  p.ldk = p.ldv = 2 * D;
  p.out = out.data();
  p.ldo = D;
  p.mask = AttentionMask::kCausal;
  std::vector<AttentionSegment> segs = {{0, 3, 0, 4, 0, 0, 10}};
  be_->Attention(p, segs, *ws_);
  for (float x : out) EXPECT_EQ(x, 0.0f);
  // No keys at all (an utterance with zero encoder frames): zeros too.
  std::fill(out.begin(), out.end(), 7.0f);
  segs = {{0, 3, 0, 0, 0, 0, 0}};
  p.mask = AttentionMask::kNone;
  be_->Attention(p, segs, *ws_);
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

TEST_P(BackendOps, DepthwiseConvCausalSymmetricHistoryNorm) {
  const int C = 12, K = 5;
  auto x = Random(static_cast<size_t>(13) * C, 40);
  auto w = Random(static_cast<size_t>(K) * C, 41), b = Random(C, 42), pad = Random(C, 43);
  auto hist = Random(static_cast<size_t>(K - 1) * C, 44);
  auto g = Random(C, 45), beta = Random(C, 46);
  LayerNormParams ln{g.data(), beta.data(), 1e-5f};
  struct Case {
    int left_pad;
    bool pad_value, history, norm;
    Activation act;
  };
  for (const Case& cs :
       {Case{K - 1, true, false, false, Activation::kSilu}, Case{K - 1, false, true, true, Activation::kSilu},
        Case{(K - 1) / 2, false, false, false, Activation::kNone},
        Case{(K - 1) / 2, false, false, true, Activation::kRelu}}) {
    DepthwiseConvParams p;
    p.channels = C;
    p.kernel = K;
    p.left_pad = cs.left_pad;
    p.weight = w.data();
    p.bias = b.data();
    p.pad_value = cs.pad_value ? pad.data() : nullptr;
    p.norm = cs.norm ? &ln : nullptr;
    p.activation = cs.act;
    std::vector<DepthwiseSegment> segs = {{0, 6, cs.history ? hist.data() : nullptr}, {6, 7, nullptr}};
    std::vector<float> y(x.size());
    std::vector<double> want(x.size());
    for (const auto& s : segs) {
      for (int t = 0; t < s.len; ++t) {
        std::vector<float> acc(C);
        for (int c = 0; c < C; ++c) {
          double a = b[c];
          for (int k = 0; k < K; ++k) {
            const int src = t - cs.left_pad + k;
            double in = 0;
            if (src < 0) {
              if (s.history)
                in = s.history[(cs.left_pad + src) * C + c];
              else if (p.pad_value)
                in = pad[c];
            } else if (src < s.len) {
              in = x[(s.row + src) * C + c];
            }
            a += double(w[k * C + c]) * in;
          }
          acc[c] = static_cast<float>(a);
        }
        std::vector<double> r(acc.begin(), acc.end());
        if (cs.norm) r = LayerNormRef(acc.data(), C, g.data(), beta.data(), 1e-5);
        for (int c = 0; c < C; ++c) {
          double v = r[c];
          if (cs.act == Activation::kRelu) v = std::max(v, 0.0);
          if (cs.act == Activation::kSilu) v = v * Sigmoid(v);
          want[(s.row + t) * C + c] = v;
        }
      }
    }
    be_->DepthwiseConv(p, x.data(), segs, y.data());
    EXPECT_LT(MaxAbsDiff(y, want), 1e-5) << "left_pad=" << cs.left_pad << " norm=" << cs.norm;
  }
}

TEST_P(BackendOps, Conv2dChannelsLast) {
  struct Case {
    int cin, cout, k, s, h, w;
  };
  for (const Case& c : {Case{1, 16, 3, 2, 41, 80}, Case{6, 10, 5, 3, 30, 19}, Case{4, 8, 3, 2, 3, 3}}) {
    auto x = Random(static_cast<size_t>(c.h) * c.w * c.cin, 50);
    auto w = Random(static_cast<size_t>(c.cout) * c.k * c.k * c.cin, 51);
    auto b = Random(c.cout, 52);
    const int ho = (c.h - c.k) / c.s + 1, wo = (c.w - c.k) / c.s + 1;
    std::vector<float> y(static_cast<size_t>(ho) * wo * c.cout);
    std::vector<double> want(y.size());
    for (int t = 0; t < ho; ++t)
      for (int f = 0; f < wo; ++f)
        for (int o = 0; o < c.cout; ++o) {
          double a = b[o];
          for (int kh = 0; kh < c.k; ++kh)
            for (int kw = 0; kw < c.k; ++kw)
              for (int i = 0; i < c.cin; ++i)
                a += double(w[((o * c.k + kh) * c.k + kw) * c.cin + i]) *
                     x[((t * c.s + kh) * c.w + f * c.s + kw) * c.cin + i];
          want[(t * wo + f) * c.cout + o] = std::max(a, 0.0);
        }
    Conv2dParams p;
    p.in_channels = c.cin;
    p.out_channels = c.cout;
    p.kernel = c.k;
    p.stride = c.s;
    p.weight = w.data();
    p.bias = b.data();
    p.activation = Activation::kRelu;
    be_->Conv2d(p, x.data(), c.h, c.w, y.data(), *ws_);
    EXPECT_LT(MaxAbsDiff(y, want), 2e-5) << c.cin << "x" << c.k;
    // The same through the weight prepared as a (cout × k·k·cin) GEMM matrix.
    const auto pw = be_->PrepareWeight(w.data(), c.cout, c.k * c.k * c.cin);
    p.prepared_weight = pw.get();
    std::fill(y.begin(), y.end(), -1.0f);
    be_->Conv2d(p, x.data(), c.h, c.w, y.data(), *ws_);
    EXPECT_LT(MaxAbsDiff(y, want), 2e-5) << c.cin << "x" << c.k << " prepared";
  }
}

TEST_P(BackendOps, WorkspaceReusesBuffers) {
  Workspace ws(*be_);
  float* a = ws.Floats(0, 1000);
  float* b = ws.Floats(0, 800);  // smaller: same buffer
  EXPECT_EQ(a, b);
  ws.Floats(1, 10);
  EXPECT_GE(ws.bytes_reserved(), 1000 * sizeof(float));
}

INSTANTIATE_TEST_SUITE_P(Threads, BackendOps, ::testing::Values(1, 2));

TEST(BackendOptionsTest, Validate) {
  BackendOptions o;
  o.num_threads = 0;
  EXPECT_FALSE(CreateBackend(o).ok());
  o.num_threads = 300;
  EXPECT_FALSE(CreateBackend(o).ok());
  o.num_threads = 2;
  auto b = CreateBackend(o);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->device(), DeviceType::kCpu);
  EXPECT_EQ((*b)->num_threads(), 2);
}

}  // namespace
}  // namespace u2

namespace u2 {
namespace {

// --precision: names round-trip; fp16/bf16 operands are a CUDA mode, refused on the CPU backend.
TEST(BackendOptionsPrecision, ParsedAndCheckedAgainstTheDevice) {
  for (Precision p : {Precision::kFp32, Precision::kFp16, Precision::kBf16}) {
    auto parsed = ParsePrecision(PrecisionName(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_FALSE(ParsePrecision("fp8").ok());
  BackendOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.precision = Precision::kFp16;
  const Status cpu = o.Validate();
  EXPECT_EQ(cpu.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cpu.message().find("CUDA"), std::string::npos);
  EXPECT_FALSE(CreateBackend(o).ok());
  o.device = DeviceType::kCuda;
  EXPECT_TRUE(o.Validate().ok());
}

}  // namespace
}  // namespace u2
