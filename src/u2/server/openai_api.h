// OpenAI's speech-to-text API on the HTTP port, so applications written for it (the `openai`
// client libraries, Open WebUI, ...) work against u2serve with base_url = http://HOST:8000/v1:
//
//   POST /v1/audio/transcriptions   multipart/form-data:
//        file                       audio in any format the server decodes (WAV, FLAC, OGG, MP3, ...)
//        model                      a served offline model name (attention_rescoring, ...), a model
//                                   dir's name, or "whisper-1" / "default" for the first one
//        response_format            json (default) | text | srt | vtt | verbose_json
//        timestamp_granularities[]  segment and/or word (verbose_json)
//        stream                     true: server-sent events transcript.text.delta / .done
//        language, prompt, temperature   accepted; the model decides the language, the prompt is
//                                   not used yet, decoding is deterministic (temperature 0)
//   POST /v1/audio/translations     400: these models transcribe, they do not translate
//   GET  /v1/models                 the served models
//
// Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}}. Recording lengths are
// limited as on the KServe path (the model's position table) until long-audio segmentation lands.
#pragma once

#include "u2/server/http_server.h"
#include "u2/server/inference.h"

namespace u2::server {

HttpHandler MakeOpenAiHandler(InferenceService* service);

// The offline model an OpenAI `model` field names (see above). NotFound otherwise.
StatusOr<ServedModel*> FindOpenAiModel(const ModelRepository& models, const std::string& name);

}  // namespace u2::server
