#include "u2/server/formats.h"

#include <cmath>
#include <cstdio>
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

std::string Clock(double seconds, char fraction_separator) {
  const int64_t ms = std::max<int64_t>(0, std::llround(seconds * 1000.0));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02lld:%02lld:%02lld%c%03lld", static_cast<long long>(ms / 3600000),
                static_cast<long long>(ms / 60000 % 60), static_cast<long long>(ms / 1000 % 60),
                fraction_separator, static_cast<long long>(ms % 1000));
  return buf;
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

std::string WeNetResultMessage(const StreamResult& result) {
  ordered_json nbest = ordered_json::array();
  for (const Hypothesis& h : result.nbest) {
    ordered_json path = {{"sentence", h.text}};
    if (result.is_final) {
      ordered_json pieces = ordered_json::array();
      for (const WordPiece& w : h.words) {
        pieces.push_back(ordered_json{{"word", w.word}, {"start", w.start_ms}, {"end", w.end_ms}});
      }
      path["word_pieces"] = std::move(pieces);
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

std::string SrtTime(double seconds) { return Clock(seconds, ','); }
std::string VttTime(double seconds) { return Clock(seconds, '.'); }

Transcript MakeTranscript(const RecognitionResult& result, const std::string& language, double pause_s,
                          double max_segment_s) {
  Transcript t;
  t.language = language;
  t.duration = result.audio_seconds;
  if (result.nbest.empty()) return t;
  const Hypothesis& best = result.best();
  t.text = best.text;
  for (const WordPiece& w : best.words) t.words.push_back({w.word, w.start_ms / 1000.0, w.end_ms / 1000.0});
  const double avg_logprob = best.ctc_score / std::max<size_t>(1, best.tokens.size());
  auto add_segment = [&](size_t first, size_t last) {  // words [first, last)
    TranscriptSegment s;
    s.id = static_cast<int>(t.segments.size());
    s.start = t.words[first].start;
    s.end = t.words[last - 1].end;
    for (size_t i = first; i < last; ++i) s.text += (i > first ? " " : "") + t.words[i].word;
    s.avg_logprob = avg_logprob;
    t.segments.push_back(std::move(s));
  };
  if (t.words.empty()) {
    // Text without word times (or no speech): one segment over the whole audio.
    TranscriptSegment s;
    s.end = t.duration;
    s.text = t.text;
    s.tokens = best.tokens;
    s.avg_logprob = avg_logprob;
    s.no_speech_prob = t.text.empty() ? 1.0 : 0.0;
    t.segments.push_back(std::move(s));
    return t;
  }
  size_t first = 0;
  for (size_t i = 1; i < t.words.size(); ++i) {
    const bool pause = t.words[i].start - t.words[i - 1].end >= pause_s;
    const bool too_long = t.words[i].end - t.words[first].start > max_segment_s;
    if (pause || too_long) {
      add_segment(first, i);
      first = i;
    }
  }
  add_segment(first, t.words.size());
  // Token ids go with the segment their word is in; the unit table's word marker starts words.
  if (t.segments.size() == 1) t.segments[0].tokens = best.tokens;
  return t;
}

std::string FormatTranscript(const Transcript& t, TranscriptFormat format, bool segments, bool words) {
  switch (format) {
    case TranscriptFormat::kJson:
      return Dump(
          json{{"text", t.text}, {"usage", {{"type", "duration"}, {"seconds", std::ceil(t.duration)}}}});
    case TranscriptFormat::kText:
      return t.text + "\n";
    case TranscriptFormat::kSrt:
    case TranscriptFormat::kVtt: {
      const bool srt = format == TranscriptFormat::kSrt;
      std::string out = srt ? "" : "WEBVTT\n\n";
      int cue = 0;
      for (const TranscriptSegment& s : t.segments) {
        if (s.text.empty()) continue;
        if (srt) out += std::to_string(++cue) + "\n";
        out += (srt ? SrtTime(s.start) : VttTime(s.start)) + " --> " +
               (srt ? SrtTime(s.end) : VttTime(s.end)) + "\n" + s.text + "\n\n";
      }
      return out;
    }
    case TranscriptFormat::kVerboseJson: {
      json j = {{"task", "transcribe"},
                {"language", t.language},
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
                          {"no_speech_prob", s.no_speech_prob}});
        }
        j["segments"] = std::move(list);
      }
      if (words) {
        json list = json::array();
        for (const TranscriptWord& w : t.words) {
          list.push_back({{"word", w.word}, {"start", Round3(w.start)}, {"end", Round3(w.end)}});
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
