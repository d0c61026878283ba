// The protocol-independent core of u2serve: the served models, request validation, the
// dynamic batcher hand-off and Triton-style statistics. The gRPC and HTTP front ends translate
// their wire formats into InferRequest / InferResponse and call InferenceService::Infer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "grpc_service.pb.h"
#include "model_config.pb.h"
#include "u2/engine/offline_batcher.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/stream_scheduler.h"
#include "u2/util/status.h"

namespace u2::server {

inline constexpr const char* kServerName = "u2serve";
inline constexpr const char* kServerVersion = "0.1.0";
inline constexpr const char* kPlatform = "u2serve";
inline constexpr const char* kModelVersion = "1";

// One request parameter, as both protocols carry them.
using Parameter = std::variant<bool, int64_t, std::string, double, uint64_t>;

struct InputTensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::string_view data;  // raw little-endian bytes (points into the request or into `owned`)
  std::string owned;      // storage for data converted from typed/JSON contents
};

struct InferRequest {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::map<std::string, Parameter> parameters;
  std::vector<InputTensor> inputs;
  std::vector<std::string> requested_outputs;  // empty: all outputs
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
  std::function<bool()> cancelled;  // optional: the client has gone
  // Optional: the transport session (a gRPC stream) that sent it, from
  // InferenceService::NewClientSession(); the sequences it fed last are closed when that session
  // ends abnormally (CloseClientSession). 0: none (the sequence can only time out).
  uint64_t client_session = 0;
};

struct OutputTensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::vector<std::string> strings;  // BYTES elements
  std::string RawBytes() const;      // 4-byte little-endian length + data per element
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<OutputTensor> outputs;
};

using InferCallback = std::function<void(const Status& status, InferResponse response)>;

// Cumulative Triton statistics of one served model (all counts per request unless noted).
class ModelStats {
 public:
  struct Duration {
    uint64_t count = 0;
    uint64_t ns = 0;
    void Add(int64_t n) {
      ++count;
      ns += static_cast<uint64_t>(std::max<int64_t>(n, 0));
    }
  };
  struct Batch {
    Duration compute_input, compute_infer, compute_output;
  };
  enum class FailReason { kRejected, kCanceled, kBackend, kOther };
  struct Snapshot {
    uint64_t last_inference_ms = 0;
    uint64_t inference_count = 0;  // utterances (batch items)
    uint64_t execution_count = 0;  // Recognize() calls
    Duration success, fail, queue, compute_input, compute_infer, compute_output;
    std::map<uint64_t, Batch> batch_stats;  // by execution batch size
    std::map<std::string, uint64_t> failures_by_reason;
    double audio_seconds = 0;
  };

  void RecordSuccess(int64_t request_ns, const OfflineTaskTiming& timing, int batch_items,
                     double audio_seconds);
  void RecordFailure(int64_t request_ns, FailReason reason);
  Snapshot Get() const;

 private:
  mutable std::mutex mu_;
  Snapshot s_;
};

// A model as clients see it: a name, a decoding mode, and the engine + batcher behind it.
struct ServedModel {
  std::string name;
  std::string model_dir;
  DecodingOptions defaults;                      // the mode and parameters of this name
  std::shared_ptr<const Recognizer> recognizer;  // null in tests that use a fake engine
  OfflineBatcher* batcher = nullptr;             // shared by the names of one model dir
  // Streaming models (streaming_wenet, and the WebSocket endpoint): the model dir's stream
  // scheduler; null for offline names.
  StreamScheduler* streams = nullptr;
  int64_t max_samples = 0;  // longest utterance (offline) or request (streaming) accepted, at 16 kHz
  std::function<Status(const DecodingOptions&)> validate_options;
  // Streaming names: the per-stream defaults (request parameters on a sequence's START request
  // may override them).
  StreamOptions stream_defaults;
  ModelStats stats;
};

struct ServingOptions {
  int max_batch_size = 64;  // advertised max_batch_size and the per-request limit
  std::vector<int> preferred_batch_sizes;
  int64_t max_queue_delay_us = 0;
  int max_sequence_batch_size = 512;  // advertised max_batch_size of the streaming names
};

class InferenceService {
 public:
  explicit InferenceService(ServingOptions options) : options_(std::move(options)) {}

  // Registers a model name (the service does not own the batcher).
  void AddModel(std::unique_ptr<ServedModel> model);
  void SetReady(bool ready) { ready_ = ready; }
  bool ready() const { return ready_ && !draining_; }
  // Stops accepting inference (Unavailable) while in-flight requests finish.
  void StartDraining() { draining_ = true; }
  int in_flight() const { return in_flight_; }

  // Looks up `name` / `version` ("" or "1"). NotFound otherwise.
  StatusOr<ServedModel*> Find(const std::string& name, const std::string& version) const;
  std::vector<ServedModel*> models() const;

  // Validates the request and queues it. `done` is always called exactly once, possibly before
  // Infer returns (errors) or later from a batcher thread.
  void Infer(InferRequest request, InferCallback done);

  // A Triton sequence request that came on a client session is tied to it: when the session
  // ends abnormally (gRPC stream cancelled, client gone), CloseClientSession closes the sequences
  // it fed last, at once, instead of leaving them to the idle timeout.
  uint64_t NewClientSession() { return ++last_client_session_; }
  void CloseClientSession(uint64_t session);

  // Protocol views of the models and the server.
  std::vector<std::string> Extensions() const;
  inference::ModelMetadataResponse Metadata(const ServedModel& m) const;
  inference::ModelConfig Config(const ServedModel& m) const;
  // All models when name is empty; NotFound for an unknown name or version.
  StatusOr<inference::ModelStatisticsResponse> Statistics(const std::string& name,
                                                          const std::string& version) const;
  // Prometheus text exposition of every model's counters (Triton names plus u2_*).
  std::string PrometheusText() const;
  int pending_requests() const;

  const ServingOptions& options() const { return options_; }

 private:
  StatusOr<DecodingOptions> OptionsFor(const ServedModel& m, const InferRequest& r) const;
  StatusOr<StreamOptions> StreamOptionsFor(const ServedModel& m, const InferRequest& r) const;
  // Triton's sequence batcher semantics (START / END / idle timeout / restart) on top of the
  // model's StreamScheduler; one response per request.
  void InferSequence(ServedModel* m, InferRequest request, InferCallback done);

  // One live Triton sequence: the scheduler stream that serves it now. A restart (START on a
  // live id) or a new sequence after END gets a new stream id, so what is still queued for the
  // old stream completes undisturbed.
  struct Sequence {
    std::string stream_id;
    std::atomic<int> pending{0};  // requests fed, not yet answered
    uint64_t client_session = 0;  // the session that fed it last (0: none)
  };
  using SequenceKey = std::pair<const ServedModel*, std::string>;
  // With sequences_mu_ held: drops the entries whose streams the scheduler no longer has (idle
  // timeout, stream error) once there are many of them.
  void SweepSequencesLocked();

  ServingOptions options_;
  std::vector<std::unique_ptr<ServedModel>> models_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> last_client_session_{0};
  mutable std::mutex sequences_mu_;
  std::map<SequenceKey, std::shared_ptr<Sequence>> sequences_;
  uint64_t next_stream_generation_ = 1;
  size_t sweep_at_ = 64;
};

// Decodes a request's WAV / WAV_LENS tensors into per-utterance sample vectors (trimmed to
// WAV_LENS), checking names, datatypes, shapes, byte sizes, lengths and finiteness. Exposed for
// the front ends' tests.
StatusOr<std::vector<std::vector<float>>> DecodeAudioInputs(const InferRequest& request,
                                                            const std::string& model, int max_batch_size,
                                                            int64_t max_samples);

// Maps a Status to Triton's HTTP status code (§5.3 mapping).
int HttpStatusFor(const Status& status);

}  // namespace u2::server
