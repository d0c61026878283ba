// The Triton gRPC service (inference.GRPCInferenceService) on top of InferenceService, using
// gRPC's callback API: no handler blocks a gRPC thread while audio is being recognised.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "grpc_service.grpc.pb.h"
#include "u2/server/api_keys.h"
#include "u2/server/inference.h"

namespace u2::server {

// `keys` (may be null): API keys required as metadata "authorization: Bearer KEY" (api_keys.h).
std::unique_ptr<inference::GRPCInferenceService::CallbackService> MakeGrpcService(
    InferenceService* service, std::shared_ptr<const ApiKeys> keys = nullptr);

// Converts a gRPC ModelInferRequest (raw or typed contents) into the core's request. Tensor
// data may point into `proto`, which must outlive `out`'s use.
Status FromProto(const inference::ModelInferRequest& proto, InferRequest* out);
// Fills a gRPC response (raw outputs, in order) from the core's response.
void ToProto(const InferResponse& response, inference::ModelInferResponse* out);
grpc::Status ToGrpcStatus(const Status& status);

}  // namespace u2::server
