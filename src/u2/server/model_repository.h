// The served models as clients see them: a name, a decoding mode (offline names) or stream
// defaults (streaming names), and the engine pieces behind it. One model directory is served
// under several names (attention_rescoring, ctc_greedy, ctc_prefix_beam_search, streaming_wenet)
// that share its recognizer, its offline batcher and its stream scheduler. Also answers what the
// protocols ask about the models: Triton's metadata and config messages and extensions.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grpc_service.pb.h"
#include "model_config.pb.h"
#include "u2/engine/long_audio.h"
#include "u2/engine/offline_batcher.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/stream_scheduler.h"
#include "u2/model/model_config.h"
#include "u2/server/model_stats.h"
#include "u2/util/status.h"

namespace u2::server {

struct ServedModel {
  std::string name;
  std::string model_dir;
  std::shared_ptr<const Recognizer> recognizer;  // null in tests that use a fake engine
  ModelConfig model_config;                      // what request options are validated against
  // Offline names: the mode and parameters of this name, and the model dir's batcher.
  DecodingOptions defaults;
  OfflineBatcher* batcher = nullptr;
  // Streaming names: the model dir's stream scheduler and the per-stream defaults (request
  // parameters may override them).
  StreamScheduler* streams = nullptr;
  StreamOptions stream_defaults;
  // Longest audio the model takes whole, at kWireSampleRate: an utterance (offline) or one request
  // (streaming). Offline recordings longer than this are segmented by `long_audio`'s VAD when
  // the server has one, else refused.
  int64_t max_samples = 0;
  const LongAudioRecognizer* long_audio = nullptr;
  ModelStats stats;

  bool streaming() const { return streams != nullptr; }
};

class ModelRepository {
 public:
  // The advertised max_batch_size of the streaming names (WeNet's streaming_wenet config).
  static constexpr int kMaxSequenceBatchSize = 512;

  void Add(std::unique_ptr<ServedModel> model);
  // Looks up `name` / `version` ("" or "1"). NotFound otherwise, with Triton's message.
  StatusOr<ServedModel*> Find(const std::string& name, const std::string& version) const;
  // The model a WebSocket stream goes to: with `name` empty the first streaming model;
  // otherwise the streaming model called `name`, or whose name starts with "`name`-", or whose
  // model directory is named `name`. NotFound listing the choices otherwise.
  StatusOr<ServedModel*> FindStreaming(const std::string& name) const;
  std::vector<ServedModel*> models() const;

  // Protocol views: server extensions, a model's metadata and its (Triton) config.
  std::vector<std::string> Extensions() const;
  inference::ModelMetadataResponse Metadata(const ServedModel& m) const;
  inference::ModelConfig Config(const ServedModel& m) const;
  // Triton statistics: all models when name is empty; NotFound for an unknown name or version.
  StatusOr<inference::ModelStatisticsResponse> Statistics(const std::string& name,
                                                          const std::string& version) const;
  // Requests queued in the offline batchers (each shared batcher counted once).
  int pending_requests() const;

 private:
  std::vector<std::unique_ptr<ServedModel>> models_;
};

}  // namespace u2::server
