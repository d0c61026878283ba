// u2gpustream: how many live streams one device holds in real time with the streaming engine
// (StreamingRecognizer::DecodeStreams on the CUDA backend; the CPU backend with --device cpu, for
// bench/gpu/run_gpu.sh --dry-run and for checking the code paths on a machine without a GPU).
// bench/gpu/run_gpu.sh drives it; docs/gpu.md explains the numbers.
//
//   u2gpustream --model-dir DIR --label NAME [--device cuda|cpu] [--gemm-math fp32|tf32|fp16|bf16]
//               [--streams 100,500,1000,2000,4000,8000] [--search] [--budget-ms 200]
//               [--chunk 16] [--left 4] [--max-batch 256] [--workers 8] [--arrival staggered|aligned]
//               [--ticks 8] [--warmup-ticks 5] [--utterance-s 0] [--time-limit 0] [--json out.jsonl]
//
// The simulation. N streams each get 640 ms of audio (one chunk of 16 encoder frames at 40 ms) per
// real-time tick of 640 ms (the chunk length; C · 40 ms in general). Arrival of a stream's audio:
//   staggered  stream i's audio arrives at phase i/N of the tick (clients that started at random
//              times: what a server sees), so ready chunks trickle in all the time;
//   aligned    every stream's audio arrives at the tick's start (a burst: the worst case; the
//              tick's work must be done within the tick, and its p99 is about the whole tick's time).
// `--workers` threads serve the arrivals in order: each takes up to `--max-batch` arrived chunks,
// feeds their audio (StreamingFbank on the host), calls DecodeStreams on them (one batched
// ForwardChunk on the device + each stream's CTC prefix search + partial result), takes the
// results, and records each chunk's latency = the time its partial result was out − the time its
// audio arrived. That is the step latency the issue asks for (queueing + fbank + encoder + search +
// partial). Several workers overlap one batch's host work (fbank, search) with another's device
// work; the device runs their kernels one after another (one CUDA stream per backend).
//
// Before timing, `--warmup-ticks` ticks run unpaced so that the attention caches are full
// (left chunks + 1 ticks); then `--ticks` ticks are paced in real time. A point is real-time when the
// p99 chunk latency is <= --budget-ms and the workers kept up (no chunk waited more than
// --abort-lag-ms before a worker took it; a point that falls that far behind stops early).
// `--search`: after the listed stream counts, bisect between the largest real-time N and the
// smallest that was not, to within 5 %. Listed counts above one that fell behind are skipped.
//
// `--utterance-s S` (> 0): streams end after S seconds of audio (the first utterance of stream i
// lasts a random 1..S s, so ends are spread), with attention rescoring of the final result in the
// step that ends it (enabled with the model's decoder), and are replaced by fresh streams: chunk
// and final latency both count. 0: streams talk for the whole run (partials only, no rescoring).
//
// Memory per stream: device bytes from the CUDA memory pool's used memory (and cudaMemGetInfo)
// before the streams were made and after the warm-up (caches full), divided by N; host: the
// streams' own estimate (RecognitionStream::MemoryBytes, which counts the device caches too) and
// the process RSS growth.
//
// One JSON object per point on stdout (and appended to --json), "kind": "stream".
#ifdef U2_BENCH_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/model/asr_model.h"
#include "u2/model/model_config.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int kSampleRate = 16000;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
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

// Speech-like test audio: a gliding harmonic tone in noise, with pauses. The weights are random,
// so the content does not matter; it only has to be finite and non-silent.
std::vector<float> SynthAudio(double seconds, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.03f);
  const size_t n = static_cast<size_t>(seconds * kSampleRate);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / kSampleRate;
    const double f0 = 120.0 + 40.0 * std::sin(2 * std::numbers::pi * 0.3 * t);
    const double envelope = std::fmod(t, 2.0) < 1.6 ? 1.0 : 0.05;
    double v = 0;
    for (int h = 1; h <= 4; ++h) v += std::sin(2 * std::numbers::pi * f0 * h * t) / h;
    x[i] = static_cast<float>(0.15 * envelope * v) + noise(rng);
  }
  return x;
}

// Device memory: the CUDA pool's used bytes (what cudaMallocAsync handed out and was not freed)
// and the device's used bytes (cudaMemGetInfo: everything, pool reservations included).
struct DeviceMemory {
  double pool_used = -1;
  double device_used = -1;
};

DeviceMemory ReadDeviceMemory(bool cuda) {
  DeviceMemory m;
#ifdef U2_BENCH_HAVE_CUDA
  if (cuda) {
    int dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) {
      cudaMemPool_t pool;
      uint64_t used = 0;
      if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess &&
          cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) == cudaSuccess) {
        m.pool_used = static_cast<double>(used);
      }
    }
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      m.device_used = static_cast<double>(total_b - free_b);
    (void)cudaGetLastError();
  }
#else
  (void)cuda;
#endif
  return m;
}

double RssBytes() {
  std::ifstream f("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  if (!(f >> pages_total >> pages_resident)) return -1;
  return static_cast<double>(pages_resident) * 4096.0;
}

struct Settings {
  std::string label = "model";
  std::string device = "cuda";
  std::string gemm_math = "fp32";
  int chunk = 16;
  int left = 4;
  int max_batch = 256;
  int workers = 4;
  bool staggered = true;
  int ticks = 8;
  int warmup_ticks = 5;
  double utterance_s = 0;
  double budget_ms = 200;
  double abort_lag_ms = 2000;
  double batch_wait_ms = 10;
  int beam = 10;
};

// One simulated stream: its recognizer state and where it is in its audio.
struct SimStream {
  std::unique_ptr<u2::RecognitionStream> stream;
  int64_t audio_pos = 0;        // next sample of the shared audio
  int64_t utterance_left = -1;  // samples until this utterance ends (-1: endless)
  bool busy = false;            // a worker holds it
  int utterances_done = 0;
};

struct PointResult {
  json j;
  bool realtime = false;
};

class StreamSim {
 public:
  StreamSim(const u2::StreamingRecognizer& recognizer, const u2::AsrModel& model, const Settings& s,
            const std::vector<float>& audio)
      : rec_(recognizer), model_(model), s_(s), audio_(audio) {}

  PointResult Run(int num_streams);

 private:
  // The arrival time of chunk `seq` (= tick · N + stream) in the paced phase.
  Clock::time_point Arrival(int64_t seq) const {
    const int64_t tick = seq / n_;
    const int64_t i = seq % n_;
    const double phase = s_.staggered ? static_cast<double>(i) / static_cast<double>(n_) : 0.0;
    const double at_ms = (static_cast<double>(tick - first_paced_tick_) + phase) * tick_ms_;
    return base_ + std::chrono::microseconds(static_cast<int64_t>(at_ms * 1000.0));
  }
  void Worker(bool paced);
  bool ProcessBatch(const std::vector<int64_t>& seqs, bool paced);
  u2::Status NewStream(SimStream& s, bool first);

  const u2::StreamingRecognizer& rec_;
  const u2::AsrModel& model_;
  const Settings& s_;
  const std::vector<float>& audio_;
  int n_ = 0;
  double tick_ms_ = 640;
  int64_t samples_per_tick_ = 10240;
  std::vector<SimStream> streams_;
  std::mt19937 rng_{12345};

  // Shared between the workers (under mu_).
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_seq_ = 0;
  int64_t end_seq_ = 0;
  int64_t first_paced_tick_ = 0;
  Clock::time_point base_;
  bool abort_ = false;
  std::string error_;
  // Measurements (paced phase only).
  std::vector<double> latency_ms_, final_latency_ms_, call_ms_, wait_ms_;
  std::vector<int> batch_sizes_;
  std::vector<Clock::time_point> tick_done_;  // aligned: the last completion per tick
  int64_t chunks_ = 0, finals_ = 0, feeds_ = 0, tokens_ = 0;
  double final_audio_ms_ = 0;
  double max_lag_ms_ = 0;
};

u2::Status StreamSim::NewStream(SimStream& s, bool first) {
  u2::StreamOptions o = rec_.default_options();
  o.decoding_chunk_size = s_.chunk;
  o.num_decoding_left_chunks = s_.left;
  o.beam = s_.beam;
  o.nbest = 1;
  o.rescoring = s_.utterance_s > 0 && model_.config().HasDecoder();
  o.endpointing = false;
  o.continuous_decoding = false;
  auto st = rec_.NewStream(o);
  if (!st.ok()) return st.status();
  s.stream = std::move(*st);
  if (s_.utterance_s > 0) {
    // First utterances end at spread times (1 s .. S), later ones last S.
    double secs = s_.utterance_s;
    if (first) secs = std::uniform_real_distribution<double>(std::min(1.0, secs), secs)(rng_);
    s.utterance_left = static_cast<int64_t>(secs * kSampleRate);
  } else {
    s.utterance_left = -1;
  }
  return u2::Status::Ok();
}

// Feeds one tick of audio to each stream of the batch, decodes every ready chunk, takes the
// results; in the paced phase records the latencies. False on an error (recorded in error_).
bool StreamSim::ProcessBatch(const std::vector<int64_t>& seqs, bool paced) {
  std::vector<u2::RecognitionStream*> batch;
  std::vector<int> chunks_before;
  const int64_t audio_len = static_cast<int64_t>(audio_.size());
  for (int64_t seq : seqs) {
    SimStream& s = streams_[static_cast<size_t>(seq % n_)];
    int64_t want = samples_per_tick_;
    bool last = false;
    if (s.utterance_left >= 0 && s.utterance_left <= want) {
      want = s.utterance_left;
      last = true;
    }
    while (want > 0) {  // the shared audio loops
      const int64_t take = std::min(want, audio_len - s.audio_pos);
      u2::Status st = s.stream->AcceptWaveform(
          std::span<const float>(audio_.data() + s.audio_pos, static_cast<size_t>(take)));
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = "AcceptWaveform: " + st.ToString();
        return false;
      }
      s.audio_pos = (s.audio_pos + take) % audio_len;
      want -= take;
      if (s.utterance_left >= 0) s.utterance_left -= take;
    }
    if (last) s.stream->InputFinished();
    batch.push_back(s.stream.get());
    chunks_before.push_back(s.stream->num_chunks_decoded());
  }
  const auto t_call = Clock::now();
  // One call decodes one chunk per stream; a stream with more ready (its final tail) goes again.
  std::vector<u2::RecognitionStream*> ready;
  for (auto* st : batch) {
    if (st->IsReady()) ready.push_back(st);
  }
  while (!ready.empty()) {
    std::vector<u2::Status> errors;
    u2::Status st = rec_.DecodeStreams(ready, &errors);
    if (st.ok()) {
      for (const auto& e : errors) {
        if (!e.ok()) {
          st = e;
          break;
        }
      }
    }
    if (!st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = "DecodeStreams: " + st.ToString();
      return false;
    }
    std::vector<u2::RecognitionStream*> again;
    for (auto* r : ready) {
      if (r->IsReady()) again.push_back(r);
    }
    ready.swap(again);
  }
  const auto t_done = Clock::now();
  int chunks = 0, finals = 0;
  int64_t tokens = 0;
  double final_audio_ms = 0;
  std::vector<double> lat, final_lat;
  for (size_t k = 0; k < seqs.size(); ++k) {
    SimStream& s = streams_[static_cast<size_t>(seqs[k] % n_)];
    const int decoded = s.stream->num_chunks_decoded() - chunks_before[k];
    bool final_seen = false;
    for (const u2::StreamResult& r : s.stream->TakeResults()) {
      if (r.is_final) {
        final_seen = true;
        tokens += static_cast<int64_t>(r.best().tokens.size());
        final_audio_ms += static_cast<double>(r.end_ms - r.start_ms);
      }
    }
    chunks += decoded;
    const double ms = std::chrono::duration<double, std::milli>(t_done - Arrival(seqs[k])).count();
    if (decoded > 0) lat.push_back(ms);
    if (final_seen) {
      ++finals;
      final_lat.push_back(ms);
    }
    if (s.stream->IsDone()) {  // the utterance ended: a new client takes its place
      ++s.utterances_done;
      u2::Status st = NewStream(s, false);
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = "NewStream: " + st.ToString();
        return false;
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (paced) {
    latency_ms_.insert(latency_ms_.end(), lat.begin(), lat.end());
    final_latency_ms_.insert(final_latency_ms_.end(), final_lat.begin(), final_lat.end());
    call_ms_.push_back(std::chrono::duration<double, std::milli>(t_done - t_call).count());
    batch_sizes_.push_back(static_cast<int>(seqs.size()));
    chunks_ += chunks;
    finals_ += finals;
    tokens_ += tokens;
    final_audio_ms_ += final_audio_ms;
    feeds_ += static_cast<int64_t>(seqs.size());
    for (int64_t seq : seqs) {
      const size_t tick = static_cast<size_t>(seq / n_ - first_paced_tick_);
      if (tick < tick_done_.size()) tick_done_[tick] = std::max(tick_done_[tick], t_done);
    }
  }
  return true;
}

void StreamSim::Worker(bool paced) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (abort_ || !error_.empty() || next_seq_ >= end_seq_) return;
    const auto now = Clock::now();
    if (paced) {
      const auto due = Arrival(next_seq_);
      if (due > now) {
        cv_.wait_until(lock, due);
        continue;
      }
      const double lag = std::chrono::duration<double, std::milli>(now - due).count();
      max_lag_ms_ = std::max(max_lag_ms_, lag);
      if (lag > s_.abort_lag_ms) {  // fell behind real time for good: stop this point
        abort_ = true;
        cv_.notify_all();
        return;
      }
      // Dynamic batching: wait for a fuller batch, but the oldest arrived chunk waits at most
      // --batch-wait-ms (as the server's max_batch_delay_us).
      const int64_t full_seq = std::min(next_seq_ + s_.max_batch - 1, end_seq_ - 1);
      const auto full_at = Arrival(full_seq);
      const auto latest = due + std::chrono::microseconds(static_cast<int64_t>(s_.batch_wait_ms * 1000.0));
      if (full_at > now && latest > now) {
        cv_.wait_until(lock, std::min(full_at, latest));
        continue;
      }
    }
    std::vector<int64_t> seqs;
    while (static_cast<int>(seqs.size()) < s_.max_batch && next_seq_ < end_seq_ &&
           (!paced || Arrival(next_seq_) <= now)) {
      SimStream& s = streams_[static_cast<size_t>(next_seq_ % n_)];
      if (s.busy) break;  // its previous chunk is still being decoded
      s.busy = true;
      seqs.push_back(next_seq_++);
    }
    if (seqs.empty()) {
      cv_.wait(lock);
      continue;
    }
    if (paced)
      wait_ms_.push_back(std::chrono::duration<double, std::milli>(now - Arrival(seqs.front())).count());
    lock.unlock();
    const bool ok = ProcessBatch(seqs, paced);
    lock.lock();
    for (int64_t seq : seqs) streams_[static_cast<size_t>(seq % n_)].busy = false;
    cv_.notify_all();
    if (!ok) return;
  }
}

PointResult StreamSim::Run(int num_streams) {
  n_ = num_streams;
  const u2::ModelConfig& mc = model_.config();
  const int frame_shift_ms = static_cast<int>(std::lround(mc.frontend.frame_shift_ms));
  tick_ms_ = static_cast<double>(s_.chunk * mc.SubsamplingRate() * frame_shift_ms);
  samples_per_tick_ = static_cast<int64_t>(tick_ms_ * kSampleRate / 1000.0);
  latency_ms_.clear();
  final_latency_ms_.clear();
  call_ms_.clear();
  wait_ms_.clear();
  batch_sizes_.clear();
  chunks_ = finals_ = feeds_ = tokens_ = 0;
  final_audio_ms_ = 0;
  max_lag_ms_ = 0;
  abort_ = false;
  error_.clear();

  const bool cuda = s_.device == "cuda";
  (void)model_.backend().Synchronize();
  const DeviceMemory mem0 = ReadDeviceMemory(cuda);
  const double rss0 = RssBytes();
  PointResult out;
  json& r = out.j;
  r["kind"] = "stream";
  r["model"] = s_.label;
  r["device"] = s_.device;
  r["backend"] = model_.backend().Name();
  r["gemm_math"] = cuda ? s_.gemm_math : "fp32";
  r["streams"] = n_;
  r["arrival"] = s_.staggered ? "staggered" : "aligned";
  r["chunk"] = s_.chunk;
  r["left_chunks"] = s_.left;
  r["tick_ms"] = tick_ms_;
  r["max_batch"] = s_.max_batch;
  r["workers"] = s_.workers;
  r["batch_wait_ms"] = s_.batch_wait_ms;
  r["beam"] = s_.beam;
  r["utterance_s"] = s_.utterance_s;
  r["rescoring"] = s_.utterance_s > 0 && mc.HasDecoder();
  r["budget_ms"] = s_.budget_ms;

  streams_.clear();
  streams_.resize(static_cast<size_t>(n_));
  const int64_t audio_len = static_cast<int64_t>(audio_.size());
  for (int i = 0; i < n_; ++i) {
    u2::Status st = NewStream(streams_[static_cast<size_t>(i)], true);
    if (!st.ok()) {
      r["error"] = "NewStream: " + st.ToString();
      return out;
    }
    streams_[static_cast<size_t>(i)].audio_pos = (static_cast<int64_t>(i) * 7919 * 16) % audio_len;
  }

  auto run_phase = [&](int64_t first_tick, int64_t ticks, bool paced) {
    next_seq_ = first_tick * n_;
    end_seq_ = (first_tick + ticks) * n_;
    first_paced_tick_ = first_tick;
    base_ = Clock::now() + std::chrono::milliseconds(5);
    tick_done_.assign(static_cast<size_t>(ticks), base_);
    std::vector<std::thread> threads;
    for (int w = 0; w < s_.workers; ++w) threads.emplace_back([this, paced] { Worker(paced); });
    for (auto& t : threads) t.join();
  };

  const auto t_warm = Clock::now();
  run_phase(0, s_.warmup_ticks, false);
  const double warmup_s = std::chrono::duration<double>(Clock::now() - t_warm).count();
  if (!error_.empty()) {
    r["error"] = error_;
    return out;
  }
  if (u2::Status st = model_.backend().Synchronize(); !st.ok()) {
    r["error"] = "device: " + st.ToString();
    return out;
  }
  // Caches are full now: the memory the streams hold.
  const DeviceMemory mem1 = ReadDeviceMemory(cuda);
  const double rss1 = RssBytes();
  double state_bytes = 0;
  for (const auto& s : streams_) state_bytes += static_cast<double>(s.stream->MemoryBytes());

  const auto t_meas = Clock::now();
  run_phase(s_.warmup_ticks, s_.ticks, true);
  const double measured_s = std::chrono::duration<double>(Clock::now() - t_meas).count();
  if (!error_.empty()) {
    r["error"] = error_;
    return out;
  }
  if (u2::Status st = model_.backend().Synchronize(); !st.ok()) {
    r["error"] = "device: " + st.ToString();
    return out;
  }
  const DeviceMemory mem2 = ReadDeviceMemory(cuda);

  const bool kept_up = !abort_;
  const double p99 = Percentile(latency_ms_, 99);
  out.realtime = kept_up && !latency_ms_.empty() && p99 <= s_.budget_ms;
  r["warmup_s"] = warmup_s;
  r["measured_s"] = measured_s;
  r["ticks"] = s_.ticks;
  r["chunks"] = chunks_;
  r["chunks_per_s"] = measured_s > 0 ? static_cast<double>(chunks_) / measured_s : 0;
  r["latency_ms"] = {{"p50", Percentile(latency_ms_, 50)},
                     {"p90", Percentile(latency_ms_, 90)},
                     {"p99", p99},
                     {"max", Percentile(latency_ms_, 100)}};
  r["queue_wait_ms"] = {{"p50", Percentile(wait_ms_, 50)}, {"p99", Percentile(wait_ms_, 99)}};
  r["decode_call_ms"] = {{"p50", Percentile(call_ms_, 50)},
                         {"p99", Percentile(call_ms_, 99)},
                         {"max", Percentile(call_ms_, 100)}};
  double mean_batch = 0;
  for (int b : batch_sizes_) mean_batch += b;
  r["batches"] = batch_sizes_.size();
  r["mean_batch"] = batch_sizes_.empty() ? 0 : mean_batch / static_cast<double>(batch_sizes_.size());
  if (!s_.staggered && kept_up) {
    // Aligned: from the tick's start to its last partial: must fit in the tick for real time.
    std::vector<double> tick_work;
    for (size_t t = 0; t < tick_done_.size(); ++t) {
      tick_work.push_back(std::chrono::duration<double, std::milli>(
                              tick_done_[t] - Arrival((first_paced_tick_ + static_cast<int64_t>(t)) * n_))
                              .count());
    }
    r["tick_work_ms"] = {{"p50", Percentile(tick_work, 50)}, {"max", Percentile(tick_work, 100)}};
    r["tick_within_budget"] = Percentile(tick_work, 100) <= tick_ms_;
  }
  if (s_.utterance_s > 0) {
    r["finals"] = finals_;
    r["final_latency_ms"] = {{"p50", Percentile(final_latency_ms_, 50)},
                             {"p99", Percentile(final_latency_ms_, 99)}};
    // Tokens per second of audio in the final results (a trained model gives ~3-5/s; flat
    // random-weight CTC posteriors give more, which makes the search and rescoring dearer).
    r["final_tokens_per_s"] =
        final_audio_ms_ > 0 ? static_cast<double>(tokens_) / (final_audio_ms_ / 1000.0) : 0;
  }
  {
    // The search's load depends on how many tokens the (random-weight) model emits.
    double tokens = 0, seconds = 0;
    for (const auto& st : streams_) {
      const u2::StreamResult p = st.stream->CurrentPartial();
      tokens += static_cast<double>(p.best().tokens.size());
      seconds += static_cast<double>(p.end_ms - p.start_ms) / 1000.0;
    }
    r["partial_tokens_per_s"] = seconds > 0 ? tokens / seconds : 0;
  }
  r["max_lag_ms"] = max_lag_ms_;
  r["kept_up"] = kept_up;
  r["realtime"] = out.realtime;
  r["state_bytes_per_stream"] = state_bytes / n_;
  if (rss0 > 0 && rss1 > 0) r["host_rss_bytes_per_stream"] = (rss1 - rss0) / n_;
  if (cuda) {
    if (mem0.pool_used >= 0 && mem1.pool_used >= 0)
      r["device_pool_bytes_per_stream"] = (mem1.pool_used - mem0.pool_used) / n_;
    if (mem0.device_used >= 0 && mem1.device_used >= 0) {
      r["device_bytes_per_stream"] = (mem1.device_used - mem0.device_used) / n_;
      r["gpu_mem_used_gb"] = std::max(mem1.device_used, mem2.device_used) / 1e9;
    }
  }
  streams_.clear();  // frees the caches before the next point
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"u2serve streaming benchmark: real-time streams per device"};
  std::string model_dir, streams_s = "100,500,1000,2000,4000,8000", arrival = "staggered", json_path;
  Settings s;
  bool search = false;
  int threads = 1;
  double time_limit = 0;
  app.add_option("--model-dir", model_dir, "u2serve model directory")->required();
  app.add_option("--label", s.label, "name in the results");
  app.add_option("--device", s.device, "cuda or cpu")->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--gemm-math", s.gemm_math, "CUDA GEMM math: fp32 (TF32 off), tf32, fp16, bf16");
  app.add_option("--streams", streams_s, "comma-separated numbers of concurrent streams");
  app.add_flag("--search", search, "then bisect for the largest real-time number of streams");
  app.add_option("--budget-ms", s.budget_ms, "p99 chunk latency a real-time point must stay under");
  app.add_option("--chunk", s.chunk, "decoding chunk size (encoder frames)")->check(CLI::Range(1, 64));
  app.add_option("--left", s.left, "left chunks of attention history (-1 = all)")->check(CLI::Range(-1, 64));
  app.add_option("--max-batch", s.max_batch, "at most this many streams per DecodeStreams call")
      ->check(CLI::Range(1, 65536));
  app.add_option("--workers", s.workers, "threads calling DecodeStreams concurrently")
      ->check(CLI::Range(1, 64));
  app.add_option("--arrival", arrival, "staggered or aligned")
      ->check(CLI::IsMember({"staggered", "aligned"}));
  app.add_option("--ticks", s.ticks, "paced ticks measured per point")->check(CLI::Range(1, 1000));
  app.add_option("--warmup-ticks", s.warmup_ticks, "unpaced ticks first (fill the caches)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--utterance-s", s.utterance_s, "streams end (rescored) after this much audio; 0 = never")
      ->check(CLI::Range(0.0, 150.0));
  app.add_option("--beam", s.beam, "CTC prefix beam")->check(CLI::Range(1, 100));
  app.add_option("--batch-wait-ms", s.batch_wait_ms,
                 "the oldest ready chunk waits at most this long for a fuller batch")
      ->check(CLI::Range(0.0, 1000.0));
  app.add_option("--abort-lag-ms", s.abort_lag_ms, "stop a point that falls this far behind real time");
  app.add_option("--threads", threads, "CPU backend threads (--device cpu)")->check(CLI::Range(1, 256));
  app.add_option("--time-limit", time_limit, "start no new point after this many seconds (0 = no limit)");
  app.add_option("--json", json_path, "append one JSON line per point to this file");
  CLI11_PARSE(app, argc, argv);
  s.staggered = arrival == "staggered";

  if (s.device == "cuda") {
#ifndef U2_BENCH_HAVE_CUDA
    std::fprintf(stderr, "u2gpustream: built without CUDA; use --device cpu\n");
    return 2;
#endif
    static const char* kMaths[] = {"fp32", "tf32", "fp16", "bf16"};
    if (std::find(std::begin(kMaths), std::end(kMaths), s.gemm_math) == std::end(kMaths)) {
      std::fprintf(stderr, "u2gpustream: bad --gemm-math %s\n", s.gemm_math.c_str());
      return 2;
    }
    setenv("U2_CUDA_GEMM_MATH", s.gemm_math.c_str(), 1);  // read by CreateBackend (cuda_backend.h)
  }
  const auto t_start = Clock::now();
  u2::RecognizerConfig rc;
  rc.model_dir = model_dir;
  rc.device = s.device == "cuda" ? u2::DeviceType::kCuda : u2::DeviceType::kCpu;
  rc.num_threads = threads;
  auto rec = u2::Recognizer::Create(rc);
  if (!rec.ok()) {
    std::fprintf(stderr, "u2gpustream: %s\n", rec.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<const u2::Recognizer> recognizer(std::move(*rec));
  auto srec = u2::StreamingRecognizer::Create(recognizer);
  if (!srec.ok()) {
    std::fprintf(stderr, "u2gpustream: %s\n", srec.status().ToString().c_str());
    return 1;
  }
  const u2::AsrModel& model = *recognizer->model();
  std::fprintf(stderr, "u2gpustream: %s on %s, chunk %d, left %d, %s arrival, max batch %d, %d workers%s\n",
               s.label.c_str(), model.backend().Name().c_str(), s.chunk, s.left, arrival.c_str(), s.max_batch,
               s.workers, s.utterance_s > 0 ? ", utterances end with rescoring" : "");

  const std::vector<float> audio = SynthAudio(37.0, 7);
  StreamSim sim(**srec, model, s, audio);
  std::ofstream json_out;
  if (!json_path.empty()) json_out.open(json_path, std::ios::app);
  int failures = 0;
  std::vector<std::pair<int, bool>> outcomes;  // (streams, real-time)
  int fell_behind_at = 0;                      // the smallest N whose workers fell behind real time (0: none)
  auto best_ok = [&] {                         // the largest real-time N
    int b = 0;
    for (auto [n, ok] : outcomes)
      if (ok) b = std::max(b, n);
    return b;
  };
  auto first_bad_above = [&](int lo) {  // the smallest N above lo that was not real-time (0: none)
    int b = 0;
    for (auto [n, ok] : outcomes)
      if (!ok && n > lo && (b == 0 || n < b)) b = n;
    return b;
  };
  auto out_of_time = [&] {
    return time_limit > 0 && std::chrono::duration<double>(Clock::now() - t_start).count() > time_limit;
  };
  auto point = [&](int n, const char* phase) -> bool {
    PointResult p = sim.Run(n);
    p.j["phase"] = phase;
    const std::string line = p.j.dump();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (json_out) json_out << line << "\n" << std::flush;
    if (p.j.contains("error")) {
      std::fprintf(stderr, "u2gpustream: %d streams failed: %s\n", n,
                   p.j["error"].get<std::string>().c_str());
      ++failures;
      return false;
    }
    std::fprintf(stderr, "u2gpustream: %6d streams  p50 %7.1f ms  p99 %7.1f ms  %s\n", n,
                 p.j["latency_ms"]["p50"].get<double>(), p.j["latency_ms"]["p99"].get<double>(),
                 p.realtime ? "real-time" : (p.j["kept_up"].get<bool>() ? "over budget" : "fell behind"));
    outcomes.emplace_back(n, p.realtime);
    if (!p.j["kept_up"].get<bool>() && (fell_behind_at == 0 || n < fell_behind_at)) fell_behind_at = n;
    return true;
  };
  for (int n : ParseList(streams_s)) {
    if (n < 1) continue;
    if (out_of_time()) {
      std::fprintf(stderr, "u2gpustream: time limit: %d streams and later not run\n", n);
      break;
    }
    if (fell_behind_at > 0 && n > fell_behind_at) {  // more streams cannot keep up either
      std::fprintf(stderr, "u2gpustream: %d streams not run (%d already fell behind)\n", n, fell_behind_at);
      continue;
    }
    if (!point(n, "sweep") && s.device == "cuda") return 1;  // a device error is sticky
  }
  if (search && best_ok() > 0 && first_bad_above(best_ok()) > 0) {
    int lo = best_ok(), hi = first_bad_above(lo);
    while (hi - lo > std::max(50, lo / 20) && !out_of_time()) {
      const int mid = (lo + hi) / 2;
      if (!point(mid, "search")) {
        if (s.device == "cuda") return 1;
        break;
      }
      if (outcomes.back().second) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
  }
  json summary = {{"kind", "stream_summary"},
                  {"model", s.label},
                  {"device", s.device},
                  {"backend", model.backend().Name()},
                  {"gemm_math", s.device == "cuda" ? s.gemm_math : "fp32"},
                  {"arrival", arrival},
                  {"utterance_s", s.utterance_s},
                  {"budget_ms", s.budget_ms},
                  {"max_realtime_streams", best_ok()},
                  {"first_failing_streams", first_bad_above(best_ok())},
                  {"max_batch", s.max_batch},
                  {"workers", s.workers}};
  const std::string line = summary.dump();
  std::printf("%s\n", line.c_str());
  if (json_out) json_out << line << "\n" << std::flush;
  return failures == 0 ? 0 : 1;
}
