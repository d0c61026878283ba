// Load shedding, counted: every place the server turns work away because it is full, late or being
// abused (rather than because the request is wrong) counts the refusal here by cause, and the
// metrics port exports the counts as u2_refusals_total{cause="..."}. Process-wide, like a
// Prometheus client's default registry: the refusals happen in code that shares nothing else.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace u2::server {

enum class RefusalCause {
  kQueueFull,           // the offline batcher's queue (--max-queue-size): 503 / RESOURCE_EXHAUSTED
  kDeadlineExceeded,    // a request waited past its timeout parameter: 504 / DEADLINE_EXCEEDED
  kTooManyStreams,      // --max-streams sequences or WebSocket streams are live
  kShuttingDown,        // new work while the server drains: 503 / UNAVAILABLE
  kRequestTooLarge,     // an HTTP body over --max-request-bytes: 413
  kRequestTimeout,      // an HTTP request not complete within --http-request-timeout-s (slowloris)
  kTooManyConnections,  // more HTTP connections than --http-max-connections
  kSlowReader,          // a WebSocket client that does not read its results (send queue full)
};
inline constexpr int kNumRefusalCauses = 8;

const char* RefusalCauseName(RefusalCause cause);

class RefusalCounters {
 public:
  static RefusalCounters& Global();
  void Count(RefusalCause cause) { counts_[static_cast<int>(cause)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t count(RefusalCause cause) const {
    return counts_[static_cast<int>(cause)].load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kNumRefusalCauses> counts_{};
};

inline void CountRefusal(RefusalCause cause) { RefusalCounters::Global().Count(cause); }

}  // namespace u2::server
