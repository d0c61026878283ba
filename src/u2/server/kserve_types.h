// The KServe v2 / Triton inference request and response as the core sees them, whatever wire
// they came on (gRPC protobuf, HTTP JSON + binary tail). Pure data: no engine types, so the
// client library (client.h) uses them too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "u2/util/status.h"

namespace u2::server {

inline constexpr const char* kServerName = "u2serve";
inline constexpr const char* kServerVersion = "0.2.0";
inline constexpr const char* kPlatform = "u2serve";
inline constexpr const char* kModelVersion = "1";
// The audio every wire format carries (WAV tensors, WebSocket PCM) is at this rate unless the
// format says otherwise; the engine resamples it to the model's rate.
inline constexpr int kWireSampleRate = 16000;

// One request parameter, as both protocols carry them.
using Parameter = std::variant<bool, int64_t, std::string, double, uint64_t>;
using ParameterMap = std::map<std::string, Parameter>;

// An input tensor: raw little-endian bytes, either borrowed from the request's wire buffer
// (which must outlive the InferRequest) or owned (converted from typed or JSON contents).
class InputTensor {
 public:
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;

  void Borrow(std::string_view bytes) {
    borrowed_ = bytes;
    owned_.clear();
    owns_ = false;
  }
  void Own(std::string bytes) {
    owned_ = std::move(bytes);
    owns_ = true;
  }
  std::string_view data() const { return owns_ ? std::string_view(owned_) : borrowed_; }

 private:
  std::string_view borrowed_;
  std::string owned_;
  bool owns_ = false;
};

struct InferRequest {
  std::string model_name;
  std::string model_version;
  std::string id;
  ParameterMap parameters;
  std::vector<InputTensor> inputs;
  std::vector<std::string> requested_outputs;  // empty: all outputs
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
  std::function<bool()> cancelled;  // optional: the client has gone
  // Optional: the transport session (a gRPC stream) that sent it, from
  // InferenceService::NewClientSession(); the sequences it fed last are closed when that session
  // ends abnormally. 0: none (a sequence can then only time out).
  uint64_t client_session = 0;
};

struct OutputTensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::vector<std::string> strings;  // BYTES elements
  std::string RawBytes() const;      // 4-byte little-endian length + data per element
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<OutputTensor> outputs;
};

// How a request is answered: exactly once, possibly from another thread.
using InferCallback = std::function<void(const Status& status, InferResponse response)>;

}  // namespace u2::server
