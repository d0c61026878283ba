#include "u2/decode/endpoint.h"

#include <cmath>
#include <cstdint>
#include <sstream>

namespace u2 {
namespace {

Status ValidateRule(const EndpointRule& rule, const char* name) {
  if (rule.min_trailing_silence_ms < 0 || rule.min_utterance_length_ms < 0) {
    return InvalidArgument(std::string("endpoint ") + name + ": durations must be >= 0");
  }
  return Status::Ok();
}

std::string RuleString(const EndpointRule& rule) {
  std::ostringstream os;
  os << "{must_decoded_something=" << (rule.must_decoded_something ? "true" : "false")
     << ", min_trailing_silence_ms=" << rule.min_trailing_silence_ms
     << ", min_utterance_length_ms=" << rule.min_utterance_length_ms << "}";
  return os.str();
}

}  // namespace

Status EndpointConfig::Validate() const {
  if (blank_id < 0) return InvalidArgument("endpoint: blank_id must be >= 0");
  if (!(blank_threshold >= 0 && blank_threshold <= 1)) {
    return InvalidArgument("endpoint: blank_threshold must be in [0, 1], got " +
                           std::to_string(blank_threshold));
  }
  if (frame_shift_ms <= 0) return InvalidArgument("endpoint: frame_shift_ms must be > 0");
  U2_RETURN_IF_ERROR(ValidateRule(rule1, "rule1"));
  U2_RETURN_IF_ERROR(ValidateRule(rule2, "rule2"));
  U2_RETURN_IF_ERROR(ValidateRule(rule3, "rule3"));
  return Status::Ok();
}

std::string EndpointConfig::ToString() const {
  std::ostringstream os;
  os << "EndpointConfig{blank_id=" << blank_id << ", blank_threshold=" << blank_threshold
     << ", frame_shift_ms=" << frame_shift_ms << ", rule1=" << RuleString(rule1)
     << ", rule2=" << RuleString(rule2) << ", rule3=" << RuleString(rule3) << "}";
  return os.str();
}

CtcEndpointer::CtcEndpointer(const EndpointConfig& config)
    : config_(config), config_status_(config.Validate()) {}

void CtcEndpointer::Reset() {
  decoded_frames_ = 0;
  trailing_blank_frames_ = 0;
}

bool CtcEndpointer::RuleFires(const EndpointRule& rule, bool decoded_something) const {
  const int64_t utterance_ms = static_cast<int64_t>(decoded_frames_) * config_.frame_shift_ms;
  const int64_t silence_ms = static_cast<int64_t>(trailing_blank_frames_) * config_.frame_shift_ms;
  return (decoded_something || !rule.must_decoded_something) && silence_ms >= rule.min_trailing_silence_ms &&
         utterance_ms >= rule.min_utterance_length_ms;
}

StatusOr<bool> CtcEndpointer::AcceptChunk(LogProbView chunk, bool decoded_something) {
  U2_RETURN_IF_ERROR(config_status_);
  U2_RETURN_IF_ERROR(chunk.Validate().WithContext("endpoint"));
  if (chunk.num_frames > 0 && config_.blank_id >= chunk.vocab) {
    return InvalidArgument("endpoint: blank_id " + std::to_string(config_.blank_id) +
                           " is outside the vocabulary of size " + std::to_string(chunk.vocab));
  }
  for (int t = 0; t < chunk.num_frames; ++t) {
    ++decoded_frames_;
    if (std::exp(chunk.Row(t)[config_.blank_id]) > config_.blank_threshold) {
      ++trailing_blank_frames_;
    } else {
      trailing_blank_frames_ = 0;
    }
  }
  return RuleFires(config_.rule1, decoded_something) || RuleFires(config_.rule2, decoded_something) ||
         RuleFires(config_.rule3, decoded_something);
}

}  // namespace u2
