// Batching across streams: many clients talk at once; every step the scheduler gathers the ready
// chunks of all live streams, whatever their offsets, and decodes them as one batched encoder
// call (StreamingRecognizer::DecodeStreams). Protocol-independent: the Triton sequence front end
// (streaming_wenet over gRPC/HTTP) and the WebSocket front end both use it.
//
// Streams are named by a string id (the caller maps Triton's sequence_id or a WebSocket session
// to one). Each stream takes its audio in Feed()s, processed strictly in order; each Feed gets
// exactly one callback, after every chunk its audio completed has been decoded, carrying the
// results made meanwhile (finals of segments that ended, the latest partial). A stream that
// receives nothing for idle_timeout_ms is dropped (its memory freed); so is one whose client is
// gone (Close). At most max_streams are live; Start() beyond that is refused.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "u2/audio/audio.h"
#include "u2/engine/stream_frontend.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/util/status.h"

namespace u2 {

class OptionRegistry;

struct StreamSchedulerConfig {
  int max_streams = 1024;          // live streams; Start() beyond this is ResourceExhausted
  int max_batch_streams = 64;      // chunks per batched encoder call
  int64_t idle_timeout_ms = 5000;  // a stream with no Feed (nor decoding) for this long is dropped
  int64_t max_batch_delay_us = 0;  // a step may wait this long for more ready chunks to batch
  int num_workers = 1;             // concurrent steps (each on a disjoint set of streams)

  void Register(OptionRegistry* r);
  Status Validate() const;
  std::string ToString() const;
};

// What one Feed produced.
struct StreamUpdate {
  std::vector<StreamResult> results;  // oldest first: finals (is_final) then the latest partial
  StreamResult partial;               // the current segment's partial after this feed (always set)
  bool stream_done = false;           // the stream ended (it has been removed from the scheduler)
  int chunks_decoded = 0;             // encoder chunks this feed's audio completed
};

// Called exactly once per Feed, from a worker thread (or from Feed itself for immediate errors,
// or from Shutdown with Unavailable for feeds never processed).
using StreamCallback = std::function<void(const Status& status, StreamUpdate update)>;

class StreamScheduler {
 public:
  static StatusOr<std::unique_ptr<StreamScheduler>> Create(
      std::shared_ptr<const StreamingRecognizer> recognizer, const StreamSchedulerConfig& config);
  ~StreamScheduler();  // Shutdown()
  StreamScheduler(const StreamScheduler&) = delete;
  StreamScheduler& operator=(const StreamScheduler&) = delete;

  // Opens stream `id` with these options (InvalidArgument if they do not suit the model). If
  // `id` is live already it is restarted: its queued feeds are answered with FailedPrecondition
  // and its state dropped (Triton's behaviour for a second START). ResourceExhausted when max_streams
  // are live; Unavailable after Shutdown.
  // `input_sample_rate`: the rate Feed's audio comes at (0: the model's); other rates are
  // resampled as they arrive (audio/audio.h StreamingResampler), as offline requests are.
  Status Start(const std::string& id, const StreamOptions& options, int input_sample_rate = 0);
  Status Start(const std::string& id) { return Start(id, recognizer_->default_options()); }

  // Queues audio (at the stream's input rate) for stream `id`; `last` = no more audio after this one. The
  // callback gets the update (see StreamUpdate). NotFound (via the callback, immediately) for an
  // id that is not live; InvalidArgument for bad samples (the stream stays usable).
  void Feed(const std::string& id, std::vector<float> samples, bool last, StreamCallback done);

  // Drops stream `id` at once (client gone): queued feeds are answered with FailedPrecondition.
  // NotFound for an unknown id.
  Status Close(const std::string& id);
  bool IsLive(const std::string& id) const;

  // Refuses new work, answers queued feeds with Unavailable, joins the workers. Idempotent.
  void Shutdown();

  struct Stats {
    int live_streams = 0;
    uint64_t streams_started = 0;
    uint64_t streams_finished = 0;   // ended normally (final result delivered)
    uint64_t streams_timed_out = 0;  // dropped by the idle timeout
    uint64_t streams_closed = 0;     // dropped by Close / restart
    uint64_t steps = 0;              // DecodeStreams calls
    uint64_t chunks = 0;             // encoder chunks decoded
    uint64_t feeds = 0;
    uint64_t feed_errors = 0;
    uint64_t step_ns = 0;    // total time in DecodeStreams
    size_t state_bytes = 0;  // memory held by live streams
  };
  Stats stats() const;
  const StreamSchedulerConfig& config() const { return config_; }

  // Tests only: runs before every decoding step, inside the step's guard, so a test can make one
  // step throw (as std::bad_alloc or a library would) and see what the other streams get. Set it
  // before feeding.
  void SetStepHookForTesting(std::function<void()> hook) { step_hook_ = std::move(hook); }
  const StreamingRecognizer& recognizer() const { return *recognizer_; }

 private:
  using Clock = std::chrono::steady_clock;
  // A stream's signal processing, run by Feed's caller outside the scheduler's lock (so streams'
  // FFTs run in parallel); its mutex also keeps one stream's feeds in order.
  struct Frontend {
    explicit Frontend(std::unique_ptr<StreamFrontend> features) : features(std::move(features)) {}
    std::mutex mu;
    std::unique_ptr<StreamingResampler> resampler;  // null when the input is at the model's rate
    std::unique_ptr<StreamFrontend> features;       // fbank, behind the VAD gate if asked for
  };
  struct PendingFeed {
    std::vector<FeaturePiece> pieces;  // the feed's audio as features (Frontend)
    int64_t num_samples = 0;
    bool last = false;
    StreamCallback done;
    int chunks_at_accept = 0;
    bool accepted = false;  // its audio is in the stream
  };
  struct Slot {
    std::string id;
    uint64_t generation = 0;
    std::unique_ptr<RecognitionStream> stream;
    std::shared_ptr<Frontend> frontend;
    std::deque<PendingFeed> feeds;
    std::vector<StreamResult> undelivered;  // results made while no feed was waiting
    Clock::time_point last_activity;
    uint64_t last_step = 0;   // the step that last served it (oldest served first)
    size_t memory_bytes = 0;  // stream->MemoryBytes() after its last step
    bool busy = false;        // a worker is stepping it: only that worker touches `stream`
    bool closing = false;     // dropped while busy: the worker answers its feeds and frees it
    Status close_status;
  };

  StreamScheduler(std::shared_ptr<const StreamingRecognizer> recognizer, const StreamSchedulerConfig& config);
  void WorkerLoop();
  // With the lock held: moves head feeds' features into their streams and answers feeds that are
  // complete; returns the slots with a ready chunk (marked busy), at most max_batch_streams.
  std::vector<Slot*> CollectReadyLocked(std::vector<std::function<void()>>* replies);
  void AdvanceFeedsLocked(Slot& slot, std::vector<std::function<void()>>* replies);
  void ExpireIdleLocked(Clock::time_point now, std::vector<std::function<void()>>* replies);
  void DropLocked(const std::string& id, const Status& why, std::vector<std::function<void()>>* replies);
  static void FailFeedsLocked(Slot& slot, const Status& why, std::vector<std::function<void()>>* replies);

  std::shared_ptr<const StreamingRecognizer> recognizer_;
  StreamSchedulerConfig config_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<Slot>> slots_;
  std::vector<std::unique_ptr<Slot>> detached_;  // closed while a worker was stepping them
  uint64_t step_counter_ = 0;
  uint64_t next_generation_ = 1;
  bool stopping_ = false;
  bool work_posted_ = false;  // a Feed arrived since a worker last scanned for ready streams
  Stats stats_;
  std::function<void()> step_hook_;
  std::vector<std::thread> workers_;
};

}  // namespace u2
