// gRPC ModelInferRequest messages: protobuf bytes -> ModelInferRequest -> FromProto (the handler's
// conversion to the core's request, typed contents included) -> the checks InferenceService::Infer
// runs (fuzz_support.h: CheckOfflineRequest). The protobuf runtime is Debian's, uninstrumented.
#include <google/protobuf/stubs/logging.h>

#include "fuzz_support.h"
#include "grpc_service.pb.h"
#include "u2/server/grpc_api.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  // Parsing logs every string field that is not UTF-8: millions of lines in a run.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) return 0;
  u2::server::InferRequest request;
  if (!u2::server::FromProto(proto, &request).ok()) return 0;
  U2_FUZZ_CHECK(request.inputs.size() == static_cast<size_t>(proto.inputs_size()));
  u2::fuzz::CheckOfflineRequest(request);
  return 0;
}
