// The protocol-independent core of u2serve's KServe/Triton front ends. The gRPC and HTTP handlers
// translate their wire formats into an InferRequest and call InferenceService::Infer, which
//   1. finds the model (ModelRepository),
//   2. for a streaming model hands the request to TritonSequences (triton_sequences.h);
//   3. otherwise reads the decoding options (request_parameters.h) and the audio tensors
//      (audio_inputs.h), queues one OfflineTask on the model dir's dynamic batcher, and answers
//      with the TRANSCRIPTS tensor when the batch has run,
// recording Triton's statistics (model_stats.h) on the way.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "u2/server/kserve_types.h"
#include "u2/server/model_repository.h"
#include "u2/server/triton_sequences.h"

namespace u2::server {

class InferenceService {
 public:
  // `unknown_sequence_retryable`: see ServerConfig.
  explicit InferenceService(ModelRepository* models, bool unknown_sequence_retryable = false)
      : models_(models), sequences_(&in_flight_, unknown_sequence_retryable) {}

  ModelRepository& models() const { return *models_; }
  void SetReady(bool ready) { ready_ = ready; }
  bool ready() const { return ready_ && !draining_; }
  // Stops accepting new work (Unavailable) while in-flight requests and live sequences finish;
  // readiness turns false at once.
  void StartDraining() { draining_ = true; }
  bool draining() const { return draining_; }
  int in_flight() const { return in_flight_; }

  // Validates the request and queues it. `done` is always called exactly once, possibly before
  // Infer returns (errors) or later from a batcher or scheduler thread.
  void Infer(InferRequest request, InferCallback done);

  // See TritonSequences::CloseClientSession.
  uint64_t NewClientSession() { return ++last_client_session_; }
  void CloseClientSession(uint64_t session) { sequences_.CloseClientSession(session); }

  // Counts a request that does not go through Infer (OpenAI, WebSocket) for the drain.
  void BeginRequest() { ++in_flight_; }
  void EndRequest() { --in_flight_; }

 private:
  void InferOffline(ServedModel* m, InferRequest request, InferCallback done);

  ModelRepository* const models_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> last_client_session_{0};
  TritonSequences sequences_;
};

// The decoding options of an offline request: the model's defaults with the request's
// parameters, validated against the model.
StatusOr<DecodingOptions> OfflineOptionsFor(const ServedModel& m, const ParameterMap& parameters);

}  // namespace u2::server
