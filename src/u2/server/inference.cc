#include "u2/server/inference.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

namespace u2::server {
namespace {

using Clock = std::chrono::steady_clock;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t NsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

uint64_t NowMsSinceEpoch() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Reads a numeric parameter given as int64, uint64 or double.
StatusOr<double> NumberParam(const std::string& key, const Parameter& p) {
  if (const auto* i = std::get_if<int64_t>(&p)) return static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&p)) return static_cast<double>(*u);
  if (const auto* d = std::get_if<double>(&p)) return *d;
  if (const auto* s = std::get_if<std::string>(&p)) {
    try {
      size_t used = 0;
      double v = std::stod(*s, &used);
      if (used == s->size()) return v;
    } catch (...) {
    }
  }
  return InvalidArgument("parameter '" + key + "' must be a number");
}

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

void SetDuration(inference::StatisticDuration* d, const ModelStats::Duration& s) {
  d->set_count(s.count);
  d->set_ns(s.ns);
}

}  // namespace

std::string OutputTensor::RawBytes() const {
  std::string out;
  size_t total = 0;
  for (const auto& s : strings) total += 4 + s.size();
  out.reserve(total);
  for (const auto& s : strings) {
    const uint32_t n = static_cast<uint32_t>(s.size());
    const char len[4] = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                         static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
    out.append(len, 4);
    out.append(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Statistics

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

// ---------------------------------------------------------------------------------------------
// Models

void InferenceService::AddModel(std::unique_ptr<ServedModel> model) { models_.push_back(std::move(model)); }

StatusOr<ServedModel*> InferenceService::Find(const std::string& name, const std::string& version) const {
  for (const auto& m : models_) {
    if (m->name != name) continue;
    if (!version.empty() && version != kModelVersion) {
      return NotFound("Request for unknown model: '" + name + "' version " + version + " is not found");
    }
    return m.get();
  }
  return NotFound("Request for unknown model: '" + name + "' is not found");
}

std::vector<ServedModel*> InferenceService::models() const {
  std::vector<ServedModel*> out;
  for (const auto& m : models_) out.push_back(m.get());
  return out;
}

int InferenceService::pending_requests() const {
  int n = 0;
  std::vector<const OfflineBatcher*> seen;
  for (const auto& m : models_) {
    if (!m->batcher || std::find(seen.begin(), seen.end(), m->batcher) != seen.end()) continue;
    seen.push_back(m->batcher);
    n += m->batcher->queued_tasks();
  }
  return n;
}

std::vector<std::string> InferenceService::Extensions() const {
  std::vector<std::string> e = {"model_configuration", "binary_tensor_data", "parameters", "statistics"};
  for (const auto& m : models_) {
    if (m->streams) {
      e.push_back("sequence");
      break;
    }
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Request validation

StatusOr<std::vector<std::vector<float>>> DecodeAudioInputs(const InferRequest& r, const std::string& model,
                                                            int max_batch_size, int64_t max_samples) {
  const InputTensor* wav = nullptr;
  const InputTensor* lens = nullptr;
  for (const InputTensor& t : r.inputs) {
    const InputTensor** slot = t.name == "WAV" ? &wav : t.name == "WAV_LENS" ? &lens : nullptr;
    if (!slot) {
      return InvalidArgument("unexpected inference input '" + t.name + "' for model '" + model +
                             "' (it takes WAV and WAV_LENS)");
    }
    if (*slot) return InvalidArgument("input '" + t.name + "' is given more than once");
    *slot = &t;
  }
  if (!wav || !lens) {
    return InvalidArgument("expected 2 inputs but got " + std::to_string(r.inputs.size()) +
                           " inputs for model '" + model + "': missing required input '" +
                           std::string(wav ? "WAV_LENS" : "WAV") + "'");
  }
  if (wav->datatype != "FP32") {
    return InvalidArgument("inference input 'WAV' data-type is '" + wav->datatype + "', but model '" + model +
                           "' expects 'FP32'");
  }
  if (lens->datatype != "INT32") {
    return InvalidArgument("inference input 'WAV_LENS' data-type is '" + lens->datatype + "', but model '" +
                           model + "' expects 'INT32'");
  }
  if (wav->shape.size() != 2 || wav->shape[0] < 0 || wav->shape[1] < 0) {
    return InvalidArgument("unexpected shape for input 'WAV' for model '" + model +
                           "'. Expected [-1,-1], got " + ShapeString(wav->shape));
  }
  if (lens->shape.size() != 2 || lens->shape[1] != 1 || lens->shape[0] < 0) {
    return InvalidArgument("unexpected shape for input 'WAV_LENS' for model '" + model +
                           "'. Expected [-1,1], got " + ShapeString(lens->shape));
  }
  const int64_t batch = wav->shape[0];
  const int64_t width = wav->shape[1];
  if (lens->shape[0] != batch) {
    return InvalidArgument("inputs 'WAV' and 'WAV_LENS' have different batch sizes (" +
                           std::to_string(batch) + " and " + std::to_string(lens->shape[0]) + ")");
  }
  if (batch < 1 || batch > max_batch_size) {
    return InvalidArgument("inference request batch-size must be in [1, " + std::to_string(max_batch_size) +
                           "] for '" + model + "', got " + std::to_string(batch));
  }
  if (width > (int64_t{1} << 31) / 4)
    return InvalidArgument("input 'WAV' is too wide: " + ShapeString(wav->shape));
  const uint64_t wav_bytes = static_cast<uint64_t>(batch) * static_cast<uint64_t>(width) * 4;
  if (wav->data.size() != wav_bytes) {
    return InvalidArgument("unexpected total byte size " + std::to_string(wav->data.size()) +
                           " for input 'WAV', expecting " + std::to_string(wav_bytes));
  }
  if (lens->data.size() != static_cast<uint64_t>(batch) * 4) {
    return InvalidArgument("unexpected total byte size " + std::to_string(lens->data.size()) +
                           " for input 'WAV_LENS', expecting " + std::to_string(batch * 4));
  }
  std::vector<std::vector<float>> audio(batch);
  for (int64_t b = 0; b < batch; ++b) {
    int32_t n;
    std::memcpy(&n, lens->data.data() + 4 * b, 4);
    if (n < 0 || n > width) {
      return InvalidArgument("WAV_LENS[" + std::to_string(b) + "] = " + std::to_string(n) +
                             " is outside [0, " + std::to_string(width) + "] (the WAV row length)");
    }
    if (n > max_samples) {
      return InvalidArgument("WAV_LENS[" + std::to_string(b) + "] = " + std::to_string(n) + " samples (" +
                             std::to_string(n / 16000.0) + " s) exceeds this model's limit of " +
                             std::to_string(max_samples) + " samples; segment the audio first");
    }
    audio[b].resize(n);
    std::memcpy(audio[b].data(), wav->data.data() + 4 * b * width, 4 * static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) {
      if (!std::isfinite(audio[b][i])) {
        return InvalidArgument("input 'WAV' has a non-finite sample (NaN or Inf) in utterance " +
                               std::to_string(b) + " at index " + std::to_string(i));
      }
    }
  }
  return audio;
}

// The parameters every model understands the same way: Triton's sequence and reserved keys.
// Returns true in *handled when `key` is one of them.
static Status CheckCommonParameter(const std::string& key, const Parameter& value, bool* handled) {
  *handled = true;
  if (key == "sequence_id") {
    // Triton takes int64_param or string_param only (uint64 included in the refusal).
    if (!std::holds_alternative<int64_t>(value) && !std::holds_alternative<std::string>(value)) {
      return InvalidArgument(
          "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.");
    }
  } else if (key == "sequence_start" || key == "sequence_end") {
    if (!std::holds_alternative<bool>(value))
      return InvalidArgument("invalid value type for '" + key + "' parameter, expected bool_param.");
  } else if (key.rfind("triton_", 0) == 0 && key != "triton_enable_empty_final_response") {
    return InvalidArgument(
        "parameter keys starting with 'triton_' are reserved for Triton usage and should "
        "not be specified: '" +
        key + "'");
  } else {
    *handled = false;
  }
  return Status::Ok();
}

StatusOr<DecodingOptions> InferenceService::OptionsFor(const ServedModel& m, const InferRequest& r) const {
  DecodingOptions o = m.defaults;
  for (const auto& [key, value] : r.parameters) {
    bool handled = false;
    U2_RETURN_IF_ERROR(CheckCommonParameter(key, value, &handled));
    if (handled) continue;
    if (key == "beam") {
      U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
      if (v != std::floor(v) || v < 1 || v > 1000)
        return InvalidArgument("parameter 'beam' must be an integer in [1, 1000]");
      o.beam = static_cast<int>(v);
      o.nbest = std::min(o.nbest, o.beam);
    } else if (key == "ctc_weight") {
      U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
      o.ctc_weight = static_cast<float>(v);
    } else if (key == "reverse_weight") {
      U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
      o.reverse_weight = static_cast<float>(v);
    } else if (key == "decoding_mode") {
      const auto* s = std::get_if<std::string>(&value);
      if (!s) return InvalidArgument("parameter 'decoding_mode' must be a string");
      U2_ASSIGN_OR_RETURN(o.mode, ParseDecodingMode(*s));
    }
    // Anything else is a custom parameter: accepted and ignored.
  }
  if (m.validate_options) U2_RETURN_IF_ERROR(m.validate_options(o).WithContext("decoding parameters"));
  return o;
}

StatusOr<StreamOptions> InferenceService::StreamOptionsFor(const ServedModel& m,
                                                           const InferRequest& r) const {
  StreamOptions o = m.stream_defaults;
  auto integer = [](const std::string& key, const Parameter& value, double lo, double hi) -> StatusOr<int> {
    U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
    if (v != std::floor(v) || v < lo || v > hi) {
      return InvalidArgument("parameter '" + key + "' must be an integer in [" + std::to_string(int64_t(lo)) +
                             ", " + std::to_string(int64_t(hi)) + "]");
    }
    return static_cast<int>(v);
  };
  for (const auto& [key, value] : r.parameters) {
    bool handled = false;
    U2_RETURN_IF_ERROR(CheckCommonParameter(key, value, &handled));
    if (handled) continue;
    if (key == "beam") {
      U2_ASSIGN_OR_RETURN(o.beam, integer(key, value, 1, 1000));
      o.nbest = std::min(o.nbest, o.beam);
    } else if (key == "ctc_weight") {
      U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
      o.ctc_weight = static_cast<float>(v);
    } else if (key == "reverse_weight") {
      U2_ASSIGN_OR_RETURN(double v, NumberParam(key, value));
      o.reverse_weight = static_cast<float>(v);
    } else if (key == "decoding_chunk_size" || key == "chunk_size") {
      U2_ASSIGN_OR_RETURN(o.decoding_chunk_size, integer(key, value, 1, 1024));
    } else if (key == "num_decoding_left_chunks" || key == "left_chunks") {
      U2_ASSIGN_OR_RETURN(o.num_decoding_left_chunks, integer(key, value, -1, 1 << 20));
    } else if (key == "rescoring") {
      if (const auto* b = std::get_if<bool>(&value)) {
        o.rescoring = *b;
      } else {
        U2_ASSIGN_OR_RETURN(int v, integer(key, value, 0, 1));
        o.rescoring = v == 1;
      }
    } else if (key == "decoding_mode") {
      const auto* s = std::get_if<std::string>(&value);
      if (!s) return InvalidArgument("parameter 'decoding_mode' must be a string");
      U2_ASSIGN_OR_RETURN(DecodingMode mode, ParseDecodingMode(*s));
      if (mode == DecodingMode::kCtcGreedy) {
        return InvalidArgument(
            "decoding_mode 'ctc_greedy' is not available for streaming; use "
            "'ctc_prefix_beam_search' or 'attention_rescoring'");
      }
      o.rescoring = mode == DecodingMode::kAttentionRescoring;
    }
    // Anything else is a custom parameter: accepted and ignored.
  }
  if (m.recognizer) {
    U2_RETURN_IF_ERROR(o.Validate(m.recognizer->model_config()).WithContext("streaming parameters"));
  }
  return o;
}

void InferenceService::Infer(InferRequest request, InferCallback done) {
  auto fail = [&](const Status& s, ServedModel* m, ModelStats::FailReason reason) {
    if (m) m->stats.RecordFailure(NsSince(request.received), reason);
    InferResponse r;
    r.id = request.id;
    r.model_name = request.model_name;
    done(s, std::move(r));
  };
  if (draining_ || !ready_) return fail(Unavailable("the server is shutting down"), nullptr, {});
  auto found = Find(request.model_name, request.model_version);
  if (!found.ok()) return fail(found.status(), nullptr, {});
  ServedModel* m = *found;
  if (m->streams) return InferSequence(m, std::move(request), std::move(done));
  auto options = OptionsFor(*m, request);
  if (!options.ok()) return fail(options.status(), m, ModelStats::FailReason::kOther);
  for (const std::string& out : request.requested_outputs) {
    if (out != "TRANSCRIPTS") {
      return fail(InvalidArgument("unexpected inference output '" + out + "' for model '" + m->name + "'"), m,
                  ModelStats::FailReason::kOther);
    }
  }
  auto audio = DecodeAudioInputs(request, m->name, options_.max_batch_size, m->max_samples);
  if (!audio.ok()) return fail(audio.status(), m, ModelStats::FailReason::kOther);

  // The task owns the samples; the request's bytes can go as soon as we return.
  struct Pending {
    std::vector<std::vector<float>> audio;
    InferResponse response;
    Clock::time_point received;
    InferCallback done;
  };
  auto pending = std::make_shared<Pending>();
  pending->audio = std::move(audio).value();
  pending->response.model_name = m->name;
  pending->response.model_version = kModelVersion;
  pending->response.id = request.id;
  pending->received = request.received;
  pending->done = std::move(done);

  OfflineTask task;
  for (const auto& a : pending->audio) task.waveforms.push_back({a, 16000});
  task.options = *options;
  task.batch_key = m->name + "|" + options->ToString();
  task.cancelled = request.cancelled;
  ++in_flight_;
  task.done = [this, m, pending](OfflineResults results, const OfflineTaskTiming& timing) {
    const int64_t request_ns = NsSince(pending->received);
    if (!results.ok()) {
      const bool cancelled = timing.execution_batch_size == 0;
      m->stats.RecordFailure(
          request_ns, cancelled ? ModelStats::FailReason::kCanceled : ModelStats::FailReason::kBackend);
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
  Status submitted = m->batcher ? m->batcher->Submit(std::move(task)) : Internal("model has no engine");
  if (!submitted.ok()) {
    --in_flight_;
    m->stats.RecordFailure(NsSince(pending->received), submitted.code() == StatusCode::kResourceExhausted
                                                           ? ModelStats::FailReason::kRejected
                                                           : ModelStats::FailReason::kOther);
    pending->done(submitted, std::move(pending->response));
  }
}

// ---------------------------------------------------------------------------------------------
// Sequences (Triton's sequence batcher semantics on the StreamScheduler)

namespace {

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

Status MissingStart(const SequenceControl& c, const std::string& model) {
  return InvalidArgument("inference request for sequence " + c.display + " to model '" + model +
                         "' must specify the START flag on the first request of the sequence");
}

// The transcript a sequence request answers with: on END the segment's final (rescored) result,
// otherwise the best partial so far.
std::string SequenceTranscript(const StreamUpdate& update, bool end) {
  if (end) {
    for (auto it = update.results.rbegin(); it != update.results.rend(); ++it) {
      if (it->is_final && !it->nbest.empty()) return it->best().text;
    }
  }
  return update.partial.nbest.empty() ? std::string() : update.partial.best().text;
}

}  // namespace

void InferenceService::InferSequence(ServedModel* m, InferRequest request, InferCallback done) {
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
  auto options = StreamOptionsFor(*m, request);
  if (!options.ok()) return fail(options.status());
  auto control = ParseSequenceControl(request, m->name);
  if (!control.ok()) return fail(control.status());
  for (const std::string& out : request.requested_outputs) {
    if (out != "TRANSCRIPTS")
      return fail(InvalidArgument("unexpected inference output '" + out + "' for model '" + m->name + "'"));
  }
  auto audio = DecodeAudioInputs(request, m->name, options_.max_sequence_batch_size, m->max_samples);
  if (!audio.ok()) return fail(audio.status());
  if (audio->size() != 1) {
    return fail(InvalidArgument("inference request to model '" + m->name +
                                "' must specify batch-size 1 due to requirements of sequence batcher"));
  }
  std::vector<float> samples = std::move(audio->front());
  pending->response.model_version = kModelVersion;
  pending->audio_seconds = static_cast<double>(samples.size()) / 16000.0;
  pending->start = control->start;
  pending->end = control->end;
  pending->control = *control;

  std::lock_guard<std::mutex> lock(sequences_mu_);
  const SequenceKey key{m, control->key};
  auto it = sequences_.find(key);
  if (it != sequences_.end() && !m->streams->IsLive(it->second->stream_id)) {
    // Timed out or dropped by the engine since.
    if (it->second->pending == 0) sequences_.erase(it);
    it = sequences_.end();
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
    if (Status s = m->streams->Start(seq->stream_id, *options); !s.ok()) {
      if (s.code() == StatusCode::kResourceExhausted) {
        s = ResourceExhausted("cannot start sequence " + control->display + " on model '" + m->name +
                              "': " + std::to_string(m->streams->config().max_streams) +
                              " sequences are live (the server's --max-streams); retry later");
      }
      return fail(s);
    }
    it = sequences_.insert_or_assign(key, std::move(seq)).first;
  } else if (it == sequences_.end()) {
    return fail(MissingStart(*control, m->name));
  }
  std::shared_ptr<Sequence> seq = it->second;
  seq->client_session = request.client_session;
  ++seq->pending;
  ++in_flight_;
  pending->fed = Clock::now();
  pending->input_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(pending->fed - pending->received).count();
  // The scheduler answers feeds of one stream in the order they were given; Feed is called
  // under sequences_mu_, so that order is the order the requests arrived in, whatever
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
                               ? MissingStart(pending->control, m->name)
                               : status;
          m->stats.RecordFailure(request_ns, status.code() == StatusCode::kUnavailable
                                                 ? ModelStats::FailReason::kCanceled
                                                 : ModelStats::FailReason::kBackend);
          pending->done(s, std::move(pending->response));
        } else {
          OutputTensor out;
          out.name = "TRANSCRIPTS";
          out.datatype = "BYTES";
          out.strings.push_back(SequenceTranscript(update, pending->end));
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
        --in_flight_;
      });
  if (control->end) sequences_.erase(key);
  SweepSequencesLocked();
}

void InferenceService::SweepSequencesLocked() {
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

void InferenceService::CloseClientSession(uint64_t session) {
  if (session == 0) return;
  std::lock_guard<std::mutex> lock(sequences_mu_);
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

// ---------------------------------------------------------------------------------------------
// Metadata, config, statistics

inference::ModelMetadataResponse InferenceService::Metadata(const ServedModel& m) const {
  inference::ModelMetadataResponse r;
  r.set_name(m.name);
  r.add_versions(kModelVersion);
  r.set_platform(kPlatform);
  auto* wav = r.add_inputs();
  wav->set_name("WAV");
  wav->set_datatype("FP32");
  wav->add_shape(-1);
  wav->add_shape(-1);
  auto* lens = r.add_inputs();
  lens->set_name("WAV_LENS");
  lens->set_datatype("INT32");
  lens->add_shape(-1);
  lens->add_shape(1);
  auto* out = r.add_outputs();
  out->set_name("TRANSCRIPTS");
  out->set_datatype("BYTES");
  out->add_shape(-1);
  out->add_shape(1);
  return r;
}

inference::ModelConfig InferenceService::Config(const ServedModel& m) const {
  inference::ModelConfig c;
  c.set_name(m.name);
  c.set_backend(kPlatform);
  c.set_max_batch_size(m.streams ? options_.max_sequence_batch_size : options_.max_batch_size);
  c.mutable_version_policy()->mutable_latest()->set_num_versions(1);
  auto* wav = c.add_input();
  wav->set_name("WAV");
  wav->set_data_type(inference::TYPE_FP32);
  wav->add_dims(-1);
  auto* lens = c.add_input();
  lens->set_name("WAV_LENS");
  lens->set_data_type(inference::TYPE_INT32);
  lens->add_dims(1);
  auto* out = c.add_output();
  out->set_name("TRANSCRIPTS");
  out->set_data_type(inference::TYPE_STRING);
  out->add_dims(1);
  auto* group = c.add_instance_group();
  group->set_name(m.name);
  group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  auto param = [&](const std::string& k, const std::string& v) {
    (*c.mutable_parameters())[k].set_string_value(v);
  };
  if (m.streams) {
    // WeNet's model_repo_stateful: sequence batching, oldest strategy, the control tensors its
    // Python models see (internal here: clients never send them).
    const StreamSchedulerConfig& sc = m.streams->config();
    auto* sb = c.mutable_sequence_batching();
    sb->set_max_sequence_idle_microseconds(static_cast<uint64_t>(sc.idle_timeout_ms) * 1000);
    auto* oldest = sb->mutable_oldest();
    oldest->set_max_candidate_sequences(sc.max_streams);
    oldest->add_preferred_batch_size(sc.max_batch_streams);
    oldest->set_max_queue_delay_microseconds(static_cast<uint64_t>(sc.max_batch_delay_us));
    auto control = [&](const char* name, inference::ModelSequenceBatching::Control::Kind kind) {
      auto* ci = sb->add_control_input();
      ci->set_name(name);
      auto* ctl = ci->add_control();
      ctl->set_kind(kind);
      if (kind == inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_CORRID) {
        ctl->set_data_type(inference::TYPE_UINT64);
      } else {
        ctl->add_fp32_false_true(0);
        ctl->add_fp32_false_true(1);
      }
    };
    control("START", inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_START);
    control("READY", inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_READY);
    control("END", inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_END);
    control("CORRID", inference::ModelSequenceBatching::Control::CONTROL_SEQUENCE_CORRID);
    group->set_count(sc.num_workers);
    const StreamOptions& o = m.stream_defaults;
    param("decoding_chunk_size", std::to_string(o.decoding_chunk_size));
    param("num_decoding_left_chunks", std::to_string(o.num_decoding_left_chunks));
    param("beam", std::to_string(o.beam));
    param("rescoring", o.rescoring ? "1" : "0");
    param("ctc_weight", std::to_string(o.ctc_weight));
    param("reverse_weight", std::to_string(o.reverse_weight));
  } else {
    auto* db = c.mutable_dynamic_batching();
    for (int p : options_.preferred_batch_sizes) db->add_preferred_batch_size(p);
    db->set_max_queue_delay_microseconds(static_cast<uint64_t>(options_.max_queue_delay_us));
    group->set_count(m.batcher ? m.batcher->config().num_workers : 1);
    param("decoding_mode", DecodingModeName(m.defaults.mode));
    param("beam", std::to_string(m.defaults.beam));
    param("ctc_weight", std::to_string(m.defaults.ctc_weight));
    param("reverse_weight", std::to_string(m.defaults.reverse_weight));
  }
  param("model_dir", m.model_dir);
  c.mutable_model_transaction_policy()->set_decoupled(false);
  c.mutable_response_cache()->set_enable(false);
  return c;
}

StatusOr<inference::ModelStatisticsResponse> InferenceService::Statistics(const std::string& name,
                                                                          const std::string& version) const {
  inference::ModelStatisticsResponse resp;
  std::vector<ServedModel*> chosen;
  if (name.empty()) {
    chosen = models();
  } else {
    U2_ASSIGN_OR_RETURN(ServedModel * m, Find(name, version));
    chosen.push_back(m);
  }
  for (ServedModel* m : chosen) {
    const ModelStats::Snapshot s = m->stats.Get();
    auto* ms = resp.add_model_stats();
    ms->set_name(m->name);
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
  return resp;
}

std::string InferenceService::PrometheusText() const {
  std::ostringstream os;
  std::vector<std::pair<ServedModel*, ModelStats::Snapshot>> snaps;
  for (ServedModel* m : models()) snaps.emplace_back(m, m->stats.Get());
  auto labels = [](const ServedModel* m) {
    return "model=\"" + m->name + "\",version=\"" + kModelVersion + "\"";
  };
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    for (const auto& [m, s] : snaps) os << name << "{" << labels(m) << "} " << value(s) << "\n";
  };
  family("nv_inference_request_success", "counter",
         "Number of successful inference requests, all batch sizes",
         [](const auto& s) { return s.success.count; });
  os << "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes\n"
        "# TYPE nv_inference_request_failure counter\n";
  for (const auto& [m, s] : snaps) {
    for (const char* reason : {"REJECTED", "CANCELED", "BACKEND", "OTHER"}) {
      auto it = s.failures_by_reason.find(reason);
      os << "nv_inference_request_failure{" << labels(m) << ",reason=\"" << reason << "\"} "
         << (it == s.failures_by_reason.end() ? 0 : it->second) << "\n";
    }
  }
  family("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)",
         [](const auto& s) { return s.inference_count; });
  family("nv_inference_exec_count", "counter", "Number of model executions performed",
         [](const auto& s) { return s.execution_count; });
  os << "# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting "
        "execution "
        "per-model.\n# TYPE nv_inference_pending_request_count gauge\n";
  for (const auto& [m, s] : snaps) {
    // The queue is shared by the names of one model dir; report it under each name's batcher.
    os << "nv_inference_pending_request_count{" << labels(m) << "} "
       << (m->batcher ? m->batcher->queued_tasks() : 0) << "\n";
  }
  family("nv_inference_request_duration_us", "counter",
         "Cumulative inference request duration in microseconds",
         [](const auto& s) { return (s.success.ns + s.fail.ns) / 1000; });
  family("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds",
         [](const auto& s) { return s.queue.ns / 1000; });
  family("nv_inference_compute_input_duration_us", "counter",
         "Cumulative compute input duration in microseconds",
         [](const auto& s) { return s.compute_input.ns / 1000; });
  family("nv_inference_compute_infer_duration_us", "counter",
         "Cumulative compute inference duration in microseconds",
         [](const auto& s) { return s.compute_infer.ns / 1000; });
  family("nv_inference_compute_output_duration_us", "counter",
         "Cumulative inference compute output duration in microseconds",
         [](const auto& s) { return s.compute_output.ns / 1000; });
  family("u2_audio_seconds_total", "counter", "Seconds of audio recognised successfully",
         [](const auto& s) { return s.audio_seconds; });
  family(
      "u2_compute_seconds_per_audio_second", "gauge",
      "Cumulative compute_infer time divided by audio seconds (real-time factor of the engine, per request)",
      [](const auto& s) { return s.audio_seconds > 0 ? s.compute_infer.ns / 1e9 / s.audio_seconds : 0.0; });
  // Histogram of execution batch sizes (counts of Recognize() calls by utterances per call).
  os << "# HELP u2_batch_size Utterances per model execution\n# TYPE u2_batch_size histogram\n";
  for (const auto& [m, s] : snaps) {
    uint64_t cumulative = 0, sum = 0;
    const uint64_t bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    auto it = s.batch_stats.begin();
    for (uint64_t le : bounds) {
      for (; it != s.batch_stats.end() && it->first <= le; ++it) {
        cumulative += it->second.compute_infer.count;
        sum += it->first * it->second.compute_infer.count;
      }
      os << "u2_batch_size_bucket{" << labels(m) << ",le=\"" << le << "\"} " << cumulative << "\n";
    }
    for (; it != s.batch_stats.end(); ++it) {
      cumulative += it->second.compute_infer.count;
      sum += it->first * it->second.compute_infer.count;
    }
    os << "u2_batch_size_bucket{" << labels(m) << ",le=\"+Inf\"} " << cumulative << "\n";
    os << "u2_batch_size_sum{" << labels(m) << "} " << sum << "\n";
    os << "u2_batch_size_count{" << labels(m) << "} " << cumulative << "\n";
  }
  // Streaming: one scheduler per model dir, reported under the streaming name(s) that use it.
  std::vector<std::pair<const ServedModel*, StreamScheduler::Stats>> streams;
  for (const auto& [m, s] : snaps) {
    if (m->streams) streams.emplace_back(m, m->streams->stats());
  }
  if (!streams.empty()) {
    auto stream_family = [&](const char* name, const char* type, const char* help, auto value) {
      os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
      for (const auto& [m, st] : streams) os << name << "{" << labels(m) << "} " << value(st) << "\n";
    };
    using Stats = StreamScheduler::Stats;
    stream_family("u2_streams_live", "gauge", "Streams (sequences) holding state now",
                  [](const Stats& s) { return s.live_streams; });
    stream_family("u2_stream_state_bytes", "gauge", "Memory held by the live streams' state",
                  [](const Stats& s) { return s.state_bytes; });
    stream_family("u2_streams_started_total", "counter", "Streams started (sequence START)",
                  [](const Stats& s) { return s.streams_started; });
    stream_family("u2_streams_finished_total", "counter", "Streams that ended normally (sequence END)",
                  [](const Stats& s) { return s.streams_finished; });
    stream_family("u2_streams_timed_out_total", "counter", "Streams dropped by the idle timeout",
                  [](const Stats& s) { return s.streams_timed_out; });
    stream_family("u2_streams_closed_total", "counter",
                  "Streams dropped early (client gone, sequence restarted)",
                  [](const Stats& s) { return s.streams_closed; });
    stream_family("u2_stream_feeds_total", "counter", "Audio pieces (sequence requests) fed to streams",
                  [](const Stats& s) { return s.feeds; });
    stream_family("u2_stream_feed_errors_total", "counter", "Feeds answered with an error",
                  [](const Stats& s) { return s.feed_errors; });
    stream_family("u2_stream_chunks_total", "counter", "Encoder chunks decoded",
                  [](const Stats& s) { return s.chunks; });
    stream_family("u2_stream_steps_total", "counter", "Batched decoding steps (chunks of many streams each)",
                  [](const Stats& s) { return s.steps; });
    stream_family("u2_stream_step_seconds_total", "counter", "Time spent in batched decoding steps",
                  [](const Stats& s) { return s.step_ns / 1e9; });
  }
  return os.str();
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kResourceExhausted:
      return 503;
    case StatusCode::kUnimplemented:
      return 501;
    default:
      return 400;
  }
}

}  // namespace u2::server
