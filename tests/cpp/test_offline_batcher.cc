// OfflineBatcher scheduling: batching of close arrivals, limits, key separation, length-aware
// grouping, queue overflow, cancellation, failure isolation and shutdown. A fake recognizer
// records every batch it is handed, so each test checks what actually ran together.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>

#include "u2/engine/offline_batcher.h"

namespace u2 {
namespace {

using namespace std::chrono_literals;

// Records batches; each result's text is "n=<samples>" so tests can check the routing back.
class FakeRecognizer {
 public:
  OfflineResults operator()(std::span<const Waveform> batch, const DecodingOptions& options) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      Batch b;
      b.beam = options.beam;
      for (const Waveform& w : batch) b.lengths.push_back(static_cast<int64_t>(w.samples.size()));
      batches_.push_back(b);
      gate_cv_.wait(lock, [&] { return open_ || options.beam != kBlockerBeam; });
    }
    std::vector<RecognitionResult> out;
    for (const Waveform& w : batch) {
      for (float s : w.samples) {
        if (!std::isfinite(s)) return InvalidArgument("non-finite sample");
      }
      RecognitionResult r;
      r.nbest.push_back({});
      r.nbest[0].text = "n=" + std::to_string(w.samples.size());
      r.audio_seconds = w.samples.size() / 16000.0;
      out.push_back(std::move(r));
    }
    return out;
  }
  struct Batch {
    int beam = 0;
    std::vector<int64_t> lengths;
  };
  std::vector<Batch> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    gate_cv_.notify_all();
  }
  static constexpr int kBlockerBeam = 999;  // batches with this beam wait for Open()

 private:
  std::mutex mu_;
  std::condition_variable gate_cv_;
  bool open_ = false;
  std::vector<Batch> batches_;
};

struct Outcome {
  Status status;
  std::vector<std::string> texts;
  OfflineTaskTiming timing;
};

// Owns the samples of a task and collects its outcome.
struct Request {
  explicit Request(std::vector<int64_t> lengths, int beam = 10, float fill = 0.1f) {
    for (int64_t n : lengths) samples.emplace_back(n, fill);
    this->beam = beam;
  }
  OfflineTask MakeTask() {
    OfflineTask t;
    for (const auto& s : samples) t.waveforms.push_back({s, 16000});
    t.options.beam = beam;
    t.batch_key = "beam=" + std::to_string(beam);
    t.done = [this](OfflineResults r, const OfflineTaskTiming& timing) {
      Outcome o;
      o.timing = timing;
      if (r.ok()) {
        for (const auto& res : *r) o.texts.push_back(res.best().text);
      } else {
        o.status = r.status();
      }
      promise.set_value(std::move(o));
    };
    return t;
  }
  Outcome Wait() {
    auto f = promise.get_future();
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return f.get();
  }
  std::vector<std::vector<float>> samples;
  int beam;
  std::promise<Outcome> promise;
};

// Every field spelled out, so -Wmissing-field-initializers stays quiet.
OfflineBatcherConfig Cfg(int max_batch_size, int64_t delay_us, int workers, int queue = 1024,
                         std::vector<int> preferred = {}) {
  OfflineBatcherConfig c;
  c.max_batch_size = max_batch_size;
  c.max_queue_delay_us = delay_us;
  c.preferred_batch_sizes = std::move(preferred);
  c.num_workers = workers;
  c.max_queue_size = queue;
  return c;
}

std::unique_ptr<OfflineBatcher> MakeBatcher(FakeRecognizer& fake, OfflineBatcherConfig config) {
  auto b = OfflineBatcher::Create(
      config, [&fake](std::span<const Waveform> w, const DecodingOptions& o) { return fake(w, o); });
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

TEST(OfflineBatcherConfig, RejectsBadValues) {
  OfflineBatcherConfig c;
  EXPECT_TRUE(c.Validate().ok());
  c.max_batch_size = 0;
  EXPECT_FALSE(c.Validate().ok());
  c = {};
  c.preferred_batch_sizes = {128};  // above max_batch_size 64
  EXPECT_FALSE(c.Validate().ok());
  c = {};
  c.num_workers = 0;
  EXPECT_FALSE(c.Validate().ok());
  c = {};
  c.max_queue_delay_us = -1;
  EXPECT_FALSE(c.Validate().ok());
  EXPECT_NE(OfflineBatcherConfig{}.ToString().find("max_batch_size=64"), std::string::npos);
}

TEST(OfflineBatcher, SingleTaskGetsItsOwnResultsInOrder) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 0, 2, 1024, {}));
  Request r({100, 250, 7});
  ASSERT_TRUE(batcher->Submit(r.MakeTask()).ok());
  Outcome o = r.Wait();
  ASSERT_TRUE(o.status.ok()) << o.status.ToString();
  EXPECT_EQ(o.texts, (std::vector<std::string>{"n=100", "n=250", "n=7"}));
  EXPECT_EQ(o.timing.execution_batch_size, 3);
  EXPECT_TRUE(o.timing.first_in_execution);
  EXPECT_GE(o.timing.compute_infer_ns, 0);
}

TEST(OfflineBatcher, CloseArrivalsRunAsOneBatch) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(16, 300'000, 1, 1024, {}));
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 6; ++i) {
    reqs.push_back(std::make_unique<Request>(std::vector<int64_t>{1000 + i}));
    ASSERT_TRUE(batcher->Submit(reqs.back()->MakeTask()).ok());
  }
  std::set<uint64_t> executions;
  int firsts = 0;
  for (int i = 0; i < 6; ++i) {
    Outcome o = reqs[i]->Wait();
    ASSERT_TRUE(o.status.ok());
    EXPECT_EQ(o.texts[0], "n=" + std::to_string(1000 + i));  // each got its own answer back
    executions.insert(o.timing.execution_id);
    firsts += o.timing.first_in_execution;
    EXPECT_EQ(o.timing.execution_batch_size, 6);
  }
  EXPECT_EQ(executions.size(), 1u);
  EXPECT_EQ(firsts, 1);
  ASSERT_EQ(fake.batches().size(), 1u);
}

TEST(OfflineBatcher, NeverExceedsMaxBatchSizeAndRunsEverything) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(4, 200'000, 2, 1024, {}));
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 7; ++i) {
    reqs.push_back(std::make_unique<Request>(std::vector<int64_t>(i % 2 ? 2 : 1, 500)));
    ASSERT_TRUE(batcher->Submit(reqs.back()->MakeTask()).ok());
  }
  int utterances = 0;
  for (auto& r : reqs) {
    Outcome o = r->Wait();
    ASSERT_TRUE(o.status.ok());
    utterances += static_cast<int>(o.texts.size());
  }
  EXPECT_EQ(utterances, 10);
  int seen = 0;
  for (const auto& b : fake.batches()) {
    EXPECT_LE(b.lengths.size(), 4u);
    seen += static_cast<int>(b.lengths.size());
  }
  EXPECT_EQ(seen, 10);
}

TEST(OfflineBatcher, DifferentKeysAreNeverMixed) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 100'000, 1, 1024, {}));
  std::vector<std::unique_ptr<Request>> reqs;
  for (int i = 0; i < 8; ++i) {
    const int beam = i % 2 ? 4 : 10;
    reqs.push_back(std::make_unique<Request>(std::vector<int64_t>{800}, beam));
    ASSERT_TRUE(batcher->Submit(reqs.back()->MakeTask()).ok());
  }
  std::map<uint64_t, std::set<int>> beams_per_execution;
  for (int i = 0; i < 8; ++i) {
    Outcome o = reqs[i]->Wait();
    ASSERT_TRUE(o.status.ok());
    beams_per_execution[o.timing.execution_id].insert(reqs[i]->beam);
  }
  for (const auto& [id, beams] : beams_per_execution) EXPECT_EQ(beams.size(), 1u) << "execution " << id;
  EXPECT_EQ(beams_per_execution.size(), 2u);  // 4 + 4, batched per key
}

TEST(OfflineBatcher, GroupsSimilarLengths) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(2, 1'000'000, 1, 1024, {}));
  // Occupy the only worker so the four requests below are all queued before scheduling.
  Request blocker({10}, FakeRecognizer::kBlockerBeam);
  ASSERT_TRUE(batcher->Submit(blocker.MakeTask()).ok());
  while (fake.batches().empty()) std::this_thread::sleep_for(1ms);
  std::vector<std::unique_ptr<Request>> reqs;
  for (int64_t n : {1000, 90000, 1100, 91000}) {
    reqs.push_back(std::make_unique<Request>(std::vector<int64_t>{n}));
    ASSERT_TRUE(batcher->Submit(reqs.back()->MakeTask()).ok());
  }
  fake.Open();
  for (auto& r : reqs) ASSERT_TRUE(r->Wait().status.ok());
  auto batches = fake.batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1].lengths, (std::vector<int64_t>{1000, 1100}));
  EXPECT_EQ(batches[2].lengths, (std::vector<int64_t>{90000, 91000}));
}

TEST(OfflineBatcher, PreferredBatchSizeDispatchesWithoutWaitingForTheDelay) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 5'000'000, 1, 1024, {2}));
  Request a({300}), b({300});
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(batcher->Submit(a.MakeTask()).ok());
  ASSERT_TRUE(batcher->Submit(b.MakeTask()).ok());
  EXPECT_TRUE(a.Wait().status.ok());
  EXPECT_TRUE(b.Wait().status.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(OfflineBatcher, FullQueueIsRefusedAtOnce) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 0, 1, 2, {}));
  Request blocker({10}, FakeRecognizer::kBlockerBeam);
  ASSERT_TRUE(batcher->Submit(blocker.MakeTask()).ok());
  while (fake.batches().empty()) std::this_thread::sleep_for(1ms);
  Request a({10}), b({10}), c({10});
  ASSERT_TRUE(batcher->Submit(a.MakeTask()).ok());
  ASSERT_TRUE(batcher->Submit(b.MakeTask()).ok());
  EXPECT_EQ(batcher->queued_tasks(), 2);
  Status s = batcher->Submit(c.MakeTask());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  fake.Open();
  EXPECT_TRUE(a.Wait().status.ok());
  EXPECT_TRUE(b.Wait().status.ok());
}

TEST(OfflineBatcher, RejectsEmptyAndOversizedTasks) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(2, 2000, 2, 1024, {}));
  Request empty({});
  EXPECT_EQ(batcher->Submit(empty.MakeTask()).code(), StatusCode::kInvalidArgument);
  Request big({1, 1, 1});
  EXPECT_EQ(batcher->Submit(big.MakeTask()).code(), StatusCode::kInvalidArgument);
}

TEST(OfflineBatcher, CancelledTasksAreDroppedBeforeRunning) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 0, 1, 1024, {}));
  Request blocker({10}, FakeRecognizer::kBlockerBeam);
  ASSERT_TRUE(batcher->Submit(blocker.MakeTask()).ok());
  while (fake.batches().empty()) std::this_thread::sleep_for(1ms);
  Request gone({12345}), stays({777});
  OfflineTask t = gone.MakeTask();
  t.cancelled = [] { return true; };
  ASSERT_TRUE(batcher->Submit(std::move(t)).ok());
  ASSERT_TRUE(batcher->Submit(stays.MakeTask()).ok());
  fake.Open();
  Outcome g = gone.Wait();
  EXPECT_EQ(g.status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(g.timing.execution_batch_size, 0);
  EXPECT_TRUE(stays.Wait().status.ok());
  for (const auto& b : fake.batches()) {
    for (int64_t n : b.lengths) EXPECT_NE(n, 12345);
  }
}

TEST(OfflineBatcher, ABadRequestDoesNotFailItsBatchMates) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 300'000, 1, 1024, {}));
  Request good1({400}), bad({400}, 10, std::numeric_limits<float>::quiet_NaN()), good2({500});
  ASSERT_TRUE(batcher->Submit(good1.MakeTask()).ok());
  ASSERT_TRUE(batcher->Submit(bad.MakeTask()).ok());
  ASSERT_TRUE(batcher->Submit(good2.MakeTask()).ok());
  Outcome o1 = good1.Wait(), ob = bad.Wait(), o2 = good2.Wait();
  EXPECT_TRUE(o1.status.ok());
  EXPECT_EQ(o1.texts[0], "n=400");
  EXPECT_EQ(ob.status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(o2.status.ok());
  EXPECT_EQ(o2.texts[0], "n=500");
}

// An exception from the engine or a library inside one batch (std::bad_alloc here, injected by the
// recognize function) fails that batch's requests with a clear error; the worker lives on and the
// next batch succeeds.
TEST(OfflineBatcher, AnExceptionInOneBatchFailsOnlyThatBatch) {
  FakeRecognizer fake;
  std::atomic<int> calls{0};
  auto made = OfflineBatcher::Create(
      Cfg(64, 0, 1, 1024, {}), [&](std::span<const Waveform> w, const DecodingOptions& o) -> OfflineResults {
        if (calls++ == 0) throw std::bad_alloc();
        return fake(w, o);
      });
  ASSERT_TRUE(made.ok());
  auto& batcher = *made;
  Request doomed({400});
  ASSERT_TRUE(batcher->Submit(doomed.MakeTask()).ok());
  const Outcome failed = doomed.Wait();
  EXPECT_EQ(failed.status.code(), StatusCode::kInternal);
  EXPECT_NE(failed.status.message().find("recognition failed"), std::string::npos)
      << failed.status.ToString();
  EXPECT_NE(failed.status.message().find("bad_alloc"), std::string::npos) << failed.status.ToString();
  Request next({500});
  ASSERT_TRUE(batcher->Submit(next.MakeTask()).ok());
  const Outcome ok = next.Wait();
  ASSERT_TRUE(ok.status.ok()) << ok.status.ToString();
  EXPECT_EQ(ok.texts.at(0), "n=500");
}

TEST(OfflineBatcher, ShutdownFinishesQueuedWorkThenRefuses) {
  FakeRecognizer fake;
  auto batcher = MakeBatcher(fake, Cfg(64, 2'000'000, 1, 1024, {}));
  Request a({100}), b({200});
  ASSERT_TRUE(batcher->Submit(a.MakeTask()).ok());
  ASSERT_TRUE(batcher->Submit(b.MakeTask()).ok());
  const auto start = std::chrono::steady_clock::now();
  batcher->Shutdown();  // does not wait out the 2 s delay
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_TRUE(a.Wait().status.ok());
  EXPECT_TRUE(b.Wait().status.ok());
  Request c({100});
  EXPECT_EQ(batcher->Submit(c.MakeTask()).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace u2
