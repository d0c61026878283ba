// Triton's per-model statistics: what the statistics endpoints (gRPC ModelStatistics, HTTP
// /v2/models/.../stats) return and what /metrics exposes (metrics.h).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "grpc_service.pb.h"
#include "model_config.pb.h"
#include "u2/engine/offline_batcher.h"

namespace u2::server {

// Cumulative statistics of one served model (all counts per request unless noted).
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

const char* FailReasonName(ModelStats::FailReason reason);  // "REJECTED", "CANCELED", ...

// One model's snapshot as Triton's ModelStatistics message.
void ToProto(const std::string& name, const ModelStats::Snapshot& s, inference::ModelStatistics* out);

}  // namespace u2::server
