#include "u2/server/openai_api.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "u2/audio/audio.h"
#include "u2/server/formats.h"
#include "u2/server/http_api.h"
#include "u2/server/http_router.h"
#include "u2/server/long_audio_job.h"
#include "u2/server/multipart.h"
#include "u2/server/refusals.h"

namespace u2::server {
namespace {

namespace http = boost::beast::http;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The form fields of one transcription request.
struct TranscriptionRequest {
  std::string model;
  std::string language = "en";
  TranscriptFormat format = TranscriptFormat::kJson;
  bool segments = false, words = false;  // timestamp_granularities[]
  bool stream = false;
  std::span<const std::byte> file;
  std::string keywords;  // keywords[]: one hotword per line
};

HttpResponse OpenAiErrorResponse(const HttpRequest& req, int status, const std::string& message,
                                 const std::string& param = "", const std::string& code = "") {
  const char* type = status == 401   ? "invalid_request_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return MakeResponse(req, status, OpenAiError(message, type, param, code));
}

HttpResponse ErrorFor(const HttpRequest& req, const Status& s, const std::string& param = "") {
  const int status = HttpStatusFor(s);
  return OpenAiErrorResponse(req, status, s.message(), param,
                             s.code() == StatusCode::kNotFound ? "model_not_found" : "");
}

StatusOr<bool> FormBool(const std::string& field, std::string_view v) {
  if (v == "true" || v == "True" || v == "1") return true;
  if (v == "false" || v == "False" || v == "0" || v.empty()) return false;
  return InvalidArgument("'" + field + "' must be true or false, got '" + std::string(v) + "'");
}

StatusOr<TranscriptionRequest> ParseTranscriptionForm(const std::vector<FormPart>& parts) {
  TranscriptionRequest r;
  bool have_file = false, granularities = false;
  for (const FormPart& p : parts) {
    const std::string value(p.data);
    if (p.name == "file") {
      if (have_file) return InvalidArgument("more than one 'file' part");
      have_file = true;
      r.file = std::as_bytes(std::span<const char>(p.data.data(), p.data.size()));
    } else if (p.name == "model") {
      r.model = value;
    } else if (p.name == "language") {
      if (!value.empty()) r.language = value;
    } else if (p.name == "response_format") {
      U2_ASSIGN_OR_RETURN(r.format, ParseTranscriptFormat(value));
    } else if (p.name == "timestamp_granularities[]" || p.name == "timestamp_granularities") {
      granularities = true;
      if (value == "segment") {
        r.segments = true;
      } else if (value == "word") {
        r.words = true;
      } else {
        return InvalidArgument("timestamp_granularities[] must be 'segment' or 'word', got '" + value + "'");
      }
    } else if (p.name == "stream") {
      U2_ASSIGN_OR_RETURN(r.stream, FormBool("stream", value));
    } else if (p.name == "temperature") {
      try {
        size_t used = 0;
        const double t = std::stod(value, &used);
        if (used != value.size() || t < 0 || t > 1) throw std::invalid_argument("range");
      } catch (const std::exception&) {
        return InvalidArgument("'temperature' must be a number in [0, 1], got '" + value + "'");
      }
    } else if (p.name == "keywords[]" || p.name == "keywords") {
      // OpenAI's keywords: each one a hotword (a "phrase[:boost]" line of engine/hotwords.h).
      if (!value.empty()) r.keywords += value + "\n";
    }
    // prompt, include[], chunking_strategy and unknown fields: accepted, not used.
  }
  if (!have_file) return InvalidArgument("the form has no 'file' part (the audio to transcribe)");
  if (r.file.empty()) return InvalidArgument("the uploaded 'file' is empty");
  if (r.model.empty()) return InvalidArgument("the form has no 'model' field");
  if (!granularities) r.segments = true;  // OpenAI's default for verbose_json
  return r;
}

void Transcribe(InferenceService* service, HttpRequest&& req, Responder respond) {
  const Clock::time_point received = Clock::now();
  if (!service->ready()) {
    CountRefusal(RefusalCause::kShuttingDown);
    return respond(OpenAiErrorResponse(req, 503, "the server is shutting down"));
  }
  const auto content_type = req[http::field::content_type];
  auto boundary = MultipartBoundary(std::string_view(content_type.data(), content_type.size()));
  if (!boundary.ok()) return respond(ErrorFor(req, boundary.status()));
  // The parts are views into the body, which the task keeps alive.
  auto body = std::make_shared<std::string>(std::move(req.body()));
  auto parts = ParseMultipart(*body, *boundary);
  if (!parts.ok()) return respond(ErrorFor(req, parts.status()));
  auto form = ParseTranscriptionForm(*parts);
  if (!form.ok()) return respond(ErrorFor(req, form.status()));
  auto model = FindOpenAiModel(service->models(), form->model);
  if (!model.ok()) return respond(ErrorFor(req, model.status(), "model"));
  ServedModel* m = *model;
  auto audio = DecodeAudio(form->file);
  if (!audio.ok()) {
    return respond(OpenAiErrorResponse(
        req, 400, "cannot decode the uploaded file as audio: " + audio.status().message(), "file"));
  }
  const double seconds = audio->seconds();
  const bool long_recording = seconds * kWireSampleRate > static_cast<double>(m->max_samples);
  if (long_recording && m->long_audio == nullptr) {
    return respond(OpenAiErrorResponse(req, 400,
                                       std::to_string(static_cast<int>(seconds)) +
                                           " s of audio exceeds this model's limit of " +
                                           std::to_string(m->max_samples / kWireSampleRate) +
                                           " s and the server has no VAD to segment it (--vad-model-dir)",
                                       "file"));
  }
  ParameterMap parameters;
  if (!form->keywords.empty()) parameters["hotwords"] = form->keywords;
  auto options = OfflineOptionsFor(*m, parameters);
  if (!options.ok()) return respond(ErrorFor(req, options.status()));

  // Everything the answer needs, shared by the task (or long-audio job) that produces it.
  struct Pending {
    std::shared_ptr<std::string> body;
    AudioBuffer audio;
    TranscriptionRequest form;
    std::shared_ptr<ResponseStream> events;  // stream=true
    HttpRequest header;
    Responder respond;
    int segments_sent = 0;
  };
  auto pending =
      std::make_shared<Pending>(Pending{body, std::move(audio).value(), *form, nullptr, {}, respond, 0});
  pending->header.version(req.version());
  pending->header.keep_alive(req.keep_alive());
  if (form->stream) {
    HttpResponse header = MakeResponse(req, 200, "", "text/event-stream");
    header.set(http::field::cache_control, "no-cache");
    pending->events = respond.Stream(std::move(header));
    if (!pending->events)
      return respond(OpenAiErrorResponse(req, 400, "streaming is not available here", "stream"));
  }
  std::optional<Clock::time_point> deadline;
  if (const int64_t us = m->batcher->config().default_timeout_us; us > 0) {
    deadline = received + std::chrono::microseconds(us);
  }
  std::function<bool()> cancelled;
  if (pending->events) cancelled = [events = pending->events] { return events->client_gone(); };

  // The answer: the transcript in the asked format, or the rest of the event stream.
  auto finish = [service, m, pending, received](StatusOr<std::vector<TimedResult>> stretches, bool ran) {
    const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - received).count();
    if (!stretches.ok()) {
      ModelStats::FailReason reason =
          ran ? ModelStats::FailReason::kBackend : ModelStats::FailReason::kCanceled;
      if (const StatusCode code = stretches.status().code();
          !ran && (code == StatusCode::kResourceExhausted || code == StatusCode::kDeadlineExceeded)) {
        reason = ModelStats::FailReason::kRejected;  // queue full, or waited past its timeout (as KServe's)
        CountRefusal(code == StatusCode::kResourceExhausted ? RefusalCause::kQueueFull
                                                            : RefusalCause::kDeadlineExceeded);
      }
      m->stats.RecordFailure(ns, reason);
      if (pending->events) {
        pending->events->Write("data: " + OpenAiError(stretches.status().message(), "server_error") + "\n\n");
        pending->events->Finish();
      } else {
        pending->respond(ErrorFor(pending->header, stretches.status()));
      }
      service->EndRequest();
      return;
    }
    const Transcript t = MakeTranscript(*stretches, pending->audio.seconds());
    m->stats.RecordSuccess(ns, OfflineTaskTiming{}, 1, pending->audio.seconds());
    if (pending->events) {
      if (pending->segments_sent == 0) {  // a clip recognised whole: its caption segments now
        for (size_t i = 0; i < t.segments.size(); ++i) {
          pending->events->Write(SseTextDelta(i == 0 ? t.segments[i].text : " " + t.segments[i].text));
        }
      }
      pending->events->Write(SseTextDone(t.text, t.duration));
      pending->events->Finish();
    } else {
      const TranscriptFormat format = pending->form.format;
      pending->respond(MakeResponse(
          pending->header, 200,
          FormatTranscript(t, format, pending->form.language, pending->form.segments, pending->form.words),
          ContentTypeOf(format)));
    }
    service->EndRequest();
  };

  service->BeginRequest();
  if (long_recording) {
    // Segmented by the VAD; with stream=true each segment's text goes out as soon as it (and every
    // earlier one) is recognised.
    LongAudioRequest job;
    job.model = m;
    job.segmenter = m->long_audio;
    auto resampled = pending->audio.sample_rate == kWireSampleRate
                         ? StatusOr<std::vector<float>>(pending->audio.samples)
                         : Resample(pending->audio.samples, pending->audio.sample_rate, kWireSampleRate);
    if (!resampled.ok()) return finish(resampled.status(), false);
    job.samples = std::move(resampled).value();
    job.options = *options;
    job.deadline = deadline;
    job.cancelled = cancelled;
    if (pending->events) {
      job.on_segment = [pending](const TimedResult& r) {
        if (r.result.nbest.empty() || r.result.best().text.empty()) return;
        pending->events->Write(SseTextDelta((pending->segments_sent++ ? " " : "") + r.result.best().text));
      };
    }
    job.done = [finish](StatusOr<std::vector<TimedResult>> stretches) { finish(std::move(stretches), true); };
    return StartLongAudioJob(std::move(job));
  }
  OfflineTask task;
  task.waveforms.push_back({pending->audio.samples, pending->audio.sample_rate});
  task.options = *options;
  task.batch_key = m->name + "|" + options->ToString();
  task.cancelled = cancelled;
  task.deadline = deadline;
  task.done = [finish, pending](OfflineResults results, const OfflineTaskTiming& timing) {
    if (!results.ok()) return finish(results.status(), timing.execution_batch_size > 0);
    std::vector<TimedResult> whole = {{0.0, pending->audio.seconds(), std::move(results->front())}};
    finish(std::move(whole), true);
  };
  if (Status s = m->batcher->Submit(std::move(task)); !s.ok()) finish(s, false);
}

json ModelList(const ModelRepository& models) {
  json data = json::array();
  for (const ServedModel* m : models.models()) {
    if (m->streaming()) continue;
    data.push_back({{"id", m->name}, {"object", "model"}, {"created", 0}, {"owned_by", kServerName}});
  }
  return {{"object", "list"}, {"data", data}};
}

}  // namespace

StatusOr<ServedModel*> FindOpenAiModel(const ModelRepository& models, const std::string& name) {
  ServedModel* first = nullptr;
  for (ServedModel* m : models.models()) {
    if (m->streaming()) continue;
    if (!first) first = m;
    if (m->name == name) return m;
  }
  if (first && (name == "whisper-1" || name == "default" || name == kServerName)) return first;
  for (ServedModel* m : models.models()) {
    if (!m->streaming() &&
        std::filesystem::path(m->model_dir).lexically_normal().filename().string() == name) {
      return m;  // a model dir's name: its first (default) mode
    }
  }
  return NotFound("The model '" + name + "' does not exist on this server (GET /v1/models lists them)");
}

HttpHandler MakeOpenAiHandler(InferenceService* service) {
  return [service](HttpRequest&& req, Responder respond) {
    const std::string_view path = PathOf(std::string_view(req.target().data(), req.target().size()));
    const http::verb method = req.method();
    if (path == "/v1/audio/transcriptions") {
      if (method != http::verb::post) return respond(OpenAiErrorResponse(req, 405, "use POST"));
      return Transcribe(service, std::move(req), std::move(respond));
    }
    if (path == "/v1/audio/translations") {
      return respond(OpenAiErrorResponse(
          req, 400,
          "translations are not supported: this server's models transcribe speech, they do not translate it",
          "", "unsupported_endpoint"));
    }
    if (path == "/v1/models") {
      if (method != http::verb::get) return respond(OpenAiErrorResponse(req, 405, "use GET"));
      return respond(MakeResponse(req, 200, ModelList(service->models()).dump()));
    }
    if (path.starts_with("/v1/models/") && method == http::verb::get) {
      auto m = service->models().Find(std::string(path.substr(11)), "");
      if (!m.ok() || (*m)->streaming())
        return respond(ErrorFor(req, NotFound("The model does not exist"), "model"));
      return respond(MakeResponse(
          req, 200,
          json{{"id", (*m)->name}, {"object", "model"}, {"created", 0}, {"owned_by", kServerName}}.dump()));
    }
    respond(OpenAiErrorResponse(req, 404, "unknown endpoint " + std::string(path), "", "not_found"));
  };
}

}  // namespace u2::server
