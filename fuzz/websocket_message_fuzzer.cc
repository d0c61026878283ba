// WebSocket text messages (docs/websocket.md): the JSON signal and, for "start", the stream options
// it carries. The session class needs a socket and a served model, so this target runs the same
// steps on the message that WebSocketSession::OnText / OnStart and OptionsFromStart
// (websocket_session.cc) do: JSON object, "signal", "confidence" and "model" types,
// ParametersFromJson, a "hotwords" array turned into its JSON text, and ApplyRequestParameters on
// StreamOptions (hotwords compiled against the demo units), then StreamOptions::Validate.
#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "u2/server/request_parameters.h"

using json = nlohmann::json;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The session refuses text messages over 64 KiB before parsing them.
  if (size > 64 * 1024) return 0;
  const json j = json::parse(u2::fuzz::AsText(data, size), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return 0;
  if (!j.contains("signal") || !j["signal"].is_string()) return 0;
  if (j["signal"].get<std::string>() != "start") return 0;
  if (j.contains("confidence") && !j["confidence"].is_boolean()) return 0;
  if (j.contains("model") && !j["model"].is_string()) return 0;
  auto parameters = u2::server::ParametersFromJson(j);
  U2_FUZZ_CHECK(parameters.ok());  // j is an object
  if (const auto it = j.find("hotwords"); it != j.end() && it->is_array()) {
    (*parameters)["hotwords"] = it->dump();
  }
  u2::fuzz::CheckStreamParameters(*parameters);
  return 0;
}
