#include "u2/server/model_stats.h"

#include <chrono>

#include "u2/server/kserve_types.h"

namespace u2::server {
namespace {

uint64_t NowMsSinceEpoch() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SetDuration(inference::StatisticDuration* d, const ModelStats::Duration& s) {
  d->set_count(s.count);
  d->set_ns(s.ns);
}

}  // namespace

const char* FailReasonName(ModelStats::FailReason r) {
  switch (r) {
    case ModelStats::FailReason::kRejected:
      return "REJECTED";
    case ModelStats::FailReason::kCanceled:
      return "CANCELED";
    case ModelStats::FailReason::kBackend:
      return "BACKEND";
    case ModelStats::FailReason::kOther:
      return "OTHER";
  }
  return "OTHER";
}

void ModelStats::RecordSuccess(int64_t request_ns, const OfflineTaskTiming& t, int batch_items,
                               double audio_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.last_inference_ms = NowMsSinceEpoch();
  s_.inference_count += batch_items;
  s_.success.Add(request_ns);
  s_.queue.Add(t.queue_ns);
  s_.compute_input.Add(t.compute_input_ns);
  s_.compute_infer.Add(t.compute_infer_ns);
  s_.compute_output.Add(t.compute_output_ns);
  s_.audio_seconds += audio_seconds;
  if (t.first_in_execution) {
    ++s_.execution_count;
    Batch& b = s_.batch_stats[t.execution_batch_size];
    b.compute_input.Add(t.compute_input_ns);
    b.compute_infer.Add(t.compute_infer_ns);
    b.compute_output.Add(t.compute_output_ns);
  }
}

void ModelStats::RecordFailure(int64_t request_ns, FailReason reason) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.last_inference_ms = NowMsSinceEpoch();
  s_.fail.Add(request_ns);
  ++s_.failures_by_reason[FailReasonName(reason)];
}

ModelStats::Snapshot ModelStats::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

void ToProto(const std::string& name, const ModelStats::Snapshot& s, inference::ModelStatistics* ms) {
  ms->set_name(name);
  ms->set_version(kModelVersion);
  ms->set_last_inference(s.last_inference_ms);
  ms->set_inference_count(s.inference_count);
  ms->set_execution_count(s.execution_count);
  auto* is = ms->mutable_inference_stats();
  SetDuration(is->mutable_success(), s.success);
  SetDuration(is->mutable_fail(), s.fail);
  SetDuration(is->mutable_queue(), s.queue);
  SetDuration(is->mutable_compute_input(), s.compute_input);
  SetDuration(is->mutable_compute_infer(), s.compute_infer);
  SetDuration(is->mutable_compute_output(), s.compute_output);
  is->mutable_cache_hit();
  is->mutable_cache_miss();
  for (const auto& [size, b] : s.batch_stats) {
    auto* bs = ms->add_batch_stats();
    bs->set_batch_size(size);
    SetDuration(bs->mutable_compute_input(), b.compute_input);
    SetDuration(bs->mutable_compute_infer(), b.compute_infer);
    SetDuration(bs->mutable_compute_output(), b.compute_output);
  }
}

}  // namespace u2::server
