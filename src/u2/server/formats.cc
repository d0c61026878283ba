#include "u2/server/formats.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace u2::server {
namespace {

using json = nlohmann::json;
// Outgoing WebSocket messages keep WeNet's field order (status, type, nbest; sentence, word_pieces).
using ordered_json = nlohmann::ordered_json;

template <typename Json>
std::string Dump(const Json& j) {
  // Token text from a model's unit table might not be valid UTF-8; never throw over it.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

double Round3(double v) { return std::round(v * 1000.0) / 1000.0; }

}  // namespace

// ---- KServe HTTP ------------------------------------------------------------------------------

KServeHttpBody FormatKServeHttpResponse(const InferResponse& r, const HttpOutputChoice& choice) {
  json out = {{"model_name", r.model_name}, {"model_version", r.model_version}};
  if (!r.id.empty()) out["id"] = r.id;
  json outputs = json::array();
  std::string tail;
  for (const OutputTensor& t : r.outputs) {
    json o = {{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}};
    if (choice.BinaryFor(t.name)) {
      const std::string raw = t.RawBytes();
      o["parameters"] = {{"binary_data_size", raw.size()}};
      tail += raw;
    } else {
      json data = json::array();
      for (const auto& s : t.strings) data.push_back(s);
      o["data"] = data;
    }
    outputs.push_back(std::move(o));
  }
  out["outputs"] = outputs;
  KServeHttpBody b;
  b.body = Dump(out);
  b.json_size = b.body.size();
  b.has_binary = !tail.empty();
  b.body += tail;
  return b;
}

// ---- WeNet WebSocket protocol -----------------------------------------------------------------

std::string WeNetStatusMessage(const std::string& type) {
  return Dump(ordered_json{{"status", "ok"}, {"type", type}});
}

std::string WeNetFailedMessage(const std::string& message) {
  return Dump(ordered_json{{"status", "failed"}, {"message", message}});
}

std::string WeNetResultMessage(const StreamResult& result, bool confidence) {
  ordered_json nbest = ordered_json::array();
  for (const Hypothesis& h : result.nbest) {
    ordered_json path = {{"sentence", h.text}};
    if (result.is_final) {
      ordered_json pieces = ordered_json::array();
      for (const WordPiece& w : h.words) {
        pieces.push_back(ordered_json{{"word", w.word},
                                      {"start", w.start_ms},
                                      {"end", w.end_ms},
                                      {"confidence", Round3(w.confidence)}});
      }
      path["word_pieces"] = std::move(pieces);
      if (confidence) path["confidence"] = Round3(h.confidence);
    }
    nbest.push_back(std::move(path));
  }
  return Dump(ordered_json{{"status", "ok"},
                           {"type", result.is_final ? "final_result" : "partial_result"},
                           {"nbest", Dump(nbest)}});
}

// ---- OpenAI transcriptions --------------------------------------------------------------------

StatusOr<TranscriptFormat> ParseTranscriptFormat(const std::string& name) {
  if (name.empty() || name == "json") return TranscriptFormat::kJson;
  if (name == "text") return TranscriptFormat::kText;
  if (name == "srt") return TranscriptFormat::kSrt;
  if (name == "vtt") return TranscriptFormat::kVtt;
  if (name == "verbose_json") return TranscriptFormat::kVerboseJson;
  return InvalidArgument("unsupported response_format '" + name +
                         "' (expected json, text, srt, vtt or verbose_json)");
}

const char* ContentTypeOf(TranscriptFormat format) {
  switch (format) {
    case TranscriptFormat::kJson:
    case TranscriptFormat::kVerboseJson:
      return "application/json";
    case TranscriptFormat::kText:
      return "text/plain; charset=utf-8";
    case TranscriptFormat::kSrt:
      return "application/x-subrip; charset=utf-8";
    case TranscriptFormat::kVtt:
      return "text/vtt; charset=utf-8";
  }
  return "application/json";
}

std::string FormatTranscript(const Transcript& t, TranscriptFormat format, const std::string& language,
                             bool segments, bool words) {
  switch (format) {
    case TranscriptFormat::kJson:
      return Dump(
          json{{"text", t.text}, {"usage", {{"type", "duration"}, {"seconds", std::ceil(t.duration)}}}});
    case TranscriptFormat::kText:
      return t.text + "\n";
    case TranscriptFormat::kSrt:
      return FormatSrt(t);
    case TranscriptFormat::kVtt:
      return FormatVtt(t);
    case TranscriptFormat::kVerboseJson: {
      json j = {{"task", "transcribe"},
                {"language", language},
                {"duration", Round3(t.duration)},
                {"text", t.text},
                {"usage", {{"type", "duration"}, {"seconds", std::ceil(t.duration)}}}};
      if (segments) {
        json list = json::array();
        for (const TranscriptSegment& s : t.segments) {
          list.push_back({{"id", s.id},
                          {"seek", 0},
                          {"start", Round3(s.start)},
                          {"end", Round3(s.end)},
                          {"text", s.text},
                          {"tokens", s.tokens},
                          {"temperature", 0.0},
                          {"avg_logprob", s.avg_logprob},
                          {"compression_ratio", 1.0},
                          {"no_speech_prob", s.text.empty() ? 1.0 : 0.0},
                          {"confidence", Round3(s.confidence)}});
        }
        j["segments"] = std::move(list);
      }
      if (words) {
        json list = json::array();
        for (const TranscriptWord& w : t.words) {
          list.push_back({{"word", w.word},
                          {"start", Round3(w.start)},
                          {"end", Round3(w.end)},
                          {"confidence", Round3(w.confidence)}});
        }
        j["words"] = std::move(list);
      }
      return Dump(j);
    }
  }
  return "";
}

std::string SseTextDelta(const std::string& delta) {
  return "data: " + Dump(json{{"type", "transcript.text.delta"}, {"delta", delta}}) + "\n\n";
}

std::string SseTextDone(const std::string& text, double seconds) {
  return "data: " +
         Dump(json{{"type", "transcript.text.done"},
                   {"text", text},
                   {"usage", {{"type", "duration"}, {"seconds", std::ceil(seconds)}}}}) +
         "\n\n";
}

std::string OpenAiError(const std::string& message, const std::string& type, const std::string& param,
                        const std::string& code) {
  json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return Dump(json{{"error", e}});
}

}  // namespace u2::server
