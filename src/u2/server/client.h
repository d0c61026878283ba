// A small synchronous client for u2serve (or any server speaking the same Triton protocol),
// over gRPC or HTTP; used by u2client and u2perf. One AsrClient per thread.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>

#include "u2/server/inference.h"
#include "u2/util/status.h"

namespace u2::server {

enum class Protocol { kGrpc, kHttp };
StatusOr<Protocol> ParseProtocol(const std::string& name);  // "grpc" | "http"

class AsrClient {
 public:
  // url: "host:port" (default ports 8001 gRPC, 8000 HTTP when ":port" is omitted).
  static StatusOr<std::unique_ptr<AsrClient>> Create(Protocol protocol, const std::string& url,
                                                     const std::string& model);
  virtual ~AsrClient() = default;

  // Recognises one utterance (float samples in [-1, 1] at 16 kHz) as a batch-1 request;
  // returns the transcript. `parameters` become request parameters (e.g. beam).
  virtual StatusOr<std::string> Recognize(std::span<const float> samples,
                                          const std::map<std::string, Parameter>& parameters,
                                          const std::string& request_id) = 0;
  // Server-side statistics of the model, as the protocol returns them (gRPC proto).
  virtual StatusOr<inference::ModelStatisticsResponse> Statistics() = 0;
  virtual Status WaitUntilReady(double timeout_s) = 0;
};

}  // namespace u2::server
