// Dynamic batching for offline recognition: requests that arrive close together run as one
// Recognize() call. Protocol-independent (the gRPC and HTTP front ends both submit here).
//
// A task is one client request of B >= 1 utterances. Tasks are grouped only with tasks that have
// the same `batch_key` (the caller puts the model and every decoding parameter into it, so a
// request with beam 4 never rides in a beam-10 batch). A group is dispatched to a free worker
// when it holds max_batch_size utterances, when it reaches a preferred batch size, or when its
// oldest task has waited max_queue_delay_us. Within a group the batch is filled with the tasks
// whose audio length is closest to the oldest task's (length-aware grouping), so short clips are
// not padded to long ones; the oldest task always goes first, which bounds every task's wait.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "u2/engine/recognizer.h"
#include "u2/util/status.h"

namespace u2 {

class OptionRegistry;

struct OfflineBatcherConfig {
  int max_batch_size = 64;                 // utterances per Recognize() call
  int64_t max_queue_delay_us = 2000;       // longest a task waits for company before running
  std::vector<int> preferred_batch_sizes;  // dispatch as soon as one of these can be filled
  int num_workers = 2;                     // concurrent Recognize() calls
  int max_queue_size = 1024;               // queued tasks; more are refused (ResourceExhausted)
  bool length_aware = true;                // fill batches with tasks of similar audio length
  int64_t default_timeout_us = 0;          // a request queued longer is refused (0: no limit)

  void Register(OptionRegistry* r);
  Status Validate() const;
  std::string ToString() const;
};

// Where a task's time went (nanoseconds), in Triton's terms, and which execution it rode in.
struct OfflineTaskTiming {
  int64_t queue_ns = 0;             // submit -> its batch started
  int64_t compute_input_ns = 0;     // assembling the batch
  int64_t compute_infer_ns = 0;     // Recognize()
  int64_t compute_output_ns = 0;    // splitting the results
  int execution_batch_size = 0;     // utterances in the Recognize() call (0: never executed)
  uint64_t execution_id = 0;        // same for every task of one execution
  bool first_in_execution = false;  // exactly one task per execution has this set
};

using OfflineResults = StatusOr<std::vector<RecognitionResult>>;

struct OfflineTask {
  std::vector<Waveform> waveforms;  // the caller keeps the samples alive until `done` has run
  DecodingOptions options;
  std::string batch_key;            // tasks batch together only when their keys are equal
  std::function<bool()> cancelled;  // optional: true if the client has gone (task is dropped)
  // Optional: a task still queued at this time is dropped with DeadlineExceeded instead of run.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Called exactly once, from a worker thread (or from Shutdown for tasks never run).
  std::function<void(OfflineResults results, const OfflineTaskTiming& timing)> done;
};

// The recognition function a batch runs through (Recognizer::Recognize, or a fake in tests).
using RecognizeFunction =
    std::function<OfflineResults(std::span<const Waveform> batch, const DecodingOptions& options)>;

class OfflineBatcher {
 public:
  static StatusOr<std::unique_ptr<OfflineBatcher>> Create(const OfflineBatcherConfig& config,
                                                          RecognizeFunction recognize);
  ~OfflineBatcher();  // Shutdown()
  OfflineBatcher(const OfflineBatcher&) = delete;
  OfflineBatcher& operator=(const OfflineBatcher&) = delete;

  // Queues a task. Errors (then `done` is NOT called): InvalidArgument (no utterances, more than
  // max_batch_size, no `done`), ResourceExhausted (queue full), Unavailable (shutting down).
  Status Submit(OfflineTask task);

  // Refuses new tasks, runs everything already queued, joins the workers. Idempotent.
  void Shutdown();

  int queued_tasks() const;   // waiting, not yet executing
  int running_tasks() const;  // in a Recognize() call now
  const OfflineBatcherConfig& config() const { return config_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Queued {
    OfflineTask task;
    Clock::time_point arrival;
    int64_t max_samples = 0;
    int utterances = 0;
    bool late = false;  // dropped for its deadline
  };

  OfflineBatcher(const OfflineBatcherConfig& config, RecognizeFunction recognize);
  void WorkerLoop();
  // With the lock held: picks the tasks of the next batch, or returns an empty vector and sets
  // `wake` to when a batch may become due.
  std::vector<Queued> TakeBatchLocked(Clock::time_point now, Clock::time_point* wake);
  void Execute(std::vector<Queued> batch);
  // recognize_, with any exception turned into an Internal error of this call.
  OfflineResults RecognizeGuarded(std::span<const Waveform> batch, const DecodingOptions& options) const;

  OfflineBatcherConfig config_;  // preferred sizes sorted ascending
  const RecognizeFunction recognize_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;  // arrival order
  bool stopping_ = false;
  int running_ = 0;
  uint64_t next_execution_id_ = 1;
  std::vector<std::thread> workers_;
};

}  // namespace u2
