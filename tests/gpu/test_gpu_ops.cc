// Every operator of the CUDA backend against the CPU backend (the reference semantics) on random
// inputs. Outputs are poisoned with NaN before each run, so an element left unwritten fails.
// Tolerances: fp32 (TF32 off) max |gpu − cpu| / max |cpu| < 1e-5; GEMM with fp16/bf16 operands
// (CudaGemmMath::kFp16/kBf16) < 1e-2, TF32 < 5e-3.
#include <gtest/gtest.h>

#include <thread>

#include "gpu_test_util.h"
#include "u2/backend/cpu/cpu_backend.h"

namespace u2 {
namespace {

using gpu_testing::Mirror;
using gpu_testing::Nans;
using gpu_testing::Random;
using gpu_testing::RelErr;

constexpr double kFp32Tol = 1e-5;

class GpuOps : public ::testing::Test {
 protected:
  void SetUp() override {
    cpu_ = CreateCpuBackend(1);
    gpu_ = gpu_testing::MakeGpu();
    ASSERT_TRUE(gpu_);
    cpu_ws_ = std::make_unique<Workspace>(*cpu_);
    gpu_ws_ = std::make_unique<Workspace>(*gpu_);
  }
  void TearDown() override {
    if (gpu_) {
      const Status st = CudaSynchronize(*gpu_);
      EXPECT_TRUE(st.ok()) << st.ToString();
    }
  }
  Mirror M(std::vector<float> h) { return Mirror(*gpu_, std::move(h)); }

  std::unique_ptr<Backend> cpu_;
  std::shared_ptr<const Backend> gpu_;
  std::unique_ptr<Workspace> cpu_ws_, gpu_ws_;
};

TEST_F(GpuOps, GemmAllTransposesAndShapes) {
  struct Shape {
    int m, n, k;
  };
  for (Shape s : {Shape{37, 29, 53}, Shape{300, 257, 511}, Shape{1, 5000, 256}, Shape{1000, 64, 64}}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        const int lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 5, ldc = s.n + 2;
        auto a = M(Random(size_t(ta ? s.k : s.m) * lda, 1));
        auto b = M(Random(size_t(tb ? s.n : s.k) * ldb, 2));
        auto c = M(Random(size_t(s.m) * ldc, 3));
        cpu_->Gemm(ta, tb, s.m, s.n, s.k, 0.7f, a.h(), lda, b.h(), ldb, 0.3f, c.h(), ldc);
        gpu_->Gemm(ta, tb, s.m, s.n, s.k, 0.7f, a.d(), lda, b.d(), ldb, 0.3f, c.d(), ldc);
        EXPECT_LT(RelErr(c.Download(), c.host), kFp32Tol)
            << s.m << "x" << s.n << "x" << s.k << " ta=" << ta << " tb=" << tb;
      }
    }
  }
  // beta = 0 ignores NaN in C; k = 0 gives beta·C.
  auto a = M(Random(6, 4));
  auto b = M(Random(6, 5));
  auto c = M(Nans(4));
  cpu_->Gemm(false, false, 2, 2, 3, 1.0f, a.h(), 3, b.h(), 2, 0.0f, c.h(), 2);
  gpu_->Gemm(false, false, 2, 2, 3, 1.0f, a.d(), 3, b.d(), 2, 0.0f, c.d(), 2);
  EXPECT_LT(RelErr(c.Download(), c.host), kFp32Tol);
  auto z = M(std::vector<float>(6, 2.0f));
  gpu_->Gemm(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.5f, z.d(), 3);
  for (float v : z.Download()) EXPECT_EQ(v, 1.0f);
}

TEST_F(GpuOps, GemmReducedPrecisionModes) {
  const int m = 257, n = 300, k = 512;
  auto a_h = Random(size_t(m) * k, 11);
  auto b_h = Random(size_t(n) * k, 12);
  std::vector<float> ref(size_t(m) * n);
  cpu_->Gemm(false, true, m, n, k, 1.0f, a_h.data(), k, b_h.data(), k, 0.0f, ref.data(), n);
  struct Case {
    CudaGemmMath math;
    double tol;
  };
  for (Case c :
       {Case{CudaGemmMath::kTf32, 5e-3}, Case{CudaGemmMath::kFp16, 1e-2}, Case{CudaGemmMath::kBf16, 1e-2}}) {
    auto g = gpu_testing::MakeGpu(c.math);
    ASSERT_TRUE(g);
    Mirror a(*g, a_h), b(*g, b_h), y(*g, Nans(size_t(m) * n));
    g->Gemm(false, true, m, n, k, 1.0f, a.d(), k, b.d(), k, 0.0f, y.d(), n);
    const double e = RelErr(y.Download(), ref);
    EXPECT_LT(e, c.tol) << CudaGemmMathName(c.math);
    EXPECT_GT(e, 0.0) << CudaGemmMathName(c.math) << ": the reduced-precision mode made no difference";
    std::printf("GEMM %s: max rel err %.3g\n", CudaGemmMathName(c.math), e);
    EXPECT_TRUE(CudaSynchronize(*g).ok());
  }
}

TEST_F(GpuOps, BiasActivationAndGlu) {
  const int m = 70, n = 45, ld = 50;
  auto bias = M(Random(2 * n, 4));
  for (Activation act : {Activation::kNone, Activation::kRelu, Activation::kSilu}) {
    for (float scale : {1.0f, 2.5f}) {
      for (bool with_bias : {true, false}) {
        auto y = M(Random(size_t(m) * ld, 5, 4.0f));
        cpu_->BiasActivation(y.h(), m, n, ld, with_bias ? bias.h() : nullptr, act, scale);
        gpu_->BiasActivation(y.d(), m, n, ld, with_bias ? bias.d() : nullptr, act, scale);
        EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol) << int(act) << " " << scale << " " << with_bias;
      }
    }
  }
  for (bool with_bias : {true, false}) {
    auto x = M(Random(size_t(m) * (2 * n + 3), 6, 3.0f));
    auto y = M(Nans(size_t(m) * (n + 1)));
    cpu_->BiasGlu(x.h(), m, n, 2 * n + 3, with_bias ? bias.h() : nullptr, y.h(), n + 1);
    gpu_->BiasGlu(x.d(), m, n, 2 * n + 3, with_bias ? bias.d() : nullptr, y.d(), n + 1);
    // Column n of each row is padding neither writes: NaN in both.
    EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol);
  }
}

TEST_F(GpuOps, LayerNormAndResidual) {
  for (int n : {80, 256, 1000}) {
    const int m = 33;
    auto g = M(Random(n, 7, 0.5f));
    auto b = M(Random(n, 8, 0.5f));
    for (int variant = 0; variant < 3; ++variant) {
      LayerNormParams pc{g.h(), variant == 1 ? nullptr : b.h(), 1e-5f};
      LayerNormParams pg{g.d(), variant == 1 ? nullptr : b.d(), 1e-5f};
      if (variant == 2) pc.gamma = pg.gamma = nullptr;
      auto x = M(Random(size_t(m) * (n + 4), 9, 3.0f));
      auto y = M(Nans(size_t(m) * (n + 2)));
      cpu_->LayerNorm(x.h(), m, n, n + 4, pc, y.h(), n + 2);
      gpu_->LayerNorm(x.d(), m, n, n + 4, pg, y.d(), n + 2);
      EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol) << "n=" << n << " variant " << variant;
      // In place.
      cpu_->LayerNorm(x.h(), m, n, n + 4, pc, x.h(), n + 4);
      gpu_->LayerNorm(x.d(), m, n, n + 4, pg, x.d(), n + 4);
      EXPECT_LT(RelErr(x.Download(), x.host), kFp32Tol) << "in place n=" << n;
    }
    // AddResidual: bias or not, norm to another buffer, norm in place, no norm.
    LayerNormParams pc{g.h(), b.h(), 1e-12f}, pg{g.d(), b.d(), 1e-12f};
    for (int mode = 0; mode < 3; ++mode) {
      for (bool with_bias : {true, false}) {
        auto x = M(Random(size_t(m) * n, 10));
        auto d = M(Random(size_t(m) * (n + 3), 11));
        auto y = M(Nans(size_t(m) * n));
        const bool norm = mode < 2;
        float* yc = mode == 1 ? x.h() : y.h();
        float* yg = mode == 1 ? x.d() : y.d();
        cpu_->AddResidual(x.h(), d.h(), n + 3, with_bias ? b.h() : nullptr, 0.5f, m, n, norm ? &pc : nullptr,
                          yc);
        gpu_->AddResidual(x.d(), d.d(), n + 3, with_bias ? b.d() : nullptr, 0.5f, m, n, norm ? &pg : nullptr,
                          yg);
        EXPECT_LT(RelErr(x.Download(), x.host), kFp32Tol) << "x mode " << mode;
        if (mode == 0) {
          EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol) << "y";
        }
      }
    }
  }
}

TEST_F(GpuOps, CmvnPositionalAndEmbedding) {
  const int m = 41, n = 80;
  auto x = M(Random(size_t(m) * n, 12, 5.0f));
  auto mean = M(Random(n, 13));
  auto istd = M(Random(n, 14));
  auto y = M(Nans(size_t(m) * n));
  cpu_->Cmvn(x.h(), m, n, mean.h(), istd.h(), y.h());
  gpu_->Cmvn(x.d(), m, n, mean.d(), istd.d(), y.d());
  EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol);

  const int D = 64;
  std::vector<RowSegment> segs = {{0, 10}, {12, 25}, {37, 0}, {37, 4, 6}};  // the last starts at position 6
  auto table = M(Random(size_t(40) * D, 15));
  auto z = M(Random(size_t(m) * D, 16));
  cpu_->AddPositional(z.h(), D, segs, table.h(), 3);
  gpu_->AddPositional(z.d(), D, segs, table.d(), 3);
  EXPECT_LT(RelErr(z.Download(), z.host), kFp32Tol);

  std::vector<int> ids(m);
  for (int r = 0; r < m; ++r) ids[r] = (r * 7) % 30;
  auto emb = M(Random(size_t(30) * D, 17));
  auto out = M(Nans(size_t(m) * D));
  cpu_->EmbedTokens(emb.h(), D, ids, segs, 8.0f, table.h(), out.h());
  gpu_->EmbedTokens(emb.d(), D, ids, segs, 8.0f, table.d(), out.d());
  EXPECT_LT(RelErr(out.Download(), out.host), kFp32Tol);  // rows 10, 11 are in no segment: NaN in both
}

struct AttnCase {
  const char* name;
  int heads, dk;
  AttentionMask mask;
  int chunk, left;
  bool rel;
  bool cross;
};

TEST_F(GpuOps, AttentionMatchesCpu) {
  const AttnCase cases[] = {
      {"full", 4, 64, AttentionMask::kNone, 0, -1, false, false},
      {"relpos", 4, 64, AttentionMask::kNone, 0, -1, true, false},
      {"relpos_chunk4_left1", 4, 64, AttentionMask::kChunk, 4, 1, true, false},
      {"relpos_chunk16_all", 8, 64, AttentionMask::kChunk, 16, -1, true, false},
      {"causal", 4, 64, AttentionMask::kCausal, 0, -1, false, false},
      {"cross", 4, 64, AttentionMask::kNone, 0, -1, false, true},
      {"dk32", 8, 32, AttentionMask::kNone, 0, -1, true, false},
      {"dk40_odd", 2, 40, AttentionMask::kCausal, 0, -1, false, false},
      {"dk96", 2, 96, AttentionMask::kChunk, 8, 2, true, false},
      {"dk128", 2, 128, AttentionMask::kNone, 0, -1, false, true},
  };
  for (const AttnCase& c : cases) {
    SCOPED_TRACE(c.name);
    const int D = c.heads * c.dk;
    // Lengths around the 32-query / 32-key tiles, one empty key segment.
    std::vector<int> qlens = {1, 31, 33, 70, 5};
    std::vector<int> kvlens = c.cross ? std::vector<int>{50, 7, 33, 0, 90} : qlens;
    std::vector<AttentionSegment> segs;
    int qrow = 0, kvrow = 0, max_kv = 0;
    for (size_t i = 0; i < qlens.size(); ++i) {
      AttentionSegment s;
      s.q_row = qrow;
      s.q_len = qlens[i];
      s.kv_row = c.cross && i == 4 ? 0 : kvrow;  // the last cross segment shares rows with the first
      s.kv_len = kvlens[i];
      s.pos_row = static_cast<int>(i);  // per-segment offset into the positional rows
      if (c.mask == AttentionMask::kChunk && i == 2) s.q_pos = s.k_pos = 3;
      segs.push_back(s);
      qrow += qlens[i] + 1;  // a gap row between segments
      if (!(c.cross && i == 4)) kvrow += kvlens[i];
      max_kv = std::max(max_kv, kvlens[i]);
    }
    const int ld = 3 * D + 8;  // q|k|v packed with padding, as the model does
    auto qkv = M(Random(size_t(std::max(qrow, kvrow) + 1) * ld, 20));
    auto pos = M(Random(size_t(max_kv + 8) * D, 21));
    auto u = M(Random(D, 22, 0.3f));
    auto v = M(Random(D, 23, 0.3f));
    auto out = M(Nans(size_t(qrow) * (D + 2)));
    auto make = [&](bool dev) {
      AttentionParams p;
      p.num_heads = c.heads;
      p.head_dim = c.dk;
      float* base = dev ? qkv.d() : qkv.h();
      p.q = base;
      p.k = base + D;
      p.v = base + 2 * D;
      p.ldq = p.ldk = p.ldv = ld;
      if (c.rel) {
        p.pos = dev ? pos.d() : pos.h();
        p.ldp = D;
        p.pos_bias_u = dev ? u.d() : u.h();
        p.pos_bias_v = dev ? v.d() : v.h();
      }
      p.out = dev ? out.d() : out.h();
      p.ldo = D + 2;
      p.mask = c.mask;
      p.chunk_size = c.chunk;
      p.left_chunks = c.left;
      return p;
    };
    cpu_->Attention(make(false), segs, *cpu_ws_);
    gpu_->Attention(make(true), segs, *gpu_ws_);
    EXPECT_LT(RelErr(out.Download(), out.host), kFp32Tol);
  }
}

TEST_F(GpuOps, DepthwiseConvVariants) {
  const int C = 256, K = 15;
  auto x = M(Random(size_t(100) * C, 30));
  auto w = M(Random(size_t(K) * C, 31, 0.3f));
  auto bias = M(Random(C, 32));
  auto g = M(Random(C, 33, 0.5f));
  auto b = M(Random(C, 34, 0.5f));
  auto pad = M(Random(C, 35));
  auto hist = M(Random(size_t(K - 1) * C, 36));
  LayerNormParams nc{g.h(), b.h(), 1e-5f}, ng{g.d(), b.d(), 1e-5f};
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant);
    const bool causal = variant % 2 == 0;
    DepthwiseConvParams pc;
    pc.channels = C;
    pc.kernel = K;
    pc.left_pad = causal ? K - 1 : (K - 1) / 2;
    pc.activation = variant < 2 ? Activation::kSilu : Activation::kNone;
    DepthwiseConvParams pg = pc;
    pc.weight = w.h();
    pg.weight = w.d();
    if (variant != 3) {
      pc.bias = bias.h();
      pg.bias = bias.d();
    }
    if (variant < 2) {
      pc.norm = &nc;
      pg.norm = &ng;
    }
    if (variant == 1) {
      pc.pad_value = pad.h();
      pg.pad_value = pad.d();
    }
    std::vector<DepthwiseSegment> sc = {{0, 40, nullptr}, {41, 3, nullptr}, {50, 50, nullptr}};
    std::vector<DepthwiseSegment> sg = sc;
    if (causal) {
      sc[1].history = hist.h();
      sg[1].history = hist.d();
    }
    auto y = M(Nans(size_t(100) * C));
    cpu_->DepthwiseConv(pc, x.h(), sc, y.h());
    gpu_->DepthwiseConv(pg, x.d(), sg, y.d());
    EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol);
  }
}

TEST_F(GpuOps, Conv2dSubsampling) {
  struct Case {
    int cin, cout, kernel, stride, h, w;
    Activation act;
  };
  for (Case c : {Case{1, 16, 3, 2, 101, 80, Activation::kRelu}, Case{16, 32, 3, 2, 50, 39, Activation::kRelu},
                 Case{8, 8, 5, 3, 40, 30, Activation::kNone}}) {
    const int ho = (c.h - c.kernel) / c.stride + 1, wo = (c.w - c.kernel) / c.stride + 1;
    auto x = M(Random(size_t(c.h) * c.w * c.cin, 40));
    auto w = M(Random(size_t(c.cout) * c.kernel * c.kernel * c.cin, 41, 0.3f));
    auto b = M(Random(c.cout, 42));
    auto y = M(Nans(size_t(ho) * wo * c.cout));
    Conv2dParams pc;
    pc.in_channels = c.cin;
    pc.out_channels = c.cout;
    pc.kernel = c.kernel;
    pc.stride = c.stride;
    pc.activation = c.act;
    Conv2dParams pg = pc;
    pc.weight = w.h();
    pc.bias = b.h();
    pg.weight = w.d();
    pg.bias = b.d();
    cpu_->Conv2d(pc, x.h(), c.h, c.w, y.h(), *cpu_ws_);
    gpu_->Conv2d(pg, x.d(), c.h, c.w, y.d(), *gpu_ws_);
    EXPECT_LT(RelErr(y.Download(), y.host), kFp32Tol) << c.cin << "->" << c.cout;
  }
}

TEST_F(GpuOps, LogSoftmaxAndTokenLogProbs) {
  const int m = 37, n = 5000, ld = 5003;
  auto x = M(Random(size_t(m) * ld, 50, 4.0f));
  std::vector<int> targets(m);
  for (int i = 0; i < m; ++i) targets[i] = (i * 131) % n;
  std::vector<int> rows(m);
  for (int i = 0; i < m; ++i) rows[i] = (i * 5) % m;
  rows[3] = rows[4] = 11;  // two targets of one row (shared decoder prefix)
  std::vector<float> tc(m), tg(m, std::nanf(""));
  cpu_->TokenLogProbs(x.h(), m, n, ld, rows, targets, tc.data());
  gpu_->TokenLogProbs(x.d(), m, n, ld, rows, targets, tg.data());
  EXPECT_LT(RelErr(tg, tc), kFp32Tol);
  const std::vector<int> bad_rows = {0, m}, bad_targets = {n, 0};  // out of range: NaN, no fault
  std::vector<float> bad(2, 0.0f);
  gpu_->TokenLogProbs(x.d(), m, n, ld, bad_rows, bad_targets, bad.data());
  EXPECT_TRUE(std::isnan(bad[0]) && std::isnan(bad[1]));
  cpu_->LogSoftmax(x.h(), m, n, ld);
  gpu_->LogSoftmax(x.d(), m, n, ld);
  EXPECT_LT(RelErr(x.Download(), x.host), kFp32Tol);
}

TEST_F(GpuOps, WorkspaceAndCopies) {
  Workspace ws(*gpu_);
  float* a = ws.Floats(0, 1000);
  float* b = ws.Floats(0, 500);
  EXPECT_EQ(a, b);  // reused, not reallocated
  auto src = Random(1000, 60);
  gpu_->CopyFromHost(a, src.data(), 1000 * sizeof(float));
  float* c = ws.Floats(1, 1000);
  gpu_->Copy(c, a, 1000 * sizeof(float));
  EXPECT_EQ(gpu_->DownloadRows(c, 10, 100, 100), src);
  const auto strided = gpu_->DownloadRows(c + 3, 4, 7, 100);
  for (int r = 0; r < 4; ++r) {
    for (int j = 0; j < 7; ++j) EXPECT_EQ(strided[r * 7 + j], src[r * 100 + 3 + j]);
  }
  EXPECT_GE(ws.bytes_reserved(), 2000 * sizeof(float));
  // Strided device-to-device rows, as the CPU backend copies them.
  auto from = M(Random(size_t(9) * 40, 61));
  auto to = M(Random(size_t(9) * 50, 62));
  cpu_->CopyRows(to.h() + 5, 50, from.h() + 3, 40, 9, 30);
  gpu_->CopyRows(to.d() + 5, 50, from.d() + 3, 40, 9, 30);
  EXPECT_EQ(to.Download(), to.host);
  // Gathered rows (repeats allowed), as the decoder collects a shared prefix's K|V.
  const std::vector<int> rows = {8, 0, 8, 3};
  auto gathered = M(Random(size_t(4) * 50, 63));
  cpu_->GatherRows(gathered.h() + 2, 50, from.h() + 1, 40, rows, 33);
  gpu_->GatherRows(gathered.d() + 2, 50, from.d() + 1, 40, rows, 33);
  EXPECT_EQ(gathered.Download(), gathered.host);
  EXPECT_TRUE(gpu_->Synchronize().ok());
}

TEST_F(GpuOps, ConcurrentCallersOnOneBackend) {
  // Threads share one backend (one stream): each enqueues whole operators, so results match.
  const int m = 64, n = 256;
  auto g = M(Random(n, 70));
  auto b = M(Random(n, 71));
  LayerNormParams pg{g.d(), b.d(), 1e-5f};
  std::vector<std::vector<float>> inputs, outputs(4);
  for (int t = 0; t < 4; ++t) inputs.push_back(Random(size_t(m) * n, 72 + t));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Workspace ws(*gpu_);
      for (int rep = 0; rep < 20; ++rep) {
        float* x = ws.Floats(0, size_t(m) * n);
        gpu_->CopyFromHost(x, inputs[t].data(), inputs[t].size() * sizeof(float));
        gpu_->LayerNorm(x, m, n, n, pg, x, n);
        gpu_->Gemm(false, true, m, n, n, 1.0f, x, n, x, n, 0.0f, ws.Floats(1, size_t(m) * n), n);
        outputs[t] = gpu_->DownloadRows(ws.Floats(1, size_t(m) * n), m, n, n);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    std::vector<float> x = inputs[t], y(size_t(m) * n);
    LayerNormParams pc{g.h(), b.h(), 1e-5f};
    cpu_->LayerNorm(x.data(), m, n, n, pc, x.data(), n);
    cpu_->Gemm(false, true, m, n, n, 1.0f, x.data(), n, x.data(), n, 0.0f, y.data(), n);
    EXPECT_LT(RelErr(outputs[t], y), kFp32Tol) << "thread " << t;
  }
}

TEST(GpuErrors, FailureIsRecordedNotFatal) {
  auto gpu = gpu_testing::MakeGpu();
  ASSERT_TRUE(gpu);
  EXPECT_TRUE(IsCudaBackend(*gpu));
  EXPECT_TRUE(CudaSynchronize(*gpu).ok());
  Workspace ws(*gpu);
  Mirror q(*gpu, Random(size_t(4) * 512, 80));
  // head_dim 256 is beyond the attention kernel: the backend records an error instead of aborting.
  AttentionParams p;
  p.num_heads = 2;
  p.head_dim = 256;
  p.q = p.k = p.v = q.d();
  p.ldq = p.ldk = p.ldv = 512;
  p.out = q.d();
  p.ldo = 512;
  std::vector<AttentionSegment> segs = {{0, 4, 0, 4, 0, 0, 0}};
  gpu->Attention(p, segs, ws);
  const Status st = CudaSynchronize(*gpu);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("head_dim"), std::string::npos) << st.ToString();
  // Sticky: later work is skipped and host copies come back as NaN rather than stale data.
  std::vector<float> back(4, 1.0f);
  gpu->CopyToHost(back.data(), q.d(), back.size() * sizeof(float));
  for (float v : back) EXPECT_TRUE(std::isnan(v));
  EXPECT_FALSE(CudaSynchronize(*gpu).ok());
  // A fresh backend is unaffected.
  auto other = gpu_testing::MakeGpu();
  ASSERT_TRUE(other);
  EXPECT_TRUE(CudaSynchronize(*other).ok());
}

TEST(GpuErrors, CreateBackendSelectsCuda) {
  BackendOptions o;
  o.device = DeviceType::kCuda;
  auto b = CreateBackend(o);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*b)->device(), DeviceType::kCuda);
  EXPECT_NE((*b)->Name().find("cuda"), std::string::npos);
  CudaBackendOptions bad;
  bad.device_id = 200;
  EXPECT_FALSE(CreateCudaBackend(bad).ok());
  EXPECT_FALSE(ParseCudaGemmMath("fp8").ok());
  EXPECT_EQ(*ParseCudaGemmMath("fp16"), CudaGemmMath::kFp16);
}

}  // namespace
}  // namespace u2
