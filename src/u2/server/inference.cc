#include "u2/server/inference.h"

#include <chrono>

#include "u2/server/audio_inputs.h"
#include "u2/server/request_parameters.h"

namespace u2::server {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

}  // namespace

StatusOr<DecodingOptions> OfflineOptionsFor(const ServedModel& m, const ParameterMap& parameters) {
  DecodingOptions o = m.defaults;
  U2_RETURN_IF_ERROR(CheckTritonParameters(parameters));
  U2_RETURN_IF_ERROR(ApplyRequestParameters(parameters, &o));
  U2_RETURN_IF_ERROR(o.Validate(m.model_config).WithContext("decoding parameters"));
  return o;
}

void InferenceService::Infer(InferRequest request, InferCallback done) {
  auto refuse = [&](const Status& s) {
    InferResponse r;
    r.id = request.id;
    r.model_name = request.model_name;
    done(s, std::move(r));
  };
  if (draining_ || !ready_) return refuse(Unavailable("the server is shutting down"));
  auto found = models_->Find(request.model_name, request.model_version);
  if (!found.ok()) return refuse(found.status());
  ServedModel* m = *found;
  if (m->streaming()) return sequences_.Infer(m, std::move(request), std::move(done));
  InferOffline(m, std::move(request), std::move(done));
}

void InferenceService::InferOffline(ServedModel* m, InferRequest request, InferCallback done) {
  // The task owns the samples; the request's bytes can go as soon as we return.
  struct Pending {
    std::vector<std::vector<float>> audio;
    InferResponse response;
    Clock::time_point received;
    InferCallback done;
  };
  auto pending = std::make_shared<Pending>();
  pending->response.model_name = m->name;
  pending->response.id = request.id;
  pending->received = request.received;
  pending->done = std::move(done);
  auto fail = [&](const Status& s, ModelStats::FailReason reason) {
    m->stats.RecordFailure(NsSince(pending->received), reason);
    pending->done(s, std::move(pending->response));
  };
  auto options = OfflineOptionsFor(*m, request.parameters);
  if (!options.ok()) return fail(options.status(), ModelStats::FailReason::kOther);
  if (Status s = CheckRequestedOutputs(request, m->name); !s.ok())
    return fail(s, ModelStats::FailReason::kOther);
  const int max_batch =
      m->batcher ? m->batcher->config().max_batch_size : OfflineBatcherConfig{}.max_batch_size;
  auto audio = DecodeAudioInputs(request, m->name, max_batch, m->max_samples);
  if (!audio.ok()) return fail(audio.status(), ModelStats::FailReason::kOther);
  if (m->batcher == nullptr) return fail(Internal("model has no engine"), ModelStats::FailReason::kOther);
  auto deadline =
      RequestDeadline(request.parameters, request.received, m->batcher->config().default_timeout_us);
  if (!deadline.ok()) return fail(deadline.status(), ModelStats::FailReason::kOther);
  pending->audio = std::move(audio).value();
  pending->response.model_version = kModelVersion;

  OfflineTask task;
  for (const auto& a : pending->audio) task.waveforms.push_back({a, kWireSampleRate});
  task.options = *options;
  task.batch_key = m->name + "|" + options->ToString();
  task.cancelled = request.cancelled;
  task.deadline = *deadline;
  ++in_flight_;
  task.done = [this, m, pending](OfflineResults results, const OfflineTaskTiming& timing) {
    const int64_t request_ns = NsSince(pending->received);
    if (!results.ok()) {
      const bool never_ran = timing.execution_batch_size == 0;  // cancelled, or its deadline passed
      m->stats.RecordFailure(request_ns, never_ran ? (results.status().code() == StatusCode::kDeadlineExceeded
                                                          ? ModelStats::FailReason::kRejected
                                                          : ModelStats::FailReason::kCanceled)
                                                   : ModelStats::FailReason::kBackend);
      pending->done(results.status(), std::move(pending->response));
    } else {
      OutputTensor out;
      out.name = "TRANSCRIPTS";
      out.datatype = "BYTES";
      double seconds = 0;
      for (const RecognitionResult& r : *results) {
        out.strings.push_back(r.nbest.empty() ? std::string() : r.best().text);
        seconds += r.audio_seconds;
      }
      out.shape = {static_cast<int64_t>(out.strings.size())};
      pending->response.outputs.push_back(std::move(out));
      m->stats.RecordSuccess(request_ns, timing, static_cast<int>(pending->audio.size()), seconds);
      pending->done(Status::Ok(), std::move(pending->response));
    }
    --in_flight_;
  };
  if (Status submitted = m->batcher->Submit(std::move(task)); !submitted.ok()) {
    --in_flight_;
    fail(submitted, submitted.code() == StatusCode::kResourceExhausted ? ModelStats::FailReason::kRejected
                                                                       : ModelStats::FailReason::kOther);
  }
}

}  // namespace u2::server
