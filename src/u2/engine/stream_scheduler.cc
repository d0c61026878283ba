#include "u2/engine/stream_scheduler.h"

#include <algorithm>
#include <sstream>

#include "u2/util/option_registry.h"

namespace u2 {

void StreamSchedulerConfig::Register(OptionRegistry* r) {
  r->Add("max-streams", &max_streams, "live streams (sequences) per model dir; 0: no streaming_wenet");
  r->Add("stream-idle-timeout-ms", &idle_timeout_ms, "a sequence with no request for this long is dropped");
  r->Add("max-stream-batch", &max_batch_streams, "stream chunks per batched encoder call");
  r->Add("stream-batch-delay-us", &max_batch_delay_us,
         "longest a chunk waits for other streams' chunks to batch with");
  r->Add("stream-workers", &num_workers, "concurrent batched streaming steps per model dir");
}

Status StreamSchedulerConfig::Validate() const {
  if (max_streams < 1) return InvalidArgument("max_streams must be >= 1, got " + std::to_string(max_streams));
  if (max_batch_streams < 1) {
    return InvalidArgument("max_batch_streams must be >= 1, got " + std::to_string(max_batch_streams));
  }
  if (idle_timeout_ms < 1)
    return InvalidArgument("idle_timeout_ms must be >= 1, got " + std::to_string(idle_timeout_ms));
  if (max_batch_delay_us < 0 || max_batch_delay_us > 1000000) {
    return InvalidArgument("max_batch_delay_us must be in [0, 1000000], got " +
                           std::to_string(max_batch_delay_us));
  }
  if (num_workers < 1 || num_workers > 64) {
    return InvalidArgument("num_workers must be in [1, 64], got " + std::to_string(num_workers));
  }
  return Status::Ok();
}

std::string StreamSchedulerConfig::ToString() const {
  std::ostringstream os;
  os << "StreamSchedulerConfig(max_streams=" << max_streams << ", max_batch_streams=" << max_batch_streams
     << ", idle_timeout_ms=" << idle_timeout_ms << ", max_batch_delay_us=" << max_batch_delay_us
     << ", num_workers=" << num_workers << ")";
  return os.str();
}

StatusOr<std::unique_ptr<StreamScheduler>> StreamScheduler::Create(
    std::shared_ptr<const StreamingRecognizer> recognizer, const StreamSchedulerConfig& config) {
  if (!recognizer) return InvalidArgument("StreamScheduler needs a streaming recognizer");
  U2_RETURN_IF_ERROR(config.Validate());
  return std::unique_ptr<StreamScheduler>(new StreamScheduler(std::move(recognizer), config));
}

StreamScheduler::StreamScheduler(std::shared_ptr<const StreamingRecognizer> recognizer,
                                 const StreamSchedulerConfig& config)
    : recognizer_(std::move(recognizer)), config_(config) {
  for (int i = 0; i < config_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

StreamScheduler::~StreamScheduler() { Shutdown(); }

namespace {
void RunAll(std::vector<std::function<void()>>& replies) {
  for (auto& r : replies) r();
  replies.clear();
}
}  // namespace

Status StreamScheduler::Start(const std::string& id, const StreamOptions& options, int input_sample_rate) {
  // Made outside the lock: validation and allocation need no shared state.
  U2_ASSIGN_OR_RETURN(std::unique_ptr<RecognitionStream> stream, recognizer_->NewStream(options));
  auto frontend = std::make_shared<Frontend>(recognizer_->NewFrontend(stream->options()));
  const int model_rate = recognizer_->sample_rate();
  if (input_sample_rate != 0 && input_sample_rate != model_rate) {
    U2_ASSIGN_OR_RETURN(frontend->resampler, StreamingResampler::Create(input_sample_rate, model_rate));
  }
  std::vector<std::function<void()>> replies;
  Status result = Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Unavailable("the stream scheduler is shutting down");
    if (slots_.count(id)) {
      DropLocked(id, FailedPrecondition("stream '" + id + "' was restarted"), &replies);
      ++stats_.streams_closed;
    }
    if (static_cast<int>(slots_.size()) >= config_.max_streams) {
      result = ResourceExhausted("too many concurrent streams: " + std::to_string(slots_.size()) +
                                 " are live, the limit is " + std::to_string(config_.max_streams));
    } else {
      auto slot = std::make_unique<Slot>();
      slot->id = id;
      slot->generation = next_generation_++;
      slot->stream = std::move(stream);
      slot->frontend = std::move(frontend);
      slot->last_activity = Clock::now();
      slot->memory_bytes = slot->stream->MemoryBytes();
      slots_.emplace(id, std::move(slot));
      ++stats_.streams_started;
    }
  }
  RunAll(replies);
  return result;
}

void StreamScheduler::Feed(const std::string& id, std::vector<float> samples, bool last,
                           StreamCallback done) {
  std::vector<std::function<void()>> replies;
  auto refuse = [&](const Status& why) {
    ++stats_.feed_errors;
    replies.push_back([done = std::move(done), why] { done(why, {}); });
  };
  std::shared_ptr<Frontend> frontend;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.feeds;
    auto it = slots_.find(id);
    if (stopping_ || it == slots_.end()) {
      refuse(stopping_ ? Unavailable("the stream scheduler is shutting down")
                       : NotFound("no live stream '" + id + "' (never started, ended or timed out)"));
    } else {
      frontend = it->second->frontend;
    }
  }
  if (frontend) {
    // Features outside the scheduler's lock, in this stream's order (its frontend's lock is held
    // until the feed is queued).
    std::lock_guard<std::mutex> order(frontend->mu);
    Status st;
    std::vector<FeaturePiece> pieces;
    try {
      if (frontend->resampler) {
        auto resampled = frontend->resampler->Process(samples, last);
        st = resampled.status();
        if (st.ok()) samples = std::move(resampled).value();
      }
      if (st.ok()) {
        auto accepted = frontend->features->Accept(samples);
        st = accepted.status();
        if (st.ok()) pieces = std::move(accepted).value();
      }
      if (st.ok() && last) {
        for (FeaturePiece& piece : frontend->features->Finish()) pieces.push_back(std::move(piece));
      }
    } catch (const std::exception& e) {
      st = Internal(std::string("feature extraction failed: ") + e.what());
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(id);
    if (stopping_ || it == slots_.end() || it->second->frontend != frontend) {
      // Shut down, closed, timed out or restarted while the features were computed.
      refuse(stopping_ ? Unavailable("the stream scheduler is shutting down")
                       : NotFound("no live stream '" + id + "' (ended, closed or restarted)"));
    } else if (!st.ok()) {
      refuse(st);  // bad samples: nothing of them was accepted; the stream stays usable
    } else {
      Slot& slot = *it->second;
      slot.feeds.push_back(
          {std::move(pieces), static_cast<int64_t>(samples.size()), last, std::move(done), 0, false});
      slot.last_activity = Clock::now();
      if (!slot.busy) AdvanceFeedsLocked(slot, &replies);
      work_posted_ = true;
    }
  }
  cv_.notify_all();
  RunAll(replies);
}

Status StreamScheduler::Close(const std::string& id) {
  std::vector<std::function<void()>> replies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!slots_.count(id)) return NotFound("no live stream '" + id + "'");
    DropLocked(id, FailedPrecondition("stream '" + id + "' was closed"), &replies);
    ++stats_.streams_closed;
  }
  RunAll(replies);
  return Status::Ok();
}

bool StreamScheduler::IsLive(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return slots_.count(id) > 0;
}

void StreamScheduler::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::vector<std::function<void()>> replies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, slot] : slots_)
      FailFeedsLocked(*slot, Unavailable("the stream scheduler is shutting down"), &replies);
    slots_.clear();
    detached_.clear();
  }
  RunAll(replies);
}

StreamScheduler::Stats StreamScheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.live_streams = static_cast<int>(slots_.size());
  s.state_bytes = 0;
  for (const auto& [id, slot] : slots_) s.state_bytes += slot->memory_bytes;
  return s;
}

void StreamScheduler::FailFeedsLocked(Slot& slot, const Status& why,
                                      std::vector<std::function<void()>>* replies) {
  for (PendingFeed& f : slot.feeds) {
    replies->push_back([done = std::move(f.done), why] { done(why, {}); });
  }
  slot.feeds.clear();
}

void StreamScheduler::DropLocked(const std::string& id, const Status& why,
                                 std::vector<std::function<void()>>* replies) {
  auto it = slots_.find(id);
  if (it == slots_.end()) return;
  if (it->second->busy) {
    // A worker is using the stream right now; it answers the feeds and frees the slot after its step.
    it->second->closing = true;
    it->second->close_status = why;
    detached_.push_back(std::move(it->second));
  } else {
    FailFeedsLocked(*it->second, why, replies);
  }
  slots_.erase(it);
}

void StreamScheduler::AdvanceFeedsLocked(Slot& slot, std::vector<std::function<void()>>* replies) {
  RecognitionStream& stream = *slot.stream;
  while (!slot.feeds.empty()) {
    PendingFeed& head = slot.feeds.front();
    if (!head.accepted) {
      Status st;
      try {
        st = stream.AcceptFeatures(std::move(head.pieces), head.num_samples);
      } catch (const std::exception& e) {
        st = Internal(std::string("accepting features failed: ") + e.what());
      }
      if (!st.ok()) {
        ++stats_.feed_errors;
        replies->push_back([done = std::move(head.done), st] { done(st, {}); });
        slot.feeds.pop_front();
        continue;  // the stream is unchanged and stays usable
      }
      if (head.last) stream.InputFinished();
      head.accepted = true;
      head.chunks_at_accept = stream.num_chunks_decoded();
      head.pieces = {};
    }
    if (stream.IsReady()) return;  // its audio still has chunks to decode
    StreamUpdate update;
    update.results = std::move(slot.undelivered);
    slot.undelivered.clear();
    for (StreamResult& r : stream.TakeResults()) update.results.push_back(std::move(r));
    update.partial = stream.CurrentPartial();
    update.chunks_decoded = stream.num_chunks_decoded() - head.chunks_at_accept;
    update.stream_done = stream.IsDone();
    replies->push_back([done = std::move(head.done), update = std::move(update)]() mutable {
      done(Status::Ok(), std::move(update));
    });
    slot.feeds.pop_front();
    if (stream.IsDone()) {
      ++stats_.streams_finished;
      FailFeedsLocked(slot, FailedPrecondition("stream '" + slot.id + "' has already ended"), replies);
      const std::string id = slot.id;
      slots_.erase(id);  // frees `slot`
      return;
    }
  }
}

void StreamScheduler::ExpireIdleLocked(Clock::time_point now, std::vector<std::function<void()>>* replies) {
  const auto timeout = std::chrono::milliseconds(config_.idle_timeout_ms);
  for (auto it = slots_.begin(); it != slots_.end();) {
    Slot& slot = *it->second;
    if (!slot.busy && slot.feeds.empty() && now - slot.last_activity > timeout) {
      ++stats_.streams_timed_out;
      it = slots_.erase(it);
    } else {
      ++it;
    }
  }
  (void)replies;
}

std::vector<StreamScheduler::Slot*> StreamScheduler::CollectReadyLocked(
    std::vector<std::function<void()>>* replies) {
  std::vector<Slot*> ready;
  std::vector<std::string> ids;
  for (auto& [id, slot] : slots_) ids.push_back(id);  // AdvanceFeedsLocked may erase slots
  for (const std::string& id : ids) {
    auto it = slots_.find(id);
    if (it == slots_.end() || it->second->busy) continue;
    Slot* slot = it->second.get();
    AdvanceFeedsLocked(*slot, replies);
    it = slots_.find(id);
    if (it == slots_.end() || it->second.get() != slot) continue;
    if (slot->stream->IsReady()) ready.push_back(slot);
  }
  // Oldest-served first, so no stream starves when more are ready than one batch takes.
  std::sort(ready.begin(), ready.end(),
            [](const Slot* a, const Slot* b) { return a->last_step < b->last_step; });
  if (static_cast<int>(ready.size()) > config_.max_batch_streams) ready.resize(config_.max_batch_streams);
  for (Slot* s : ready) s->busy = true;
  return ready;
}

void StreamScheduler::WorkerLoop() {
  std::vector<std::function<void()>> replies;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    work_posted_ = false;
    ExpireIdleLocked(Clock::now(), &replies);
    std::vector<Slot*> batch = CollectReadyLocked(&replies);
    if (batch.empty()) {
      lock.unlock();
      RunAll(replies);
      lock.lock();
      if (stopping_) break;
      // Woken by Feed (work_posted_ also covers a Feed that came while this thread was busy
      // outside the lock); the timeout only serves the idle-stream sweep.
      cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(config_.idle_timeout_ms, 100)),
                   [this] { return stopping_ || work_posted_; });
      work_posted_ = false;
      continue;
    }
    if (config_.max_batch_delay_us > 0 && static_cast<int>(batch.size()) < config_.max_batch_streams) {
      // Give streams whose chunks are about to arrive a moment to join this step.
      cv_.wait_for(lock, std::chrono::microseconds(config_.max_batch_delay_us));
      std::vector<Slot*> more = CollectReadyLocked(&replies);
      const size_t room = static_cast<size_t>(config_.max_batch_streams) - batch.size();
      for (size_t k = 0; k < more.size(); ++k) {
        if (k < room)
          batch.push_back(more[k]);
        else
          more[k]->busy = false;
      }
    }
    const uint64_t step = ++step_counter_;
    lock.unlock();
    RunAll(replies);

    std::vector<RecognitionStream*> streams;
    streams.reserve(batch.size());
    for (Slot* s : batch) streams.push_back(s->stream.get());
    const int chunks_before = [&] {
      int n = 0;
      for (RecognitionStream* s : streams) n += s->num_chunks_decoded();
      return n;
    }();
    std::vector<Status> errors;
    const auto t0 = Clock::now();
    // An exception in one step (std::bad_alloc, a library error) fails that step's streams with
    // its message; the worker, and every other stream, goes on.
    Status step_status;
    try {
      if (step_hook_) step_hook_();
      step_status = recognizer_->DecodeStreams(streams, &errors);
    } catch (const std::exception& e) {
      step_status = Internal(std::string("decoding step failed: ") + e.what());
    } catch (...) {
      step_status = Internal("decoding step failed: unknown exception");
    }
    const auto t1 = Clock::now();
    int chunks_after = 0;
    for (RecognitionStream* s : streams) chunks_after += s->num_chunks_decoded();
    std::vector<size_t> bytes(batch.size());
    for (size_t k = 0; k < batch.size(); ++k) bytes[k] = batch[k]->stream->MemoryBytes();

    lock.lock();
    ++stats_.steps;
    stats_.chunks += static_cast<uint64_t>(chunks_after - chunks_before);
    stats_.step_ns +=
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    for (size_t k = 0; k < batch.size(); ++k) {
      Slot* slot = batch[k];
      slot->busy = false;
      // The idle timeout counts from the stream's last work, not from its last feed's arrival: a
      // client answered late (a slow step) still has the whole timeout to send its next piece.
      slot->last_activity = t1;
      slot->last_step = step;
      slot->memory_bytes = bytes[k];
      if (slot->closing) {
        FailFeedsLocked(*slot, slot->close_status, &replies);
        std::erase_if(detached_, [slot](const std::unique_ptr<Slot>& p) { return p.get() == slot; });
        continue;
      }
      const Status st = !step_status.ok() ? step_status : (k < errors.size() ? errors[k] : Status::Ok());
      if (!st.ok()) {
        // The stream cannot go on: every waiting feed learns why, and the slot is freed.
        ++stats_.feed_errors;
        FailFeedsLocked(*slot, st, &replies);
        const std::string id = slot->id;
        slots_.erase(id);
        continue;
      }
      if (slot->feeds.empty()) {
        // Nobody is waiting (e.g. an endpoint during a feed already answered): keep for the next.
        std::erase_if(slot->undelivered,
                      [](const StreamResult& r) { return !r.is_final; });  // stale partials
        for (StreamResult& r : slot->stream->TakeResults()) slot->undelivered.push_back(std::move(r));
      }
      AdvanceFeedsLocked(*slot, &replies);
    }
  }
  lock.unlock();
  RunAll(replies);
}

}  // namespace u2
