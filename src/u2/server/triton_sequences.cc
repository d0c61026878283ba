#include "u2/server/triton_sequences.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "u2/server/audio_inputs.h"
#include "u2/server/refusals.h"
#include "u2/server/request_parameters.h"

namespace u2::server {

using Clock = std::chrono::steady_clock;

namespace {

int64_t NsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// A request's correlation id and controls (Triton's sequence_id / sequence_start / sequence_end).
struct SequenceControl {
  std::string key;      // "i:<int>" or "s:<string>": int 5 and string "5" are different ids
  std::string display;  // as Triton prints it in messages
  bool start = false;
  bool end = false;
};

// Types were checked by CheckCommonParameter.
StatusOr<SequenceControl> ParseSequenceControl(const InferRequest& r, const std::string& model) {
  SequenceControl c;
  if (auto it = r.parameters.find("sequence_id"); it != r.parameters.end()) {
    if (const auto* i = std::get_if<int64_t>(&it->second); i && *i != 0) {
      c.display = std::to_string(*i);
      c.key = "i:" + c.display;
    } else if (const auto* s = std::get_if<std::string>(&it->second); s && !s->empty()) {
      c.display = *s;
      c.key = "s:" + *s;
    }
  }
  if (c.key.empty()) {
    return InvalidArgument("inference request to model '" + model +
                           "' must specify a non-zero or non-empty correlation ID");
  }
  auto flag = [&](const char* name) {
    auto it = r.parameters.find(name);
    const bool* b = it == r.parameters.end() ? nullptr : std::get_if<bool>(&it->second);
    return b && *b;
  };
  c.start = flag("sequence_start");
  c.end = flag("sequence_end");
  return c;
}

// A request for a sequence that is not live here. Triton's answer is InvalidArgument; behind a
// load balancer that hashes sequences to replicas, Unavailable lets it retry on the one that
// holds the sequence.
Status MissingStart(const SequenceControl& c, const std::string& model, bool retryable) {
  const std::string message = "inference request for sequence " + c.display + " to model '" + model +
                              "' must specify the START flag on the first request of the sequence";
  return retryable ? Unavailable(message + " (this server does not hold it)") : InvalidArgument(message);
}

// The transcript a sequence request answers with: the text of the segments closed so far (a
// sequence longer than the model's positions, or with endpointing and continuous decoding, has
// several), then on END nothing more (the last final is among them), otherwise the best partial
// of the open segment. `closed` gathers the finals of every response of the sequence.
std::string SequenceTranscript(const StreamUpdate& update, bool end, std::string* closed) {
  for (const StreamResult& r : update.results) {
    if (!r.is_final || r.nbest.empty() || r.best().text.empty()) continue;
    *closed += (closed->empty() ? "" : " ") + r.best().text;
  }
  if (end) return *closed;
  const std::string partial = update.partial.nbest.empty() ? std::string() : update.partial.best().text;
  if (closed->empty() || partial.empty()) return closed->empty() ? partial : *closed;
  return *closed + " " + partial;
}

// The stream options of a sequence: the model's defaults with the request's parameters.
StatusOr<StreamOptions> StreamOptionsFor(const ServedModel& m, const ParameterMap& parameters) {
  StreamOptions o = m.stream_defaults;
  U2_RETURN_IF_ERROR(CheckTritonParameters(parameters));
  U2_RETURN_IF_ERROR(
      ApplyRequestParameters(parameters, &o, m.recognizer ? &m.recognizer->hotwords() : nullptr));
  U2_RETURN_IF_ERROR(o.Validate(m.model_config).WithContext("streaming parameters"));
  if (m.recognizer) {
    U2_RETURN_IF_ERROR(
        m.recognizer->CheckSearchOptions(o.lm, o.hotwords).WithContext("streaming parameters"));
  }
  return o;
}

}  // namespace

void TritonSequences::Infer(ServedModel* m, InferRequest request, InferCallback done, bool draining) {
  struct Pending {
    InferResponse response;
    Clock::time_point received, fed;
    int64_t input_ns = 0;
    double audio_seconds = 0;
    bool start = false, end = false;
    SequenceControl control;
    InferCallback done;
  };
  auto pending = std::make_shared<Pending>();
  pending->response.model_name = m->name;
  pending->response.id = request.id;
  pending->received = request.received;
  pending->done = std::move(done);
  auto fail = [&](const Status& s) {
    m->stats.RecordFailure(NsSince(request.received), s.code() == StatusCode::kResourceExhausted
                                                          ? ModelStats::FailReason::kRejected
                                                          : ModelStats::FailReason::kOther);
    pending->done(s, std::move(pending->response));
  };
  // Checked in Triton's order: parameters, correlation id, tensors, then the sequence state.
  auto options = StreamOptionsFor(*m, request.parameters);
  if (!options.ok()) return fail(options.status());
  auto control = ParseSequenceControl(request, m->name);
  if (!control.ok()) return fail(control.status());
  if (Status s = CheckRequestedOutputs(request, m->name); !s.ok()) return fail(s);
  auto audio = DecodeAudioInputs(request, m->name, ModelRepository::kMaxSequenceBatchSize, m->max_samples);
  if (!audio.ok()) return fail(audio.status());
  if (audio->size() != 1) {
    return fail(InvalidArgument("inference request to model '" + m->name +
                                "' must specify batch-size 1 due to requirements of sequence batcher"));
  }
  std::vector<float> samples = std::move(audio->front());
  pending->response.model_version = kModelVersion;
  pending->audio_seconds = static_cast<double>(samples.size()) / kWireSampleRate;
  pending->start = control->start;
  pending->end = control->end;
  pending->control = *control;

  std::lock_guard<std::mutex> lock(mu_);
  const SequenceKey key{m, control->key};
  auto it = sequences_.find(key);
  if (it != sequences_.end() && !m->streams->IsLive(it->second->stream_id)) {
    // Timed out or dropped by the engine since.
    if (it->second->pending == 0) sequences_.erase(it);
    it = sequences_.end();
  }
  if (draining && (control->start || it == sequences_.end())) {
    // A draining replica finishes the sequences it holds and takes no others. Unavailable is
    // retryable: a load balancer that hashes sequences to replicas (deploy/envoy) retries a
    // refused START, and every later request of that sequence, on the same next replica.
    CountRefusal(RefusalCause::kShuttingDown);
    return fail(
        Unavailable("the server is shutting down: it finishes its live sequences and starts no "
                    "new ones (sequence " +
                    control->display + " " + (control->start ? "not started" : "not held here") +
                    "); retry on another replica"));
  }
  if (control->start) {
    if (it != sequences_.end()) {
      // Triton: a START on a live id finishes what is queued of the old sequence and starts anew.
      Sequence& old = *it->second;
      spdlog::warn("{}: sequence {} restarted while live; its state is reset", m->name, control->display);
      if (old.pending == 0) {
        (void)m->streams->Close(old.stream_id);
      } else {
        m->streams->Feed(old.stream_id, {}, /*last=*/true, [](const Status&, StreamUpdate) {});
      }
      sequences_.erase(it);
    }
    auto seq = std::make_shared<Sequence>();
    seq->stream_id =
        "triton/" + m->name + "/" + control->key + "#" + std::to_string(next_stream_generation_++);
    if (Status s = m->streams->Start(seq->stream_id, *options, kWireSampleRate); !s.ok()) {
      if (s.code() == StatusCode::kResourceExhausted) {
        CountRefusal(RefusalCause::kTooManyStreams);
        s = ResourceExhausted("cannot start sequence " + control->display + " on model '" + m->name +
                              "': " + std::to_string(m->streams->config().max_streams) +
                              " sequences are live (the server's --max-streams); retry later");
      }
      return fail(s);
    }
    it = sequences_.insert_or_assign(key, std::move(seq)).first;
  } else if (it == sequences_.end()) {
    return fail(MissingStart(*control, m->name, unknown_retryable_));
  }
  std::shared_ptr<Sequence> seq = it->second;
  seq->client_session = request.client_session;
  ++seq->pending;
  ++*in_flight_;
  pending->fed = Clock::now();
  pending->input_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(pending->fed - pending->received).count();
  // The scheduler answers feeds of one stream in the order they were given; Feed is called
  // under mu_, so that order is the order the requests arrived in, whatever
  // connections they came on.
  m->streams->Feed(
      seq->stream_id, std::move(samples), control->end,
      [this, m, seq, pending](const Status& status, StreamUpdate update) {
        const auto answered = Clock::now();
        --seq->pending;
        const int64_t request_ns = NsSince(pending->received);
        if (!status.ok()) {
          // The stream vanished between our check and the feed (idle timeout): the
          // same answer as for an unknown id.
          const Status s = status.code() == StatusCode::kNotFound && !pending->start
                               ? MissingStart(pending->control, m->name, unknown_retryable_)
                               : status;
          m->stats.RecordFailure(request_ns, status.code() == StatusCode::kUnavailable
                                                 ? ModelStats::FailReason::kCanceled
                                                 : ModelStats::FailReason::kBackend);
          pending->done(s, std::move(pending->response));
        } else {
          OutputTensor out;
          out.name = "TRANSCRIPTS";
          out.datatype = "BYTES";
          {
            std::lock_guard<std::mutex> text_lock(seq->text_mu);
            out.strings.push_back(SequenceTranscript(update, pending->end, &seq->closed_text));
          }
          out.shape = {1};
          pending->response.outputs.push_back(std::move(out));
          OfflineTaskTiming timing;
          timing.compute_input_ns = pending->input_ns;
          timing.compute_infer_ns =
              std::chrono::duration_cast<std::chrono::nanoseconds>(answered - pending->fed).count();
          timing.compute_output_ns = NsSince(answered);
          timing.execution_batch_size = 1;
          timing.first_in_execution = true;
          m->stats.RecordSuccess(request_ns, timing, 1, pending->audio_seconds);
          pending->done(Status::Ok(), std::move(pending->response));
        }
        --*in_flight_;
      });
  if (control->end) sequences_.erase(key);
  SweepLocked();
}

void TritonSequences::SweepLocked() {
  if (sequences_.size() < sweep_at_) return;
  for (auto it = sequences_.begin(); it != sequences_.end();) {
    const ServedModel* m = it->first.first;
    if (it->second->pending == 0 && !m->streams->IsLive(it->second->stream_id)) {
      it = sequences_.erase(it);
    } else {
      ++it;
    }
  }
  sweep_at_ = std::max<size_t>(64, 2 * sequences_.size());
}

void TritonSequences::CloseClientSession(uint64_t session) {
  if (session == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = sequences_.begin(); it != sequences_.end();) {
    if (it->second->client_session == session) {
      const ServedModel* m = it->first.first;
      (void)m->streams->Close(it->second->stream_id);  // NotFound if it had timed out: fine
      it = sequences_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace u2::server
