// u2bench: the u2serve side of the offline CPU benchmark (bench/run_cpu_bench.py drives it).
//
//   u2bench sgemm  --threads 2 [--shapes M,N,K;...]      cblas_sgemm GFLOP/s at the given shapes
//   u2bench serve  --model-dir DIR --threads 2 [--precision int8] --clip 5=a.wav --clip 10=b.wav
//
// `serve` loads the model once and answers one JSON request per stdin line with one JSON line on
// stdout, so that bench/run_cpu_bench.py can interleave the peers run by run:
//   {"cmd": "info"}                      -> model, threads, BLAS configuration
//   {"cmd": "encoder", "clip": "10"}     -> {"time_s"}: AsrModel::Encode on precomputed features
//                                            (CMVN, subsampling, Conformer, CTC log-softmax)
//   {"cmd": "full", "clip": "10"}        -> {"time_s", "stages_s", "best", "nbest_lengths", ...}:
//       waveform -> Fbank -> Encode -> CtcPrefixBeamSearch(beam 10) -> ScoreHypotheses ->
//       RankByAttentionRescoring, the order recognizer.cc runs them in, timed per stage
//   {"cmd": "recognize", "clip": "10"}   -> {"time_s", "best"}: Recognizer::Recognize end to end
//                                            (only when the build has recognizer.cc)
//   {"cmd": "quit"}
// The decoding weights are the model's (model.json "decoding"), beam 10, full context.
// Progress and errors go to stderr.
#include <cblas.h>

#include "u2/audio/audio.h"
#include "u2/decode/ctc_search.h"
#include "u2/decode/rescoring.h"
#include "u2/frontend/fbank.h"
#include "u2/model/asr_model.h"
#include "u2/model/model_config.h"
#ifdef U2BENCH_HAVE_RECOGNIZER
#include "u2/engine/recognizer.h"
#endif

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct GemmShape {
  int m, n, k;
};

std::vector<GemmShape> ParseShapes(const std::string& text) {
  std::vector<GemmShape> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ';')) {
    GemmShape s{};
    if (std::sscanf(item.c_str(), "%d,%d,%d", &s.m, &s.n, &s.k) == 3 && s.m > 0 && s.n > 0 && s.k > 0)
      out.push_back(s);
  }
  return out;
}

// C[m,n] = A[m,k] * W[n,k]^T: the layout of a Linear layer over a row-major activation matrix.
// Repeats until `min_seconds` have passed; returns the median GFLOP/s of the repetitions.
double MeasureSgemm(const GemmShape& s, double min_seconds) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> a(static_cast<size_t>(s.m) * s.k), w(static_cast<size_t>(s.n) * s.k),
      c(static_cast<size_t>(s.m) * s.n);
  for (auto& x : a) x = dist(rng);
  for (auto& x : w) x = dist(rng);
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1.f, a.data(), s.k, w.data(), s.k,
                0.f, c.data(), s.n);
  };
  for (int i = 0; i < 3; ++i) run();
  std::vector<double> rates;
  const auto start = Clock::now();
  while (Seconds(start, Clock::now()) < min_seconds || rates.size() < 5) {
    const auto t0 = Clock::now();
    run();
    const double dt = Seconds(t0, Clock::now());
    rates.push_back(2.0 * s.m * s.n * s.k / dt / 1e9);
  }
  return Median(rates);
}

int RunSgemm(int threads, const std::string& shapes_text, double min_seconds) {
  openblas_set_num_threads(threads);
  std::vector<GemmShape> shapes = ParseShapes(shapes_text);
  if (shapes.empty()) {
    std::fprintf(stderr, "u2bench sgemm: no valid shapes in '%s'\n", shapes_text.c_str());
    return 2;
  }
  json rows = json::array();
  for (const auto& s : shapes) {
    const double gflops = MeasureSgemm(s, min_seconds);
    std::fprintf(stderr, "  sgemm %5d x %5d x %5d  %7.1f GFLOP/s\n", s.m, s.n, s.k, gflops);
    rows.push_back({{"m", s.m}, {"n", s.n}, {"k", s.k}, {"gflops", gflops}});
  }
  json out = {{"mode", "sgemm"},
              {"threads", threads},
              {"openblas_config", openblas_get_config()},
              {"openblas_core", openblas_get_corename()},
              {"shapes", rows}};
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}

struct Clip {
  std::vector<float> samples;
  u2::FeatureMatrix feats;
};

class ServeSession {
 public:
  u2::Status Init(const std::string& model_dir, int threads, u2::Precision precision,
                  const std::vector<std::string>& clips) {
    threads_ = threads;
    precision_ = precision;
    u2::ModelLoadOptions load;
    load.num_threads = threads;
    load.precision = precision;
    U2_ASSIGN_OR_RETURN(model_, u2::AsrModel::Load(model_dir, load));
    const u2::ModelConfig& mc = model_->config();
    u2::FbankConfig fc;
    fc.sample_rate = mc.frontend.sample_rate;
    fc.num_mel_bins = mc.frontend.num_mel_bins;
    fc.frame_length_ms = mc.frontend.frame_length_ms;
    fc.frame_shift_ms = mc.frontend.frame_shift_ms;
    U2_ASSIGN_OR_RETURN(fbank_, u2::Fbank::Create(fc));
    for (const std::string& spec : clips) {
      const size_t eq = spec.find('=');
      if (eq == std::string::npos) return u2::InvalidArgument("--clip wants NAME=PATH, got " + spec);
      U2_ASSIGN_OR_RETURN(u2::AudioBuffer audio, u2::ReadAudioFileAs(spec.substr(eq + 1), fc.sample_rate));
      Clip c;
      c.samples = std::move(audio.samples);
      U2_ASSIGN_OR_RETURN(c.feats, fbank_->Compute(c.samples));
      clips_[spec.substr(0, eq)] = std::move(c);
    }
#ifdef U2BENCH_HAVE_RECOGNIZER
    u2::RecognizerConfig rc;
    rc.model_dir = model_dir;
    rc.num_threads = threads;
    rc.precision = precision;
    rc.mode = u2::DecodingMode::kAttentionRescoring;
    rc.beam = 10;
    U2_ASSIGN_OR_RETURN(recognizer_, u2::Recognizer::Create(rc));
#endif
    return u2::Status::Ok();
  }

  json Handle(const json& req) {
    const std::string cmd = req.value("cmd", "");
    if (cmd == "info") return Info();
    const std::string name = req.value("clip", "");
    auto it = clips_.find(name);
    if (it == clips_.end()) return {{"error", "unknown clip '" + name + "'"}};
    if (cmd == "encoder") return Encoder(it->second);
    if (cmd == "full") return Full(it->second);
#ifdef U2BENCH_HAVE_RECOGNIZER
    if (cmd == "recognize") return Recognize(it->second);
#endif
    return {{"error", "unknown command '" + cmd + "'"}};
  }

 private:
  json Info() const {
    const u2::ModelConfig& mc = model_->config();
    return {{"peer", "u2serve"},
            {"precision", u2::PrecisionName(precision_)},
            {"threads", threads_},
            {"backend", model_->backend().Name()},
            {"openblas_config", openblas_get_config()},
            {"openblas_core", openblas_get_corename()},
            {"vocab_size", mc.vocab_size},
            {"ctc_weight", mc.decoding.ctc_weight},
            {"reverse_weight", mc.HasRightDecoder() ? mc.decoding.reverse_weight : 0.0f},
            {"has_recognizer", kHaveRecognizer}};
  }

  json Encoder(const Clip& c) const {
    const u2::FeatureView view{c.feats.data.data(), c.feats.num_frames, c.feats.dim};
    const auto t0 = Clock::now();
    auto enc = model_->Encode(std::span<const u2::FeatureView>(&view, 1));
    const double dt = Seconds(t0, Clock::now());
    if (!enc.ok()) return {{"error", enc.status().ToString()}};
    return {{"time_s", dt}, {"encoder_frames", enc->lengths[0]}};
  }

  json Full(const Clip& c) const {
    const u2::ModelConfig& mc = model_->config();
    const auto t0 = Clock::now();
    auto feats = fbank_->Compute(c.samples);
    if (!feats.ok()) return {{"error", feats.status().ToString()}};
    const auto t1 = Clock::now();
    const u2::FeatureView view{feats->data.data(), feats->num_frames, feats->dim};
    auto enc = model_->Encode(std::span<const u2::FeatureView>(&view, 1));
    if (!enc.ok()) return {{"error", enc.status().ToString()}};
    const auto t2 = Clock::now();
    u2::CtcPrefixBeamSearchConfig sc;
    sc.beam = 10;
    sc.first_beam = 10;
    sc.blank_id = mc.blank_id;
    u2::CtcPrefixBeamSearch search(sc);
    const u2::LogProbView logp{enc->ctc_log_probs[0].data(), enc->lengths[0], mc.vocab_size};
    if (auto st = search.Search(logp); !st.ok()) return {{"error", st.ToString()}};
    std::vector<u2::CtcHypothesis> nbest = search.NBest();
    const auto t3 = Clock::now();
    std::vector<std::vector<std::vector<int>>> hyps(1);
    for (const auto& h : nbest) hyps[0].push_back(h.tokens);
    auto scores = model_->ScoreHypotheses(*enc, hyps);
    if (!scores.ok()) return {{"error", scores.status().ToString()}};
    u2::RescoringWeights w;
    w.ctc_weight = mc.decoding.ctc_weight;
    w.reverse_weight = mc.HasRightDecoder() ? mc.decoding.reverse_weight : 0.0f;
    auto ranked = u2::RankByAttentionRescoring(nbest, (*scores)[0].l2r, (*scores)[0].r2l, w);
    if (!ranked.ok()) return {{"error", ranked.status().ToString()}};
    const auto t4 = Clock::now();
    std::vector<int> lengths;
    for (const auto& h : nbest) lengths.push_back(static_cast<int>(h.tokens.size()));
    return {{"time_s", Seconds(t0, t4)},
            {"stages_s",
             {{"fbank", Seconds(t0, t1)},
              {"encoder", Seconds(t1, t2)},
              {"search", Seconds(t2, t3)},
              {"rescoring", Seconds(t3, t4)}}},
            {"best", ranked->empty() ? std::vector<int>{} : nbest[ranked->front().index].tokens},
            {"nbest_lengths", lengths},
            {"encoder_frames", enc->lengths[0]}};
  }

#ifdef U2BENCH_HAVE_RECOGNIZER
  static constexpr bool kHaveRecognizer = true;
  json Recognize(const Clip& c) const {
    const u2::Waveform wave{c.samples, model_->config().frontend.sample_rate};
    const auto t0 = Clock::now();
    auto res = recognizer_->Recognize(std::span<const u2::Waveform>(&wave, 1));
    const double dt = Seconds(t0, Clock::now());
    if (!res.ok()) return {{"error", res.status().ToString()}};
    return {{"time_s", dt}, {"best", (*res)[0].best().tokens}};
  }
  std::unique_ptr<u2::Recognizer> recognizer_;
#else
  static constexpr bool kHaveRecognizer = false;
#endif

  int threads_ = 1;
  u2::Precision precision_ = u2::Precision::kFp32;
  std::shared_ptr<const u2::AsrModel> model_;
  std::unique_ptr<u2::Fbank> fbank_;
  std::map<std::string, Clip> clips_;
};

int RunServe(const std::string& model_dir, int threads, const std::string& precision_name,
             const std::vector<std::string>& clips) {
  auto precision = u2::ParsePrecision(precision_name);
  if (!precision.ok()) {
    std::fprintf(stderr, "u2bench serve: %s\n", precision.status().ToString().c_str());
    return 2;
  }
  ServeSession session;
  if (auto st = session.Init(model_dir, threads, *precision, clips); !st.ok()) {
    std::fprintf(stderr, "u2bench serve: %s\n", st.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "u2bench serve: ready (%s, %d threads)\n", model_dir.c_str(), threads);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    json resp;
    if (req.is_discarded() || !req.is_object()) {
      resp = {{"error", "not a JSON object"}};
    } else if (req.value("cmd", "") == "quit") {
      break;
    } else {
      resp = session.Handle(req);
    }
    std::printf("%s\n", resp.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2serve offline CPU benchmark driver"};
  app.require_subcommand(1);

  int threads = 2;
  std::string shapes = "1024,1024,1024";
  double min_seconds = 0.5;
  auto* sgemm = app.add_subcommand("sgemm", "cblas_sgemm throughput at given shapes");
  sgemm->add_option("--threads", threads, "BLAS threads");
  sgemm->add_option("--shapes", shapes, "M,N,K;M,N,K;... (C[M,N] = A[M,K] W[N,K]^T)");
  sgemm->add_option("--min-seconds", min_seconds, "time spent per shape");

  std::string model_dir;
  std::vector<std::string> clips;
  auto* serve = app.add_subcommand("serve", "answer timing requests on stdin (see the top of u2bench.cc)");
  serve->add_option("--model-dir", model_dir, "u2serve model directory")->required();
  serve->add_option("--threads", threads, "threads (OpenBLAS and the backend's pool)");
  serve->add_option("--clip", clips, "NAME=PATH of a test clip (repeatable)");
  std::string precision = "fp32";
  serve->add_option("--precision", precision, "fp32 | int8 (the CPU's int8 GEMM for the linear layers)");

  CLI11_PARSE(app, argc, argv);
  if (sgemm->parsed()) return RunSgemm(threads, shapes, min_seconds);
  if (serve->parsed()) return RunServe(model_dir, threads, precision, clips);
  return 2;
}
