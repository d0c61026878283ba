// Triton's sequence batcher semantics (sequence_id / sequence_start / sequence_end, the idle
// timeout, a START on a live id restarting it) on top of a streaming model's StreamScheduler:
// each request of a sequence is one piece of audio, answered with the transcript so far (the
// final, rescored one on END). This is how WeNet's Triton clients stream (streaming_wenet).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "u2/server/kserve_types.h"
#include "u2/server/model_repository.h"

namespace u2::server {

class TritonSequences {
 public:
  // `in_flight` counts the requests fed and not yet answered (the graceful drain waits on it).
  // `unknown_retryable`: a request for a sequence not held here is Unavailable, not
  // InvalidArgument (ServerConfig::unknown_sequence_retryable).
  explicit TritonSequences(std::atomic<int>* in_flight, bool unknown_retryable = false)
      : in_flight_(in_flight), unknown_retryable_(unknown_retryable) {}

  // One request to a streaming model; `done` runs once, possibly later from a scheduler thread.
  // While `draining`, only requests of live sequences are taken (the graceful drain lets them
  // finish); a START, or a request for a sequence this server does not hold, is Unavailable.
  void Infer(ServedModel* m, InferRequest request, InferCallback done, bool draining = false);

  // A sequence request that came on a client session is tied to it: when the session ends
  // abnormally (gRPC stream cancelled, client gone), this closes the sequences it fed last, at
  // once, instead of leaving them to the idle timeout.
  void CloseClientSession(uint64_t session);

 private:
  // One live sequence: the scheduler stream that serves it now. A restart (START on a live id)
  // or a new sequence after END gets a new stream id, so what is still queued for the old
  // stream completes undisturbed.
  struct Sequence {
    std::string stream_id;
    std::atomic<int> pending{0};  // requests fed, not yet answered
    uint64_t client_session = 0;  // the session that fed it last (0: none)
    std::mutex text_mu;
    std::string closed_text;  // the finals of its closed segments, joined
  };
  using SequenceKey = std::pair<const ServedModel*, std::string>;

  // With mu_ held: drops the entries whose streams the scheduler no longer has (idle timeout,
  // stream error) once there are many of them.
  void SweepLocked();

  std::atomic<int>* const in_flight_;
  const bool unknown_retryable_;
  std::mutex mu_;
  std::map<SequenceKey, std::shared_ptr<Sequence>> sequences_;
  uint64_t next_stream_generation_ = 1;
  size_t sweep_at_ = 64;
};

}  // namespace u2::server
