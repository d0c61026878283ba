#include "u2/server/refusals.h"

namespace u2::server {

const char* RefusalCauseName(RefusalCause cause) {
  switch (cause) {
    case RefusalCause::kQueueFull:
      return "queue_full";
    case RefusalCause::kDeadlineExceeded:
      return "deadline_exceeded";
    case RefusalCause::kTooManyStreams:
      return "too_many_streams";
    case RefusalCause::kShuttingDown:
      return "shutting_down";
    case RefusalCause::kRequestTooLarge:
      return "request_too_large";
    case RefusalCause::kRequestTimeout:
      return "request_timeout";
    case RefusalCause::kTooManyConnections:
      return "too_many_connections";
    case RefusalCause::kSlowReader:
      return "slow_reader";
  }
  return "unknown";
}

RefusalCounters& RefusalCounters::Global() {
  static RefusalCounters counters;
  return counters;
}

}  // namespace u2::server
