#include "u2/server/inference.h"

#include <chrono>
#include <limits>
#include <mutex>

#include "u2/server/audio_inputs.h"
#include "u2/server/long_audio_job.h"
#include "u2/server/refusals.h"
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
  U2_RETURN_IF_ERROR(
      ApplyRequestParameters(parameters, &o, m.recognizer ? &m.recognizer->hotwords() : nullptr));
  const Status valid = m.recognizer ? m.recognizer->ValidateOptions(o) : o.Validate(m.model_config);
  U2_RETURN_IF_ERROR(valid.WithContext("decoding parameters"));
  return o;
}

void InferenceService::Infer(InferRequest request, InferCallback done) {
  auto refuse = [&](const Status& s) {
    InferResponse r;
    r.id = request.id;
    r.model_name = request.model_name;
    done(s, std::move(r));
  };
  const bool draining = draining_;
  if (!ready_) {
    CountRefusal(RefusalCause::kShuttingDown);
    return refuse(Unavailable("the server is not ready"));
  }
  auto found = models_->Find(request.model_name, request.model_version);
  if (!found.ok()) return refuse(found.status());
  ServedModel* m = *found;
  // While draining, the live sequences go on to their END; the sequences refuse the rest.
  if (m->streaming()) return sequences_.Infer(m, std::move(request), std::move(done), draining);
  if (draining) {
    CountRefusal(RefusalCause::kShuttingDown);
    return refuse(Unavailable("the server is shutting down; retry on another replica"));
  }
  InferOffline(m, std::move(request), std::move(done));
}

namespace {

// One offline request on its way: its utterances' audio and, per utterance, the recognised
// stretches (one for a clip the model takes whole; one per speech segment of a longer one).
// Parts: the batch task of the short utterances and one long-audio job per long utterance; the
// last part to finish answers.
struct OfflineRequest {
  ServedModel* model = nullptr;
  std::vector<std::vector<float>> audio;
  std::vector<std::vector<TimedResult>> results;
  bool want_segments = false;
  InferResponse response;
  Clock::time_point received;
  InferCallback done;
  std::mutex mu;
  int parts_left = 0;
  Status error;
  OfflineTaskTiming timing;  // of the batch task, for the statistics
  bool failed_in_engine = false;

  // With mu held by the caller's lock: one part is over; answers if it was the last.
  void PartDone(std::unique_lock<std::mutex>& lock, std::atomic<int>* in_flight) {
    if (--parts_left > 0) return;
    lock.unlock();
    const int64_t request_ns = NsSince(received);
    if (!error.ok()) {
      ModelStats::FailReason reason = ModelStats::FailReason::kOther;
      if (failed_in_engine) {
        reason = ModelStats::FailReason::kBackend;
      } else if (error.code() == StatusCode::kResourceExhausted ||
                 error.code() == StatusCode::kDeadlineExceeded) {
        reason = ModelStats::FailReason::kRejected;  // queue full, or waited past its timeout
        CountRefusal(error.code() == StatusCode::kResourceExhausted ? RefusalCause::kQueueFull
                                                                    : RefusalCause::kDeadlineExceeded);
      } else if (error.code() == StatusCode::kUnavailable) {
        reason = ModelStats::FailReason::kCanceled;  // the client went away, or shutdown
      }
      model->stats.RecordFailure(request_ns, reason);
      done(error, std::move(response));
    } else {
      OutputTensor text{
          "TRANSCRIPTS",
          "BYTES",
          {},
          {},
      };
      OutputTensor segments{"SEGMENTS", "BYTES", {}, {}};
      double seconds = 0;
      for (size_t i = 0; i < results.size(); ++i) {
        const double duration = static_cast<double>(audio[i].size()) / kWireSampleRate;
        const Transcript t = MakeTranscript(results[i], duration);
        text.strings.push_back(t.text);
        if (want_segments) segments.strings.push_back(FormatTranscriptJson(t));
        seconds += duration;
      }
      text.shape = {static_cast<int64_t>(text.strings.size())};
      response.outputs.push_back(std::move(text));
      if (want_segments) {
        segments.shape = {static_cast<int64_t>(segments.strings.size())};
        response.outputs.push_back(std::move(segments));
      }
      model->stats.RecordSuccess(request_ns, timing, static_cast<int>(audio.size()), seconds);
      done(Status::Ok(), std::move(response));
    }
    --*in_flight;
  }
};

}  // namespace

void InferenceService::InferOffline(ServedModel* m, InferRequest request, InferCallback done) {
  auto pending = std::make_shared<OfflineRequest>();
  pending->model = m;
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
  for (const std::string& out : request.requested_outputs) pending->want_segments |= out == "SEGMENTS";
  const int max_batch =
      m->batcher ? m->batcher->config().max_batch_size : OfflineBatcherConfig{}.max_batch_size;
  // With a VAD, recordings longer than the model takes whole are segmented (the request size
  // limit bounds them); without one they are refused as the model's limit.
  const int64_t max_samples = m->long_audio ? std::numeric_limits<int64_t>::max() : m->max_samples;
  auto audio = DecodeAudioInputs(request, m->name, max_batch, max_samples);
  if (!audio.ok()) return fail(audio.status(), ModelStats::FailReason::kOther);
  if (m->batcher == nullptr) return fail(Internal("model has no engine"), ModelStats::FailReason::kOther);
  auto deadline =
      RequestDeadline(request.parameters, request.received, m->batcher->config().default_timeout_us);
  if (!deadline.ok()) return fail(deadline.status(), ModelStats::FailReason::kOther);
  pending->audio = std::move(audio).value();
  pending->results.resize(pending->audio.size());
  pending->response.model_version = kModelVersion;

  std::vector<size_t> whole, segmented;
  for (size_t i = 0; i < pending->audio.size(); ++i) {
    (static_cast<int64_t>(pending->audio[i].size()) > m->max_samples ? segmented : whole).push_back(i);
  }
  pending->parts_left = (whole.empty() ? 0 : 1) + static_cast<int>(segmented.size());
  ++in_flight_;
  std::atomic<int>* in_flight = &in_flight_;
  if (!whole.empty()) {
    OfflineTask task;
    for (size_t i : whole) task.waveforms.push_back({pending->audio[i], kWireSampleRate});
    task.options = *options;
    task.batch_key = m->name + "|" + options->ToString();
    task.cancelled = request.cancelled;
    task.deadline = *deadline;
    task.done = [pending, whole, in_flight](OfflineResults results, const OfflineTaskTiming& timing) {
      std::unique_lock<std::mutex> lock(pending->mu);
      pending->timing = timing;
      if (!results.ok()) {
        if (pending->error.ok()) pending->error = results.status();
        pending->failed_in_engine |= timing.execution_batch_size > 0;
      } else {
        for (size_t k = 0; k < whole.size(); ++k) {
          const size_t i = whole[k];
          const double seconds = static_cast<double>(pending->audio[i].size()) / kWireSampleRate;
          pending->results[i].push_back({0.0, seconds, std::move((*results)[k])});
        }
      }
      pending->PartDone(lock, in_flight);
    };
    if (Status submitted = m->batcher->Submit(std::move(task)); !submitted.ok()) {
      std::unique_lock<std::mutex> lock(pending->mu);
      if (pending->error.ok()) pending->error = submitted;
      pending->PartDone(lock, in_flight);
    }
  }
  for (size_t i : segmented) {
    LongAudioRequest job;
    job.model = m;
    job.segmenter = m->long_audio;
    job.samples = pending->audio[i];
    job.options = *options;
    job.deadline = *deadline;
    job.cancelled = request.cancelled;
    job.done = [pending, i, in_flight](StatusOr<std::vector<TimedResult>> stretches) {
      std::unique_lock<std::mutex> lock(pending->mu);
      if (!stretches.ok()) {
        if (pending->error.ok()) pending->error = stretches.status();
        pending->failed_in_engine = true;
      } else {
        pending->results[i] = std::move(stretches).value();
      }
      pending->PartDone(lock, in_flight);
    };
    StartLongAudioJob(std::move(job));
  }
}

}  // namespace u2::server
