// Every response body u2serve writes, apart from the engine and the transports (as in whisper.cpp's
// server): the KServe HTTP reply (JSON tensors and the binary tensor extension), WeNet's WebSocket
// messages, and OpenAI's transcription formats (json, text, srt, vtt, verbose_json) and
// server-sent events.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "u2/engine/recognizer.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/server/kserve_http.h"
#include "u2/server/kserve_types.h"
#include "u2/util/status.h"

namespace u2::server {

// ---- KServe HTTP ------------------------------------------------------------------------------

struct KServeHttpBody {
  std::string body;         // JSON header, then the binary outputs (if any)
  size_t json_size = 0;     // Inference-Header-Content-Length when binary
  bool has_binary = false;  // send as application/octet-stream with that header
};
KServeHttpBody FormatKServeHttpResponse(const InferResponse& response, const HttpOutputChoice& choice);

// ---- WeNet WebSocket protocol (docs/websocket.md) ---------------------------------------------

std::string WeNetStatusMessage(const std::string& type);  // {"status":"ok","type":TYPE}
std::string WeNetFailedMessage(const std::string& message);
// {"status":"ok","type":"partial_result"|"final_result","nbest":"[...]"}: as in WeNet, "nbest"
// is a string holding JSON; finals carry word_pieces.
std::string WeNetResultMessage(const StreamResult& result);

// ---- OpenAI transcriptions --------------------------------------------------------------------

enum class TranscriptFormat { kJson, kText, kSrt, kVtt, kVerboseJson };
StatusOr<TranscriptFormat> ParseTranscriptFormat(const std::string& name);
const char* ContentTypeOf(TranscriptFormat format);

struct TranscriptWord {
  std::string word;
  double start = 0, end = 0;  // seconds from the audio's start
};
struct TranscriptSegment {
  int id = 0;
  double start = 0, end = 0;
  std::string text;
  std::vector<int> tokens;  // the model's unit ids
  double avg_logprob = 0;   // CTC log-probability per token of the best path
  double no_speech_prob = 0;
};
struct Transcript {
  std::string text;
  std::string language;
  double duration = 0;  // seconds of audio
  std::vector<TranscriptSegment> segments;
  std::vector<TranscriptWord> words;
};

// A recognition result as a timed transcript. Segments (caption cues) are cut from the word
// times at pauses of at least `pause_s` and before a segment would pass `max_segment_s`.
Transcript MakeTranscript(const RecognitionResult& result, const std::string& language, double pause_s = 0.6,
                          double max_segment_s = 8.0);
// The body for `format`. verbose_json carries segments and/or words as asked
// (timestamp_granularities[]; segments by default).
std::string FormatTranscript(const Transcript& t, TranscriptFormat format, bool segments = true,
                             bool words = false);
std::string SrtTime(double seconds);  // 00:01:02,345
std::string VttTime(double seconds);  // 00:01:02.345

// Server-sent events of a streamed transcription: one data line per event.
std::string SseTextDelta(const std::string& delta);
std::string SseTextDone(const std::string& text, double seconds);
// OpenAI's error object: {"error":{"message","type","param","code"}}.
std::string OpenAiError(const std::string& message, const std::string& type, const std::string& param = "",
                        const std::string& code = "");

}  // namespace u2::server
