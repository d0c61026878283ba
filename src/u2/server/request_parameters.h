// Request parameters -> decoding options: the one place where a client's per-request settings
// are read, whatever front end they came through (KServe parameters on gRPC/HTTP, Triton
// sequence requests, the WebSocket start message, OpenAI form fields). Each overlay only reads
// and type-checks; the option struct's own Validate() owns the bounds, so a knob is added in one
// place and its limits cannot disagree between front ends.
//
// Keys (unknown keys are custom parameters: accepted and ignored, as Triton does):
//   decoding_mode                       string: ctc_greedy | ctc_prefix_beam_search | attention_rescoring
//   beam, nbest                         integers
//   ctc_weight, reverse_weight          numbers
//   decoding_chunk_size (chunk_size)    integer
//   num_decoding_left_chunks (left_chunks) integer
//   lm_weight, word_bonus               numbers (LM shallow fusion; lm_weight 0 turns the LM off)
//   hotwords                            string: a hotword list (engine/hotwords.h: one
//                                       "phrase[:boost]" per line, or a JSON array of them); it
//                                       replaces the server's default list, "" turns biasing off
//   streams only: rescoring (bool or 0/1), continuous_decoding (bool), endpointing (bool),
//                 vad_gate (bool: skip silence, end segments at pauses), vad_threshold (number),
//                 vad_min_silence_ms (integer: the pause that ends a segment)
// Triton's sequence keys (sequence_id, sequence_start, sequence_end) and its reserved "triton_"
// prefix are checked by CheckTritonParameters.
#pragma once

#include <chrono>
#include <nlohmann/json_fwd.hpp>
#include <optional>

#include "u2/engine/recognizer.h"
#include "u2/engine/streaming_recognizer.h"
#include "u2/server/kserve_types.h"
#include "u2/util/status.h"

namespace u2::server {

// Overlays the decoding keys of `parameters` on `options` (offline requests). Type errors, and a
// hotword list `hotwords` cannot compile (unknown characters, too many phrases; null: the model
// takes no hotwords).
Status ApplyRequestParameters(const ParameterMap& parameters, DecodingOptions* options,
                              const HotwordCompiler* hotwords = nullptr);
// The same for a stream (Triton sequences, WebSocket). `beam` also caps nbest at the new beam
// unless nbest is given; endpointing follows continuous_decoding unless given (a plain stream is
// one utterance, decoded to its end).
Status ApplyRequestParameters(const ParameterMap& parameters, StreamOptions* options,
                              const HotwordCompiler* hotwords = nullptr);

// Triton's own keys: sequence_id (int64 or string), sequence_start / sequence_end (bool), and no
// other key starting with "triton_" (but triton_enable_empty_final_response).
Status CheckTritonParameters(const ParameterMap& parameters);

// Triton's per-request queue timeout: the "timeout" parameter in microseconds (> 0), else
// `default_us` (0: none). The deadline is counted from `received`.
StatusOr<std::optional<std::chrono::steady_clock::time_point>> RequestDeadline(
    const ParameterMap& parameters, std::chrono::steady_clock::time_point received, int64_t default_us);

// A JSON object's scalar members as parameters (integers as int64, other numbers as double);
// arrays, objects and nulls are left out. InvalidArgument if `object` is not an object.
StatusOr<ParameterMap> ParametersFromJson(const nlohmann::json& object);

}  // namespace u2::server
