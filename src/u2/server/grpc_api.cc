#include "u2/server/grpc_api.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <deque>

#include "u2/server/refusals.h"

namespace u2::server {
namespace {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

template <typename T>
void AppendTyped(std::string* out, const google::protobuf::RepeatedField<T>& values) {
  const size_t n = static_cast<size_t>(values.size());
  out->resize(out->size() + n * sizeof(T));
  if (n) std::memcpy(out->data() + out->size() - n * sizeof(T), values.data(), n * sizeof(T));
}

template <typename Narrow, typename Wide>
void AppendNarrowed(std::string* out, const google::protobuf::RepeatedField<Wide>& values) {
  for (Wide v : values) {
    Narrow n = static_cast<Narrow>(v);
    out->append(reinterpret_cast<const char*>(&n), sizeof(Narrow));
  }
}

bool HasContents(const inference::InferTensorContents& c) {
  return c.bool_contents_size() || c.int_contents_size() || c.int64_contents_size() ||
         c.uint_contents_size() || c.uint64_contents_size() || c.fp32_contents_size() ||
         c.fp64_contents_size() || c.bytes_contents_size();
}

// Typed contents to raw bytes for the tensor's datatype.
Status TypedToRaw(const ModelInferRequest::InferInputTensor& in, std::string* out) {
  const auto& c = in.contents();
  const std::string& dt = in.datatype();
  if (dt == "FP32")
    AppendTyped(out, c.fp32_contents());
  else if (dt == "FP64")
    AppendTyped(out, c.fp64_contents());
  else if (dt == "INT32")
    AppendTyped(out, c.int_contents());
  else if (dt == "INT16")
    AppendNarrowed<int16_t>(out, c.int_contents());
  else if (dt == "INT8")
    AppendNarrowed<int8_t>(out, c.int_contents());
  else if (dt == "INT64")
    AppendTyped(out, c.int64_contents());
  else if (dt == "UINT32")
    AppendTyped(out, c.uint_contents());
  else if (dt == "UINT16")
    AppendNarrowed<uint16_t>(out, c.uint_contents());
  else if (dt == "UINT8")
    AppendNarrowed<uint8_t>(out, c.uint_contents());
  else if (dt == "UINT64")
    AppendTyped(out, c.uint64_contents());
  else if (dt == "BOOL") {
    for (bool b : c.bool_contents()) out->push_back(b ? 1 : 0);
  } else if (dt == "BYTES") {
    for (const std::string& s : c.bytes_contents()) {
      const uint32_t n = static_cast<uint32_t>(s.size());
      out->append(reinterpret_cast<const char*>(&n), 4);
      out->append(s);
    }
  } else {
    return InvalidArgument("input '" + in.name() + "': datatype '" + dt + "' has no typed contents; use raw");
  }
  return Status::Ok();
}

StatusOr<Parameter> FromProtoParameter(const std::string& key, const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return Parameter{p.bool_param()};
    case inference::InferParameter::kInt64Param:
      return Parameter{p.int64_param()};
    case inference::InferParameter::kStringParam:
      return Parameter{p.string_param()};
    case inference::InferParameter::kDoubleParam:
      return Parameter{p.double_param()};
    case inference::InferParameter::kUint64Param:
      return Parameter{p.uint64_param()};
    default:
      return InvalidArgument("parameter '" + key + "' has no value");
  }
}

void FinishUnary(grpc::ServerUnaryReactor* reactor, const Status& s) { reactor->Finish(ToGrpcStatus(s)); }

// ModelStreamInfer: any number of requests on one call; exactly one response per request, in
// request order. Inference runs in the batcher; this object only sequences reads and writes.
class StreamReactor : public grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse> {
 public:
  StreamReactor(InferenceService* service, grpc::CallbackServerContext* context, const Status& auth)
      : service_(service), context_(context), session_(service->NewClientSession()) {
    if (!auth.ok()) {
      // Refused before any request is read: the call ends with UNAUTHENTICATED.
      finished_ = true;
      Finish(ToGrpcStatus(auth));
      return;
    }
    if (service_->draining()) {
      // A new stream while the server drains ends at once with UNAVAILABLE, which a load
      // balancer retries on another replica (an error inside the stream it cannot).
      CountRefusal(RefusalCause::kShuttingDown);
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the server is shutting down; retry on another replica"));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    std::shared_ptr<Slot> slot;
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot = std::make_shared<Slot>();
      slots_.push_back(slot);
      ++outstanding_;
    }
    InferRequest req;
    Status s = FromProto(request_, &req);
    req.cancelled = [ctx = context_] { return ctx->IsCancelled(); };
    req.client_session = session_;
    auto complete = [this, slot](const Status& status, InferResponse r) {
      bool destroy = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        --outstanding_;
        if (!status.ok() && status.code() == StatusCode::kUnavailable && !answered_ && slots_.size() == 1 &&
            !finished_ && service_->draining()) {
          // The first request of a stream that began just before the drain: ending the call
          // UNAVAILABLE, with nothing answered, lets a load balancer retry the whole stream.
          slots_.clear();
          finished_ = true;
          Finish(ToGrpcStatus(status));
        } else {
          if (status.ok()) {
            ToProto(r, slot->response.mutable_infer_response());
            (*slot->response.mutable_infer_response()->mutable_parameters())["triton_final_response"]
                .set_bool_param(true);
          } else {
            slot->response.set_error_message(status.message());
            slot->response.mutable_infer_response()->set_id(r.id);
          }
          slot->ready = true;
          MaybeWriteLocked();
          MaybeFinishLocked();
        }
        destroy = done_ && outstanding_ == 0;
      }
      if (destroy) delete this;
    };
    if (!s.ok()) {
      InferResponse r;
      r.id = request_.id();
      complete(s, std::move(r));
    } else {
      service_->Infer(std::move(req), complete);  // copies what it needs before returning
    }
    request_.Clear();
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      broken_ = true;
    } else if (!slots_.empty()) {
      slots_.pop_front();
    }
    MaybeWriteLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    // The client is gone: the sequences this stream fed last end now rather than at their idle
    // timeout. Outside mu_: closing answers their queued requests through `complete`.
    service_->CloseClientSession(session_);
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    MaybeFinishLocked();
  }

  void OnDone() override {
    bool destroy;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      destroy = outstanding_ == 0;
    }
    if (destroy) delete this;
  }

 private:
  struct Slot {
    bool ready = false;
    ModelStreamInferResponse response;
  };

  void MaybeWriteLocked() {
    if (writing_ || finished_ || broken_ || slots_.empty() || !slots_.front()->ready) return;
    writing_ = true;
    answered_ = true;
    StartWrite(&slots_.front()->response);
  }

  void MaybeFinishLocked() {
    if (finished_ || writing_) return;
    if (broken_) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled"));
    } else if (reads_done_ && slots_.empty()) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  InferenceService* service_;
  grpc::CallbackServerContext* context_;
  const uint64_t session_;
  ModelInferRequest request_;
  std::mutex mu_;
  std::deque<std::shared_ptr<Slot>> slots_;
  int outstanding_ = 0;
  bool writing_ = false, reads_done_ = false, finished_ = false, broken_ = false, done_ = false;
  bool answered_ = false;  // a response has been written (a refusal can no longer end the call)
};

// The API key of a call (gRPC metadata "authorization: Bearer KEY"); api_keys.h.
Status CheckCallKey(const ApiKeys* keys, grpc::CallbackServerContext* ctx) {
  if (keys == nullptr || !keys->enabled()) return Status::Ok();
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  const std::string_view value =
      it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  return keys->CheckAuthorization(value);
}

class GrpcService final : public inference::GRPCInferenceService::CallbackService {
 public:
  GrpcService(InferenceService* service, std::shared_ptr<const ApiKeys> keys)
      : service_(service), keys_(std::move(keys)) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx, const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* resp) override {
    if (Status s = CheckHealthKey(ctx); !s.ok()) return Done(ctx, s);
    resp->set_live(true);
    return Done(ctx, Status::Ok());
  }

  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* resp) override {
    if (Status s = CheckHealthKey(ctx); !s.ok()) return Done(ctx, s);
    resp->set_ready(service_->ready());
    return Done(ctx, Status::Ok());
  }

  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override {
    if (Status s = CheckHealthKey(ctx); !s.ok()) return Done(ctx, s);
    resp->set_ready(service_->ready() && service_->models().Find(req->name(), req->version()).ok());
    return Done(ctx, Status::Ok());
  }

  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* resp) override {
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) return Done(ctx, s);
    resp->set_name(kServerName);
    resp->set_version(kServerVersion);
    for (const std::string& e : service_->models().Extensions()) resp->add_extensions(e);
    return Done(ctx, Status::Ok());
  }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override {
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) return Done(ctx, s);
    auto m = service_->models().Find(req->name(), req->version());
    if (m.ok()) *resp = service_->models().Metadata(**m);
    return Done(ctx, m.status());
  }

  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx,
                                        const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override {
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) return Done(ctx, s);
    auto m = service_->models().Find(req->name(), req->version());
    if (m.ok()) *resp->mutable_config() = service_->models().Config(**m);
    return Done(ctx, m.status());
  }

  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override {
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) return Done(ctx, s);
    auto stats = service_->models().Statistics(req->name(), req->version());
    if (stats.ok()) *resp = std::move(stats).value();
    return Done(ctx, stats.status());
  }

  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx,
                                            const inference::RepositoryIndexRequest*,
                                            inference::RepositoryIndexResponse* resp) override {
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) return Done(ctx, s);
    for (ServedModel* m : service_->models().models()) {
      auto* e = resp->add_models();
      e->set_name(m->name);
      e->set_version(kModelVersion);
      e->set_state("READY");
    }
    return Done(ctx, Status::Ok());
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx, const ModelInferRequest* req,
                                       ModelInferResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (Status s = CheckCallKey(keys_.get(), ctx); !s.ok()) {
      FinishUnary(reactor, s);
      return reactor;
    }
    InferRequest r;
    if (Status s = FromProto(*req, &r); !s.ok()) {
      FinishUnary(reactor, s);
      return reactor;
    }
    r.cancelled = [ctx] { return ctx->IsCancelled(); };
    service_->Infer(std::move(r), [reactor, resp](const Status& s, InferResponse out) {
      if (s.ok()) ToProto(out, resp);
      FinishUnary(reactor, s);
    });
    return reactor;
  }

  grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>* ModelStreamInfer(
      grpc::CallbackServerContext* ctx) override {
    return new StreamReactor(service_, ctx, CheckCallKey(keys_.get(), ctx));
  }

 private:
  grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const Status& s) {
    auto* reactor = ctx->DefaultReactor();
    FinishUnary(reactor, s);
    return reactor;
  }

  Status CheckHealthKey(grpc::CallbackServerContext* ctx) const {
    return keys_ && keys_->protects_health() ? CheckCallKey(keys_.get(), ctx) : Status::Ok();
  }

  InferenceService* service_;
  std::shared_ptr<const ApiKeys> keys_;
};

}  // namespace

grpc::Status ToGrpcStatus(const Status& s) {
  using grpc::StatusCode;
  StatusCode code;
  switch (s.code()) {
    case u2::StatusCode::kOk:
      return grpc::Status::OK;
    case u2::StatusCode::kInvalidArgument:
      code = StatusCode::INVALID_ARGUMENT;
      break;
    case u2::StatusCode::kNotFound:
      code = StatusCode::NOT_FOUND;
      break;
    case u2::StatusCode::kFailedPrecondition:
      code = StatusCode::FAILED_PRECONDITION;
      break;
    case u2::StatusCode::kResourceExhausted:
      code = StatusCode::RESOURCE_EXHAUSTED;
      break;
    case u2::StatusCode::kUnavailable:
      code = StatusCode::UNAVAILABLE;
      break;
    case u2::StatusCode::kUnimplemented:
      code = StatusCode::UNIMPLEMENTED;
      break;
    case u2::StatusCode::kInternal:
      code = StatusCode::INTERNAL;
      break;
    case u2::StatusCode::kUnauthenticated:
      code = StatusCode::UNAUTHENTICATED;
      break;
    case u2::StatusCode::kDeadlineExceeded:
      code = StatusCode::DEADLINE_EXCEEDED;
      break;
    default:
      code = StatusCode::UNKNOWN;
      break;
  }
  return grpc::Status(code, s.message());
}

Status FromProto(const ModelInferRequest& proto, InferRequest* out) {
  out->model_name = proto.model_name();
  out->model_version = proto.model_version();
  out->id = proto.id();
  for (const auto& [key, value] : proto.parameters()) {
    U2_ASSIGN_OR_RETURN(Parameter p, FromProtoParameter(key, value));
    out->parameters[key] = std::move(p);
  }
  const bool raw = proto.raw_input_contents_size() > 0;
  if (raw && proto.raw_input_contents_size() != proto.inputs_size()) {
    return InvalidArgument("expected " + std::to_string(proto.inputs_size()) +
                           " raw_input_contents (one per input), got " +
                           std::to_string(proto.raw_input_contents_size()));
  }
  out->inputs.resize(proto.inputs_size());
  for (int i = 0; i < proto.inputs_size(); ++i) {
    const auto& in = proto.inputs(i);
    InputTensor& t = out->inputs[i];
    t.name = in.name();
    t.datatype = in.datatype();
    t.shape.assign(in.shape().begin(), in.shape().end());
    if (raw) {
      if (HasContents(in.contents())) {
        return InvalidArgument("contents field must not be specified when using raw_input_contents for '" +
                               in.name() + "' for model '" + proto.model_name() + "'");
      }
      t.Borrow(proto.raw_input_contents(i));
    } else {
      std::string bytes;
      U2_RETURN_IF_ERROR(TypedToRaw(in, &bytes));
      t.Own(std::move(bytes));
    }
  }
  for (const auto& o : proto.outputs()) out->requested_outputs.push_back(o.name());
  return Status::Ok();
}

void ToProto(const InferResponse& r, ModelInferResponse* out) {
  out->set_model_name(r.model_name);
  out->set_model_version(r.model_version);
  out->set_id(r.id);
  for (const OutputTensor& t : r.outputs) {
    auto* o = out->add_outputs();
    o->set_name(t.name);
    o->set_datatype(t.datatype);
    for (int64_t d : t.shape) o->add_shape(d);
    out->add_raw_output_contents(t.RawBytes());
  }
}

std::unique_ptr<inference::GRPCInferenceService::CallbackService> MakeGrpcService(
    InferenceService* service, std::shared_ptr<const ApiKeys> keys) {
  return std::make_unique<GrpcService>(service, std::move(keys));
}

}  // namespace u2::server
