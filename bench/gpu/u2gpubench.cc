// u2gpubench: offline throughput of the u2serve model on the CUDA backend (or the CPU backend, for
// bench/gpu/run_gpu.sh --dry-run), batch by batch. bench/gpu/run_gpu.sh drives it.
//
//   u2gpubench --model-dir DIR --label NAME [--device cuda|cpu] [--gemm-math fp32|tf32|fp16|bf16]
//              [--batches 1,4,16,64,256] [--seconds 10] [--modes encoder,full] [--min-time 1]
//              [--json results.jsonl]
//
// Modes (audio seconds processed per wall-clock second = batch · seconds / median time):
//   encoder  AsrModel::Encode on B precomputed feature matrices: upload, CMVN, subsampling,
//            encoder, CTC log-softmax, and the download of the CTC log-probs (part of the API).
//   full     everything the device does for attention rescoring: fbank of B waveforms (GPU fbank
//            on cuda, CPU Fbank on cpu) -> Encode -> ScoreHypotheses of 10 hypotheses per utterance
//            of 5 tokens per second. The CTC prefix beam search (host code, independent of the
//            backend) is left out.
// One JSON object per (batch, mode) on stdout (and appended to --json).
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "u2/backend/cuda/cuda_backend.h"
#include "u2/backend/cuda/cuda_fbank.h"
#include "u2/frontend/fbank.h"
#include "u2/model/asr_model.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<float> Waveform(int samples, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  std::vector<float> x(samples);
  const double f0 = 100.0 + (seed % 7) * 30.0;
  for (int i = 0; i < samples; ++i) {
    const double t = i / 16000.0;
    x[i] = static_cast<float>(0.2 * std::sin(2 * std::numbers::pi * f0 * t * (1.0 + 0.5 * std::sin(t)))) +
           noise(rng);
  }
  return x;
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(std::stoi(item));
  }
  return out;
}

double GpuMemUsedGb() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return static_cast<double>(total_b - free_b) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2serve GPU throughput benchmark"};
  std::string model_dir, label = "model", device = "cuda", gemm_math = "fp32", batches_s = "1,4,16,64,256";
  std::string modes_s = "encoder,full", json_path;
  double seconds = 10.0, min_time = 1.0;
  int max_reps = 20;
  app.add_option("--model-dir", model_dir, "u2serve model directory")->required();
  app.add_option("--label", label, "name in the results");
  app.add_option("--device", device, "cuda or cpu")->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--gemm-math", gemm_math, "CUDA GEMM math: fp32 (TF32 off), tf32, fp16, bf16");
  app.add_option("--batches", batches_s, "comma-separated batch sizes");
  app.add_option("--seconds", seconds, "clip length in seconds")->check(CLI::Range(0.1, 60.0));
  app.add_option("--modes", modes_s, "encoder,full");
  app.add_option("--min-time", min_time, "time each point at least this many seconds");
  app.add_option("--max-reps", max_reps, "at most this many timed runs per point");
  app.add_option("--json", json_path, "append one JSON line per point to this file");
  CLI11_PARSE(app, argc, argv);

  if (device == "cuda") {
    if (!u2::ParseCudaGemmMath(gemm_math).ok()) {
      std::fprintf(stderr, "u2gpubench: bad --gemm-math %s\n", gemm_math.c_str());
      return 2;
    }
    setenv("U2_CUDA_GEMM_MATH", gemm_math.c_str(), 1);  // read by CreateBackend (see cuda_backend.h)
  }
  u2::ModelLoadOptions lo;
  lo.device = device == "cuda" ? u2::DeviceType::kCuda : u2::DeviceType::kCpu;
  lo.num_threads = 1;
  auto model_or = u2::AsrModel::Load(model_dir, lo);
  if (!model_or.ok()) {
    std::fprintf(stderr, "u2gpubench: %s\n", model_or.status().ToString().c_str());
    return 1;
  }
  const auto model = *model_or;
  const u2::ModelConfig& cfg = model->config();
  std::fprintf(stderr, "u2gpubench: %s on %s\n", label.c_str(), model->backend().Name().c_str());

  u2::FbankConfig fc;
  fc.num_mel_bins = cfg.input_dim;
  std::unique_ptr<u2::CudaFbank> gpu_fbank;
  std::unique_ptr<u2::Fbank> cpu_fbank;
  if (device == "cuda") {
    auto f = u2::CudaFbank::Create(fc);
    if (!f.ok()) {
      std::fprintf(stderr, "u2gpubench: %s\n", f.status().ToString().c_str());
      return 1;
    }
    gpu_fbank = std::move(*f);
  } else {
    auto f = u2::Fbank::Create(fc);
    if (!f.ok()) return 1;
    cpu_fbank = std::move(*f);
  }

  std::ofstream json_out;
  if (!json_path.empty()) json_out.open(json_path, std::ios::app);
  const int samples = static_cast<int>(seconds * 16000);
  const std::vector<std::string> modes = [&] {
    std::vector<std::string> m;
    std::stringstream ss(modes_s);
    std::string item;
    while (std::getline(ss, item, ',')) m.push_back(item);
    return m;
  }();
  int failures = 0;
  for (int B : ParseList(batches_s)) {
    std::vector<std::vector<float>> waves;
    for (int b = 0; b < B; ++b) waves.push_back(Waveform(samples, 1000 + b));
    std::vector<std::span<const float>> spans(waves.begin(), waves.end());
    // Features once (for the encoder mode), on the host.
    std::vector<u2::FeatureMatrix> feats;
    if (gpu_fbank) {
      auto f = gpu_fbank->Compute(spans);
      if (!f.ok()) {
        std::fprintf(stderr, "u2gpubench: fbank: %s\n", f.status().ToString().c_str());
        return 1;
      }
      feats = std::move(*f);
    } else {
      for (const auto& w : waves) feats.push_back(*cpu_fbank->Compute(w));
    }
    std::vector<u2::FeatureView> views;
    for (const auto& f : feats) views.push_back({f.data.data(), f.num_frames, f.dim});
    // 10 hypotheses per utterance, 5 tokens per second, ids avoiding blank/sos/eos.
    const int hyp_len = std::max(1, static_cast<int>(std::lround(5.0 * seconds)));
    std::vector<std::vector<std::vector<int>>> nbest(B);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> tok(2, std::max(2, cfg.vocab_size - 2));
    for (auto& hyps : nbest) {
      hyps.resize(10);
      for (auto& h : hyps) {
        h.resize(hyp_len);
        for (int& t : h) t = tok(rng);
      }
    }

    for (const std::string& mode : modes) {
      if (mode != "encoder" && mode != "full") {
        std::fprintf(stderr, "u2gpubench: unknown mode %s\n", mode.c_str());
        return 2;
      }
      std::vector<double> times, t_fbank, t_enc, t_dec;
      std::string error;
      auto run_once = [&]() -> bool {
        const auto t0 = Clock::now();
        std::vector<u2::FeatureMatrix> fresh;
        std::vector<u2::FeatureView> v = views;
        if (mode == "full") {
          if (gpu_fbank) {
            auto f = gpu_fbank->Compute(spans);
            if (!f.ok()) return error = f.status().ToString(), false;
            fresh = std::move(*f);
          } else {
            for (const auto& w : waves) fresh.push_back(*cpu_fbank->Compute(w));
          }
          v.clear();
          for (const auto& f : fresh) v.push_back({f.data.data(), f.num_frames, f.dim});
        }
        const auto t1 = Clock::now();
        auto enc = model->Encode(v);
        if (!enc.ok()) return error = enc.status().ToString(), false;
        const auto t2 = Clock::now();
        if (mode == "full" && cfg.HasDecoder()) {
          auto s = model->ScoreHypotheses(*enc, nbest);
          if (!s.ok()) return error = s.status().ToString(), false;
        }
        const u2::Status st = u2::CudaSynchronize(model->backend());
        if (!st.ok()) return error = st.ToString(), false;
        const auto t3 = Clock::now();
        times.push_back(std::chrono::duration<double>(t3 - t0).count());
        t_fbank.push_back(std::chrono::duration<double>(t1 - t0).count());
        t_enc.push_back(std::chrono::duration<double>(t2 - t1).count());
        t_dec.push_back(std::chrono::duration<double>(t3 - t2).count());
        return true;
      };
      bool ok = run_once();  // warm-up: workspaces grow, cuBLAS picks kernels
      times.clear();
      t_fbank.clear();
      t_enc.clear();
      t_dec.clear();
      double spent = 0;
      while (ok && (static_cast<int>(times.size()) < 3 || spent < min_time) &&
             static_cast<int>(times.size()) < max_reps) {
        ok = run_once();
        if (ok) spent += times.back();
      }
      json r;
      r["model"] = label;
      r["device"] = device;
      r["backend"] = model->backend().Name();
      r["gemm_math"] = device == "cuda" ? gemm_math : "fp32";
      r["mode"] = mode;
      r["batch"] = B;
      r["clip_seconds"] = seconds;
      if (!ok) {
        ++failures;
        r["error"] = error;
      } else {
        const double med = Median(times);
        r["runs"] = times.size();
        r["median_s"] = med;
        r["audio_s_per_s"] = B * seconds / med;
        r["stages_median_s"] = {
            {"fbank", Median(t_fbank)}, {"encode", Median(t_enc)}, {"decoder", Median(t_dec)}};
        if (device == "cuda") r["gpu_mem_used_gb"] = GpuMemUsedGb();
      }
      const std::string line = r.dump();
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
      if (json_out) json_out << line << "\n" << std::flush;
      if (!ok) {
        std::fprintf(stderr, "u2gpubench: %s batch %d %s failed: %s\n", label.c_str(), B, mode.c_str(),
                     error.c_str());
        if (device == "cuda") return 1;  // the backend's error is sticky: nothing after it is meaningful
      }
    }
  }
  return failures == 0 ? 0 : 1;
}
