#include "u2/server/request_parameters.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace u2::server {
namespace {

std::string Shown(const Parameter& p) {
  if (const auto* s = std::get_if<std::string>(&p)) return "\"" + *s + "\"";
  if (const auto* b = std::get_if<bool>(&p)) return *b ? "true" : "false";
  if (const auto* i = std::get_if<int64_t>(&p)) return std::to_string(*i);
  if (const auto* u = std::get_if<uint64_t>(&p)) return std::to_string(*u);
  return std::to_string(std::get<double>(p));
}

// The messages name the key the way WeNet's WebSocket server does ("integer is expected for
// nbest"), which its clients and ours already look for.
StatusOr<int> Integer(const std::string& key, const Parameter& p) {
  double v = std::numeric_limits<double>::quiet_NaN();
  if (const auto* i = std::get_if<int64_t>(&p)) v = static_cast<double>(*i);
  if (const auto* u = std::get_if<uint64_t>(&p)) v = static_cast<double>(*u);
  if (const auto* d = std::get_if<double>(&p)) v = *d;
  if (!std::isfinite(v) || v != std::floor(v) || v < std::numeric_limits<int>::min() ||
      v > std::numeric_limits<int>::max()) {
    return InvalidArgument("integer is expected for " + key + ", got " + Shown(p));
  }
  return static_cast<int>(v);
}

StatusOr<float> Number(const std::string& key, const Parameter& p) {
  if (const auto* i = std::get_if<int64_t>(&p)) return static_cast<float>(*i);
  if (const auto* u = std::get_if<uint64_t>(&p)) return static_cast<float>(*u);
  if (const auto* d = std::get_if<double>(&p)) return static_cast<float>(*d);
  return InvalidArgument("number is expected for " + key + ", got " + Shown(p));
}

StatusOr<bool> Boolean(const std::string& key, const Parameter& p) {
  if (const auto* b = std::get_if<bool>(&p)) return *b;
  return InvalidArgument("boolean true or false is expected for " + key + ", got " + Shown(p));
}

StatusOr<DecodingMode> Mode(const std::string& key, const Parameter& p) {
  const auto* s = std::get_if<std::string>(&p);
  if (s == nullptr) return InvalidArgument("string is expected for " + key + ", got " + Shown(p));
  return ParseDecodingMode(*s);
}

bool IsChunkKey(const std::string& key) { return key == "decoding_chunk_size" || key == "chunk_size"; }
bool IsLeftChunksKey(const std::string& key) {
  return key == "num_decoding_left_chunks" || key == "left_chunks";
}

// The keys both option structs share; *handled says whether `key` was one of them.
template <typename Options>
Status ApplySearchKey(const std::string& key, const Parameter& value, const HotwordCompiler* hotwords,
                      Options* o, bool* handled) {
  *handled = true;
  if (key == "lm_weight") {
    U2_ASSIGN_OR_RETURN(o->lm.lm_weight, Number(key, value));
  } else if (key == "word_bonus") {
    U2_ASSIGN_OR_RETURN(o->lm.word_bonus, Number(key, value));
  } else if (key == "hotwords") {
    const auto* list = std::get_if<std::string>(&value);
    if (list == nullptr) return InvalidArgument("string is expected for hotwords, got " + Shown(value));
    if (hotwords == nullptr) return InvalidArgument("this model does not take hotwords");
    U2_ASSIGN_OR_RETURN(o->hotwords, hotwords->Compile(*list));
  } else if (key == "beam") {
    U2_ASSIGN_OR_RETURN(o->beam, Integer(key, value));
  } else if (key == "nbest") {
    U2_ASSIGN_OR_RETURN(o->nbest, Integer(key, value));
  } else if (key == "ctc_weight") {
    U2_ASSIGN_OR_RETURN(o->ctc_weight, Number(key, value));
  } else if (key == "reverse_weight") {
    U2_ASSIGN_OR_RETURN(o->reverse_weight, Number(key, value));
  } else if (IsChunkKey(key)) {
    U2_ASSIGN_OR_RETURN(o->decoding_chunk_size, Integer(key, value));
  } else if (IsLeftChunksKey(key)) {
    U2_ASSIGN_OR_RETURN(o->num_decoding_left_chunks, Integer(key, value));
  } else {
    *handled = false;
  }
  return Status::Ok();
}

}  // namespace

Status ApplyRequestParameters(const ParameterMap& parameters, DecodingOptions* options,
                              const HotwordCompiler* hotwords) {
  DecodingOptions o = *options;
  for (const auto& [key, value] : parameters) {
    bool handled = false;
    U2_RETURN_IF_ERROR(ApplySearchKey(key, value, hotwords, &o, &handled));
    if (!handled && key == "decoding_mode") {
      U2_ASSIGN_OR_RETURN(o.mode, Mode(key, value));
    }
  }
  // A narrower beam than the n-best asked for by default returns what the beam holds.
  if (parameters.count("beam") && !parameters.count("nbest")) o.nbest = std::min(o.nbest, o.beam);
  *options = o;
  return Status::Ok();
}

Status ApplyRequestParameters(const ParameterMap& parameters, StreamOptions* options,
                              const HotwordCompiler* hotwords) {
  StreamOptions o = *options;
  for (const auto& [key, value] : parameters) {
    bool handled = false;
    U2_RETURN_IF_ERROR(ApplySearchKey(key, value, hotwords, &o, &handled));
    if (handled) continue;
    if (key == "rescoring") {
      if (std::holds_alternative<bool>(value)) {
        o.rescoring = std::get<bool>(value);
      } else {
        U2_ASSIGN_OR_RETURN(int v, Integer(key, value));
        if (v != 0 && v != 1)
          return InvalidArgument("rescoring must be true/false or 0/1, got " + Shown(value));
        o.rescoring = v == 1;
      }
    } else if (key == "decoding_mode") {
      U2_ASSIGN_OR_RETURN(DecodingMode mode, Mode(key, value));
      if (mode == DecodingMode::kCtcGreedy) {
        return InvalidArgument(
            "decoding_mode 'ctc_greedy' is not available for streaming; use "
            "'ctc_prefix_beam_search' or 'attention_rescoring'");
      }
      o.rescoring = mode == DecodingMode::kAttentionRescoring;
    } else if (key == "continuous_decoding") {
      U2_ASSIGN_OR_RETURN(o.continuous_decoding, Boolean(key, value));
    } else if (key == "endpointing") {
      U2_ASSIGN_OR_RETURN(o.endpointing, Boolean(key, value));
    } else if (key == "vad_gate") {
      U2_ASSIGN_OR_RETURN(o.vad_gate, Boolean(key, value));
    } else if (key == "vad_threshold") {
      U2_ASSIGN_OR_RETURN(o.vad.threshold, Number(key, value));
      o.vad.neg_threshold.reset();  // follows the new threshold
    } else if (key == "vad_min_silence_ms") {
      U2_ASSIGN_OR_RETURN(o.vad.min_silence_ms, Integer(key, value));
    }
  }
  if (parameters.count("beam") && !parameters.count("nbest")) o.nbest = std::min(o.nbest, o.beam);
  if (parameters.count("continuous_decoding") && !parameters.count("endpointing")) {
    o.endpointing = o.continuous_decoding;
  }
  *options = o;
  return Status::Ok();
}

Status CheckTritonParameters(const ParameterMap& parameters) {
  for (const auto& [key, value] : parameters) {
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
          "parameter keys starting with 'triton_' are reserved for Triton usage and should not be "
          "specified: '" +
          key + "'");
    }
  }
  return Status::Ok();
}

StatusOr<std::optional<std::chrono::steady_clock::time_point>> RequestDeadline(
    const ParameterMap& parameters, std::chrono::steady_clock::time_point received, int64_t default_us) {
  int64_t us = default_us;
  if (auto it = parameters.find("timeout"); it != parameters.end()) {
    const auto* i = std::get_if<int64_t>(&it->second);
    const auto* u = std::get_if<uint64_t>(&it->second);
    if ((!i && !u) || (i && *i < 0)) {
      return InvalidArgument("parameter 'timeout' must be a non-negative integer (microseconds)");
    }
    us = i ? *i : static_cast<int64_t>(std::min<uint64_t>(*u, uint64_t{1} << 62));
  }
  if (us <= 0) return std::optional<std::chrono::steady_clock::time_point>();
  return std::optional<std::chrono::steady_clock::time_point>(received + std::chrono::microseconds(us));
}

StatusOr<ParameterMap> ParametersFromJson(const nlohmann::json& object) {
  ParameterMap out;
  if (!object.is_object()) return InvalidArgument("parameters must be a JSON object");
  for (const auto& [key, v] : object.items()) {
    if (v.is_boolean()) {
      out[key] = v.get<bool>();
    } else if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        out[key] = static_cast<int64_t>(u);
      } else {
        out[key] = u;
      }
    } else if (v.is_number_integer()) {
      out[key] = v.get<int64_t>();
    } else if (v.is_number_float()) {
      out[key] = v.get<double>();
    } else if (v.is_string()) {
      out[key] = v.get<std::string>();
    }
    // Arrays, objects and nulls are not decoding parameters; the caller reads what it knows of
    // them (a WebSocket start message may carry other fields).
  }
  return out;
}

}  // namespace u2::server
