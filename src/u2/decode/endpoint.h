// CTC endpoint detection, as runtime/core's CtcEndpoint (docs/wenet-numerics.md §7): trailing blank frames
// count as silence; three rules decide, once per chunk, whether the utterance has ended.
#pragma once

#include <string>

#include "u2/decode/ctc_search.h"
#include "u2/util/status.h"

namespace u2 {

struct EndpointRule {
  bool must_decoded_something = false;  // fire only if the partial transcript is non-empty
  int min_trailing_silence_ms = 0;
  int min_utterance_length_ms = 0;
};

struct EndpointConfig {
  int blank_id = 0;
  // A frame is silence if P(blank) = exp(logp[blank]) > blank_threshold. (runtime/core's
  // blank_scale is not modelled: for blank 0 it cancels out, docs/wenet-numerics.md §7.)
  float blank_threshold = 0.8f;
  int frame_shift_ms = 40;              // per CTC frame: 10 ms feature shift x subsampling rate
  EndpointRule rule1{false, 5000, 0};   // long silence, even with nothing decoded
  EndpointRule rule2{true, 1000, 0};    // shorter silence after something was decoded
  EndpointRule rule3{false, 0, 20000};  // the utterance is long enough

  Status Validate() const;
  std::string ToString() const;
};

class CtcEndpointer {
 public:
  explicit CtcEndpointer(const EndpointConfig& config);
  void Reset();
  // Counts the chunk's frames, then evaluates the rules once, after its last frame; a silence
  // that reaches a threshold in mid-chunk and is broken later in the chunk does not count.
  // `decoded_something`: the best hypothesis after this chunk's search is non-empty.
  // Returns true if an endpoint fires; an error for an invalid config or a malformed chunk
  // (negative shape, null data, blank_id >= vocab), in which case no state changes.
  StatusOr<bool> AcceptChunk(LogProbView chunk, bool decoded_something);

  int decoded_frames() const { return decoded_frames_; }
  int trailing_blank_frames() const { return trailing_blank_frames_; }
  const EndpointConfig& config() const { return config_; }

 private:
  bool RuleFires(const EndpointRule& rule, bool decoded_something) const;

  EndpointConfig config_;
  Status config_status_;
  int decoded_frames_ = 0;
  int trailing_blank_frames_ = 0;
};

}  // namespace u2
