#include "u2/engine/offline_batcher.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "u2/util/option_registry.h"

namespace u2 {

void OfflineBatcherConfig::Register(OptionRegistry* r) {
  r->Add("max-batch-size", &max_batch_size, "utterances per batch (and per request)");
  r->Add("max-queue-delay-us", &max_queue_delay_us, "longest a request waits for batch company");
  r->Add("preferred-batch-size", &preferred_batch_sizes, "preferred batch sizes (repeatable)");
  r->Add("workers", &num_workers, "concurrent batch executions per model dir");
  r->Add("max-queue-size", &max_queue_size, "queued requests before RESOURCE_EXHAUSTED / 503");
  r->Add("length-aware-batching", &length_aware, "group requests of similar audio length into a batch");
  r->Add("request-timeout-us", &default_timeout_us,
         "a request still queued after this long is refused with DEADLINE_EXCEEDED (0: no limit; a request's "
         "'timeout' parameter, in microseconds as in Triton, overrides it)");
}

Status OfflineBatcherConfig::Validate() const {
  if (max_batch_size < 1 || max_batch_size > 4096) {
    return InvalidArgument("max_batch_size must be in [1, 4096], got " + std::to_string(max_batch_size));
  }
  if (max_queue_delay_us < 0 || max_queue_delay_us > 10'000'000) {
    return InvalidArgument("max_queue_delay_us must be in [0, 10000000], got " +
                           std::to_string(max_queue_delay_us));
  }
  if (default_timeout_us < 0) return InvalidArgument("request_timeout_us must be >= 0 (0: no limit)");
  for (int p : preferred_batch_sizes) {
    if (p < 1 || p > max_batch_size) {
      return InvalidArgument("preferred batch size " + std::to_string(p) +
                             " is outside [1, max_batch_size=" + std::to_string(max_batch_size) + "]");
    }
  }
  if (num_workers < 1 || num_workers > 256) {
    return InvalidArgument("num_workers must be in [1, 256], got " + std::to_string(num_workers));
  }
  if (max_queue_size < 1)
    return InvalidArgument("max_queue_size must be >= 1, got " + std::to_string(max_queue_size));
  return Status::Ok();
}

std::string OfflineBatcherConfig::ToString() const {
  std::ostringstream os;
  os << "OfflineBatcherConfig(max_batch_size=" << max_batch_size
     << ", max_queue_delay_us=" << max_queue_delay_us << ", preferred_batch_sizes=[";
  for (size_t i = 0; i < preferred_batch_sizes.size(); ++i) os << (i ? "," : "") << preferred_batch_sizes[i];
  os << "], num_workers=" << num_workers << ", max_queue_size=" << max_queue_size
     << ", length_aware=" << (length_aware ? "true" : "false") << ")";
  return os.str();
}

StatusOr<std::unique_ptr<OfflineBatcher>> OfflineBatcher::Create(const OfflineBatcherConfig& config,
                                                                 RecognizeFunction recognize) {
  U2_RETURN_IF_ERROR(config.Validate());
  if (!recognize) return InvalidArgument("OfflineBatcher needs a recognize function");
  return std::unique_ptr<OfflineBatcher>(new OfflineBatcher(config, std::move(recognize)));
}

OfflineBatcher::OfflineBatcher(const OfflineBatcherConfig& config, RecognizeFunction recognize)
    : config_(config), recognize_(std::move(recognize)) {
  std::sort(config_.preferred_batch_sizes.begin(), config_.preferred_batch_sizes.end());
  workers_.reserve(config_.num_workers);
  for (int i = 0; i < config_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

OfflineBatcher::~OfflineBatcher() { Shutdown(); }

Status OfflineBatcher::Submit(OfflineTask task) {
  if (task.waveforms.empty()) return InvalidArgument("a recognition task needs at least one waveform");
  if (static_cast<int>(task.waveforms.size()) > config_.max_batch_size) {
    return InvalidArgument("batch of " + std::to_string(task.waveforms.size()) + " exceeds max_batch_size " +
                           std::to_string(config_.max_batch_size));
  }
  if (!task.done) return InvalidArgument("a recognition task needs a completion callback");
  Queued q;
  q.utterances = static_cast<int>(task.waveforms.size());
  for (const Waveform& w : task.waveforms) q.max_samples = std::max<int64_t>(q.max_samples, w.samples.size());
  q.task = std::move(task);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Unavailable("the server is shutting down");
    if (static_cast<int>(queue_.size()) >= config_.max_queue_size) {
      return ResourceExhausted("request queue is full (" + std::to_string(config_.max_queue_size) +
                               " requests waiting); retry later");
    }
    q.arrival = Clock::now();
    queue_.push_back(std::move(q));
  }
  cv_.notify_one();
  return Status::Ok();
}

void OfflineBatcher::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

int OfflineBatcher::queued_tasks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(queue_.size());
}

int OfflineBatcher::running_tasks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

std::vector<OfflineBatcher::Queued> OfflineBatcher::TakeBatchLocked(Clock::time_point now,
                                                                    Clock::time_point* wake) {
  const auto delay = std::chrono::microseconds(config_.max_queue_delay_us);
  std::vector<std::string> seen_keys;
  for (size_t first = 0; first < queue_.size(); ++first) {
    const std::string& key = queue_[first].task.batch_key;
    if (std::find(seen_keys.begin(), seen_keys.end(), key) != seen_keys.end()) continue;
    seen_keys.push_back(key);

    std::vector<size_t> members;  // queue indices with this key, oldest first
    int total = 0;
    for (size_t i = first; i < queue_.size(); ++i) {
      if (queue_[i].task.batch_key != key) continue;
      members.push_back(i);
      total += queue_[i].utterances;
    }
    const Clock::time_point deadline = queue_[first].arrival + delay;
    const bool delay_over = stopping_ || now >= deadline;
    const bool preferred_reached =
        !config_.preferred_batch_sizes.empty() && total >= config_.preferred_batch_sizes.front();
    if (total < config_.max_batch_size && !delay_over && !preferred_reached) {
      *wake = std::min(*wake, deadline);
      continue;
    }
    int target = std::min(total, config_.max_batch_size);
    if (!delay_over && total < config_.max_batch_size && preferred_reached) {
      // Run the largest preferred size we can fill; the rest keeps waiting for company.
      for (int p : config_.preferred_batch_sizes) {
        if (p <= total) target = p;
      }
    }
    // The oldest task always rides; then the closest lengths (or arrival order).
    std::vector<size_t> order(members.begin() + 1, members.end());
    if (config_.length_aware) {
      const int64_t seed_len = queue_[first].max_samples;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return std::llabs(queue_[a].max_samples - seed_len) < std::llabs(queue_[b].max_samples - seed_len);
      });
    }
    std::vector<size_t> chosen = {first};
    int filled = queue_[first].utterances;
    for (size_t i : order) {
      if (filled >= target) break;
      if (filled + queue_[i].utterances > target) continue;
      chosen.push_back(i);
      filled += queue_[i].utterances;
    }
    std::sort(chosen.begin(), chosen.end());
    std::vector<Queued> batch;
    batch.reserve(chosen.size());
    for (size_t i : chosen) batch.push_back(std::move(queue_[i]));
    for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) queue_.erase(queue_.begin() + *it);
    return batch;
  }
  return {};
}

void OfflineBatcher::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Drop tasks whose clients have gone, or whose deadline has passed, before they cost any compute.
    std::vector<Queued> dropped;
    const Clock::time_point now_dropping = Clock::now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      const bool gone = it->task.cancelled && it->task.cancelled();
      const bool late = it->task.deadline && now_dropping >= *it->task.deadline;
      if (gone || late) {
        it->late = late && !gone;
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (!dropped.empty()) {
      lock.unlock();
      const Clock::time_point now = Clock::now();
      for (Queued& q : dropped) {
        OfflineTaskTiming timing;
        timing.queue_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - q.arrival).count();
        q.task.done(q.late ? DeadlineExceeded("the request waited in the queue past its deadline (timeout)")
                           : Unavailable("request cancelled by the client"),
                    timing);
      }
      lock.lock();
      continue;
    }
    if (queue_.empty()) {
      if (stopping_) return;
      cv_.wait(lock);
      continue;
    }
    const Clock::time_point now = Clock::now();
    Clock::time_point wake = Clock::time_point::max();
    std::vector<Queued> batch = TakeBatchLocked(now, &wake);
    if (batch.empty()) {
      cv_.wait_until(lock, wake);
      continue;
    }
    running_ += static_cast<int>(batch.size());
    const int n = static_cast<int>(batch.size());
    // Another worker may be able to start the next batch right away.
    if (!queue_.empty()) cv_.notify_one();
    lock.unlock();
    Execute(std::move(batch));
    lock.lock();
    running_ -= n;
  }
}

OfflineResults OfflineBatcher::RecognizeGuarded(std::span<const Waveform> batch,
                                                const DecodingOptions& options) const {
  // One batch's failure must not end the worker (and the server): an exception from the engine or
  // a library (std::bad_alloc on a huge batch, the GPU out of memory) fails this batch with its
  // message.
  try {
    return recognize_(batch, options);
  } catch (const std::exception& e) {
    return Internal(std::string("recognition failed: ") + e.what());
  } catch (...) {
    return Internal("recognition failed: unknown exception");
  }
}

void OfflineBatcher::Execute(std::vector<Queued> batch) {
  using std::chrono::duration_cast;
  using std::chrono::nanoseconds;
  const Clock::time_point start = Clock::now();
  uint64_t execution_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    execution_id = next_execution_id_++;
  }
  std::vector<Waveform> waveforms;
  for (const Queued& q : batch)
    waveforms.insert(waveforms.end(), q.task.waveforms.begin(), q.task.waveforms.end());
  const DecodingOptions& options = batch.front().task.options;
  const Clock::time_point infer_start = Clock::now();
  OfflineResults all = RecognizeGuarded(waveforms, options);
  const Clock::time_point infer_end = Clock::now();

  const int batch_size = static_cast<int>(waveforms.size());
  std::vector<OfflineResults> per_task;
  per_task.reserve(batch.size());
  if (all.ok() && static_cast<int>(all->size()) == batch_size) {
    size_t offset = 0;
    for (const Queued& q : batch) {
      std::vector<RecognitionResult> mine(std::make_move_iterator(all->begin() + offset),
                                          std::make_move_iterator(all->begin() + offset + q.utterances));
      offset += q.utterances;
      per_task.emplace_back(std::move(mine));
    }
  } else if (batch.size() == 1) {
    per_task.emplace_back(all.ok() ? Internal("recognizer returned " + std::to_string(all->size()) +
                                              " results for " + std::to_string(batch_size) + " waveforms")
                                   : all.status());
  } else {
    // One bad request must not fail the others that happened to share its batch: rerun alone.
    for (const Queued& q : batch) per_task.push_back(RecognizeGuarded(q.task.waveforms, q.task.options));
  }
  const Clock::time_point end = Clock::now();

  for (size_t i = 0; i < batch.size(); ++i) {
    OfflineTaskTiming timing;
    timing.queue_ns = duration_cast<nanoseconds>(start - batch[i].arrival).count();
    timing.compute_input_ns = duration_cast<nanoseconds>(infer_start - start).count();
    timing.compute_infer_ns = duration_cast<nanoseconds>(infer_end - infer_start).count();
    timing.compute_output_ns = duration_cast<nanoseconds>(end - infer_end).count();
    timing.execution_batch_size = batch_size;
    timing.execution_id = execution_id;
    timing.first_in_execution = (i == 0);
    batch[i].task.done(std::move(per_task[i]), timing);
  }
}

}  // namespace u2
