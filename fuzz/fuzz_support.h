// What several fuzz targets share: the demo model's units and configuration (built in, so a target
// needs no files at run time), and the checks a server runs on a parsed request before it
// decodes audio, so the gRPC and HTTP targets exercise the same path as InferenceService::Infer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "u2/decode/symbol_table.h"
#include "u2/engine/hotwords.h"
#include "u2/model/model_config.h"
#include "u2/server/kserve_types.h"

// An invariant the parsed result must hold; a failure is a finding (libFuzzer saves the input).
#define U2_FUZZ_CHECK(cond)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace u2::fuzz {

// Quiets logging (a fuzz run is millions of inputs); call from LLVMFuzzerInitialize.
void Init();

// models/demo's units (a character model with the "▁" word marker) and model.json.
const SymbolTable& DemoSymbols();
const ModelConfig& DemoModelConfig();

// The input as text.
inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// Runs a parsed KServe request through what the offline path checks before batching: requested
// outputs, Triton's keys, the decoding parameters (with hotwords compiled against the demo units),
// the options' validation against the demo model, the WAV/WAV_LENS tensors and the deadline.
// Results are discarded: the point is that none of it crashes.
void CheckOfflineRequest(const server::InferRequest& request);

// The stream path's overlay of the same parameters (Triton sequences, WebSocket start).
void CheckStreamParameters(const server::ParameterMap& parameters);

}  // namespace u2::fuzz
