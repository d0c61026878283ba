// The audio of a KServe request: WeNet's Triton inputs WAV (FP32 [B, T], samples in [-1, 1) at
// kWireSampleRate) and WAV_LENS (INT32 [B, 1], each row's real length).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "u2/server/kserve_types.h"
#include "u2/util/status.h"

namespace u2::server {

// Decodes a request's WAV / WAV_LENS tensors into per-utterance sample vectors (trimmed to
// WAV_LENS), checking names, datatypes, shapes, byte sizes, lengths and finiteness, with
// Triton's wording where Triton has one.
StatusOr<std::vector<std::vector<float>>> DecodeAudioInputs(const InferRequest& request,
                                                            const std::string& model, int max_batch_size,
                                                            int64_t max_samples);

// Refuses outputs other than TRANSCRIPTS and SEGMENTS (offline: the timed transcript as JSON).
Status CheckRequestedOutputs(const InferRequest& request, const std::string& model);

}  // namespace u2::server
