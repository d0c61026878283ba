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
#include "u2/engine/transcript.h"
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
// is a string holding JSON; finals carry word_pieces. With `confidence` (the start message's
// "confidence": true) each path and word piece also carries its confidence.
std::string WeNetResultMessage(const StreamResult& result, bool confidence = false);

// ---- OpenAI transcriptions --------------------------------------------------------------------

enum class TranscriptFormat { kJson, kText, kSrt, kVtt, kVerboseJson };
StatusOr<TranscriptFormat> ParseTranscriptFormat(const std::string& name);
const char* ContentTypeOf(TranscriptFormat format);

// The body for `format` (engine/transcript.h builds the transcript). verbose_json carries
// segments and/or words as asked (timestamp_granularities[]; segments by default) and echoes
// `language`.
std::string FormatTranscript(const Transcript& t, TranscriptFormat format, const std::string& language,
                             bool segments = true, bool words = false);

// Server-sent events of a streamed transcription: one data line per event.
std::string SseTextDelta(const std::string& delta);
std::string SseTextDone(const std::string& text, double seconds);
// OpenAI's error object: {"error":{"message","type","param","code"}}.
std::string OpenAiError(const std::string& message, const std::string& type, const std::string& param = "",
                        const std::string& code = "");

}  // namespace u2::server
