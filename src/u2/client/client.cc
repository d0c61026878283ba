#include "u2/client/client.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "grpc_service.grpc.pb.h"

namespace u2::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  StatusCode code = StatusCode::kInternal;
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      code = StatusCode::kInvalidArgument;
      break;
    case grpc::StatusCode::NOT_FOUND:
      code = StatusCode::kNotFound;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      code = StatusCode::kResourceExhausted;
      break;
    case grpc::StatusCode::UNAVAILABLE:
      code = StatusCode::kUnavailable;
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      code = StatusCode::kUnimplemented;
      break;
    default:
      break;
  }
  return Status(code, "gRPC " + std::to_string(s.error_code()) + ": " + s.error_message());
}

void SetParameter(inference::InferParameter* p, const Parameter& v) {
  if (const auto* b = std::get_if<bool>(&v))
    p->set_bool_param(*b);
  else if (const auto* i = std::get_if<int64_t>(&v))
    p->set_int64_param(*i);
  else if (const auto* s = std::get_if<std::string>(&v))
    p->set_string_param(*s);
  else if (const auto* d = std::get_if<double>(&v))
    p->set_double_param(*d);
  else if (const auto* u = std::get_if<uint64_t>(&v))
    p->set_uint64_param(*u);
}

// The WAV / WAV_LENS request both u2client and WeNet's clients send: WAV FP32 [1, padded_length]
// (the samples, then zeros), WAV_LENS INT32 [1, 1] = the real length, TRANSCRIPTS requested.
inference::ModelInferRequest BuildInferRequest(const std::string& model, std::span<const float> samples,
                                               size_t padded_length,
                                               const std::map<std::string, Parameter>& parameters,
                                               const std::string& request_id) {
  inference::ModelInferRequest req;
  req.set_model_name(model);
  req.set_id(request_id);
  for (const auto& [k, v] : parameters) SetParameter(&(*req.mutable_parameters())[k], v);
  const size_t padded = std::max(padded_length, samples.size());
  auto* wav = req.add_inputs();
  wav->set_name("WAV");
  wav->set_datatype("FP32");
  wav->add_shape(1);
  wav->add_shape(static_cast<int64_t>(padded));
  auto* lens = req.add_inputs();
  lens->set_name("WAV_LENS");
  lens->set_datatype("INT32");
  lens->add_shape(1);
  lens->add_shape(1);
  req.add_outputs()->set_name("TRANSCRIPTS");
  std::string* wav_bytes = req.add_raw_input_contents();
  wav_bytes->assign(padded * sizeof(float), '\0');  // zeros are 0.0f
  if (!samples.empty()) std::memcpy(wav_bytes->data(), samples.data(), samples.size() * sizeof(float));
  const int32_t n = static_cast<int32_t>(samples.size());
  req.add_raw_input_contents(std::string(reinterpret_cast<const char*>(&n), 4));
  return req;
}

// Triton's sequence parameters: the id as int64_param (Triton refuses uint64 here), both flags
// always present (as tritonclient sends them).
std::map<std::string, Parameter> SequenceParameters(const SequenceRequest& r) {
  std::map<std::string, Parameter> p = r.parameters;
  p["sequence_id"] = r.sequence_id;
  p["sequence_start"] = r.start;
  p["sequence_end"] = r.end;
  return p;
}

// Every request of a sequence sent as its own request (unary gRPC, HTTP) carries the sequence id
// in this header (gRPC metadata): a load balancer in front of several replicas hashes on it to
// keep all chunks of one sequence on the replica that holds its state (deploy/envoy,
// docs/streaming.md "Behind a load balancer"). Harmless without one. A ModelStreamInfer call
// needs none: the whole call goes to one replica.
constexpr char kSequenceIdHeader[] = "x-u2-sequence-id";

Status CheckSequenceRequest(const SequenceRequest& r) {
  if (r.sequence_id == 0) return InvalidArgument("sequence_id must be non-zero");
  if (r.samples.size() > static_cast<size_t>(INT32_MAX)) return InvalidArgument("chunk too long");
  return Status::Ok();
}

// The first TRANSCRIPTS element of a response (BYTES, raw: 4-byte length + UTF-8).
StatusOr<std::string> TranscriptOf(const inference::ModelInferResponse& resp) {
  int index = -1;
  for (int i = 0; i < resp.outputs_size(); ++i) {
    if (resp.outputs(i).name() == "TRANSCRIPTS") index = i;
  }
  if (index < 0 && resp.outputs_size() == 1) index = 0;
  if (index < 0) return Internal("response has no TRANSCRIPTS output");
  std::string raw;
  if (index < resp.raw_output_contents_size()) {
    raw = resp.raw_output_contents(index);
  } else if (resp.outputs(index).contents().bytes_contents_size() > 0) {
    return resp.outputs(index).contents().bytes_contents(0);
  } else {
    return Internal("response has no TRANSCRIPTS data");
  }
  if (raw.size() < 4) return Internal("response has no TRANSCRIPTS data");
  uint32_t len;
  std::memcpy(&len, raw.data(), 4);
  if (len > raw.size() - 4) return Internal("malformed BYTES output");
  return raw.substr(4, len);
}

using Stub = inference::GRPCInferenceService::Stub;

// Chunks over one ModelStreamInfer call, one request in flight; the call stays open for the
// next sequences and is reopened after a transport failure.
class GrpcStreamChannel : public SequenceChannel {
 public:
  GrpcStreamChannel(std::shared_ptr<Stub> stub, std::string model)
      : stub_(std::move(stub)), model_(std::move(model)) {}
  ~GrpcStreamChannel() override { Close(); }

  StatusOr<std::string> Send(const SequenceRequest& r) override {
    U2_RETURN_IF_ERROR(CheckSequenceRequest(r));
    const inference::ModelInferRequest req =
        BuildInferRequest(model_, r.samples, r.padded_length, SequenceParameters(r), r.request_id);
    if (!stream_) {
      context_ = std::make_unique<grpc::ClientContext>();
      stream_ = stub_->ModelStreamInfer(context_.get());
    }
    if (!stream_->Write(req)) return Broken("sending");
    inference::ModelStreamInferResponse resp;
    if (!stream_->Read(&resp)) return Broken("reading");
    // A refused request leaves the stream open (error_message, no gRPC status).
    if (!resp.error_message().empty()) return InvalidArgument("server: " + resp.error_message());
    if (resp.infer_response().id() != r.request_id) {
      return Internal("stream response for request '" + resp.infer_response().id() + "', expected '" +
                      r.request_id + "'");
    }
    return TranscriptOf(resp.infer_response());
  }

 private:
  // The call has ended (server gone, cancelled): its gRPC status says why.
  Status Broken(const char* what) {
    grpc::Status s = stream_->Finish();
    stream_.reset();
    context_.reset();
    if (!s.ok()) return FromGrpc(s);
    return Unavailable(std::string("ModelStreamInfer ended by the server while ") + what);
  }

  void Close() {
    if (!stream_) return;
    stream_->WritesDone();
    inference::ModelStreamInferResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    (void)stream_->Finish();
    stream_.reset();
    context_.reset();
  }

  std::shared_ptr<Stub> stub_;
  std::string model_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<inference::ModelInferRequest, inference::ModelStreamInferResponse>>
      stream_;
};

// Chunks as unary ModelInfer calls.
class GrpcUnaryChannel : public SequenceChannel {
 public:
  GrpcUnaryChannel(std::shared_ptr<Stub> stub, std::string model)
      : stub_(std::move(stub)), model_(std::move(model)) {}

  StatusOr<std::string> Send(const SequenceRequest& r) override {
    U2_RETURN_IF_ERROR(CheckSequenceRequest(r));
    const inference::ModelInferRequest req =
        BuildInferRequest(model_, r.samples, r.padded_length, SequenceParameters(r), r.request_id);
    inference::ModelInferResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata(kSequenceIdHeader, std::to_string(r.sequence_id));
    U2_RETURN_IF_ERROR(FromGrpc(stub_->ModelInfer(&ctx, req, &resp)));
    return TranscriptOf(resp);
  }

 private:
  std::shared_ptr<Stub> stub_;
  std::string model_;
};

class GrpcClient : public AsrClient {
 public:
  GrpcClient(const std::string& url, const std::string& model) : model_(model) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(INT_MAX);
    args.SetMaxSendMessageSize(INT_MAX);
    stub_ = inference::GRPCInferenceService::NewStub(
        grpc::CreateCustomChannel(url, grpc::InsecureChannelCredentials(), args));
  }

  StatusOr<std::string> Recognize(std::span<const float> samples,
                                  const std::map<std::string, Parameter>& parameters,
                                  const std::string& request_id) override {
    const inference::ModelInferRequest req =
        BuildInferRequest(model_, samples, samples.size(), parameters, request_id);
    inference::ModelInferResponse resp;
    grpc::ClientContext ctx;
    U2_RETURN_IF_ERROR(FromGrpc(stub_->ModelInfer(&ctx, req, &resp)));
    return TranscriptOf(resp);
  }

  StatusOr<std::unique_ptr<SequenceChannel>> OpenSequenceChannel(SequenceTransport transport) override {
    if (transport == SequenceTransport::kStream)
      return std::unique_ptr<SequenceChannel>(new GrpcStreamChannel(stub_, model_));
    return std::unique_ptr<SequenceChannel>(new GrpcUnaryChannel(stub_, model_));
  }

  StatusOr<inference::ModelStatisticsResponse> Statistics() override {
    inference::ModelStatisticsRequest req;
    req.set_name(model_);
    inference::ModelStatisticsResponse resp;
    grpc::ClientContext ctx;
    U2_RETURN_IF_ERROR(FromGrpc(stub_->ModelStatistics(&ctx, req, &resp)));
    return resp;
  }

  Status WaitUntilReady(double timeout_s) override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    Status last = Unavailable("not ready");
    while (std::chrono::steady_clock::now() < deadline) {
      inference::ModelReadyRequest req;
      req.set_name(model_);
      inference::ModelReadyResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc::Status s = stub_->ModelReady(&ctx, req, &resp);
      if (s.ok() && resp.ready()) return Status::Ok();
      last = s.ok() ? NotFound("model '" + model_ + "' is not ready or does not exist") : FromGrpc(s);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return last;
  }

 private:
  std::string model_;
  std::shared_ptr<Stub> stub_;  // shared with the sequence channels
};

class HttpClient : public AsrClient {
 public:
  HttpClient(std::string host, std::string port, const std::string& model)
      : host_(std::move(host)), port_(std::move(port)), model_(model) {}

  StatusOr<std::string> Recognize(std::span<const float> samples,
                                  const std::map<std::string, Parameter>& parameters,
                                  const std::string& request_id) override {
    return Infer(samples, samples.size(), parameters, request_id);
  }

  // WAV as binary data (padded with zeros to padded_length), WAV_LENS as JSON; the transcript
  // comes back as JSON.
  StatusOr<std::string> Infer(std::span<const float> samples, size_t padded_length,
                              const std::map<std::string, Parameter>& parameters,
                              const std::string& request_id,
                              const std::map<std::string, std::string>& headers = {}) {
    json params = json::object();
    for (const auto& [k, v] : parameters) {
      std::visit([&](const auto& x) { params[k] = x; }, v);
    }
    const size_t padded = std::max(padded_length, samples.size());
    const size_t wav_bytes = padded * sizeof(float);
    json header = {
        {"id", request_id},
        {"inputs",
         {{{"name", "WAV"},
           {"shape", {1, padded}},
           {"datatype", "FP32"},
           {"parameters", {{"binary_data_size", wav_bytes}}}},
          {{"name", "WAV_LENS"}, {"shape", {1, 1}}, {"datatype", "INT32"}, {"data", {samples.size()}}}}},
        {"outputs", {{{"name", "TRANSCRIPTS"}, {"parameters", {{"binary_data", false}}}}}}};
    if (!params.empty()) header["parameters"] = params;
    const std::string head = header.dump();
    std::string body = head;
    body.append(reinterpret_cast<const char*>(samples.data()), samples.size() * sizeof(float));
    body.append((padded - samples.size()) * sizeof(float), '\0');
    U2_ASSIGN_OR_RETURN(
        auto res, Send(http::verb::post, "/v2/models/" + model_ + "/infer", body, head.size(), headers));
    json j = json::parse(res.body(), nullptr, false);
    if (res.result_int() != 200) {
      const std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                  ? j["error"].get<std::string>()
                                  : res.body();
      return Status(res.result_int() == 404   ? StatusCode::kNotFound
                    : res.result_int() == 503 ? StatusCode::kUnavailable
                                              : StatusCode::kInvalidArgument,
                    "HTTP " + std::to_string(res.result_int()) + ": " + msg);
    }
    try {
      return j.at("outputs").at(0).at("data").at(0).get<std::string>();
    } catch (const std::exception& e) {
      return Internal(std::string("unexpected response: ") + e.what());
    }
  }

  StatusOr<std::unique_ptr<SequenceChannel>> OpenSequenceChannel(SequenceTransport transport) override;

  StatusOr<inference::ModelStatisticsResponse> Statistics() override {
    U2_ASSIGN_OR_RETURN(auto res, Send(http::verb::get, "/v2/models/" + model_ + "/stats", "", -1));
    if (res.result_int() != 200) return Internal("statistics: HTTP " + std::to_string(res.result_int()));
    inference::ModelStatisticsResponse resp;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    auto st = google::protobuf::util::JsonStringToMessage(res.body(), &resp, options);
    if (!st.ok()) return Internal("statistics: " + st.ToString());
    return resp;
  }

  Status WaitUntilReady(double timeout_s) override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    Status last = Unavailable("not ready");
    while (std::chrono::steady_clock::now() < deadline) {
      auto res = Send(http::verb::get, "/v2/models/" + model_ + "/ready", "", -1);
      if (res.ok() && res->result_int() == 200) return Status::Ok();
      last = res.ok() ? NotFound("model '" + model_ + "' is not ready: " + res->body()) : res.status();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return last;
  }

 private:
  StatusOr<http::response<http::string_body>> Send(http::verb verb, const std::string& target,
                                                   const std::string& body, int64_t header_length,
                                                   const std::map<std::string, std::string>& headers = {}) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        if (!stream_) {
          stream_ = std::make_unique<beast::tcp_stream>(ioc_);
          tcp::resolver resolver(ioc_);
          stream_->connect(resolver.resolve(host_, port_));
        }
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, host_);
        req.keep_alive(true);
        if (header_length >= 0) {
          req.set("Inference-Header-Content-Length", std::to_string(header_length));
          req.set(http::field::content_type, "application/octet-stream");
        }
        for (const auto& [name, value] : headers) req.set(name, value);
        req.body() = body;
        req.prepare_payload();
        http::write(*stream_, req);
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(1ull << 31);
        http::read(*stream_, buffer, parser);
        auto res = parser.release();
        if (!res.keep_alive()) stream_.reset();
        return res;
      } catch (const std::exception& e) {
        stream_.reset();  // a closed keep-alive connection: reconnect once
        if (attempt == 1)
          return Unavailable(std::string("HTTP request to ") + host_ + ":" + port_ + " failed: " + e.what());
      }
    }
    return Unavailable("HTTP request failed");
  }

  std::string host_, port_, model_;
  net::io_context ioc_;
  std::unique_ptr<beast::tcp_stream> stream_;
};

// Chunks as HTTP POSTs over a keep-alive connection of its own.
class HttpSequenceChannel : public SequenceChannel {
 public:
  explicit HttpSequenceChannel(std::unique_ptr<HttpClient> http) : http_(std::move(http)) {}
  StatusOr<std::string> Send(const SequenceRequest& r) override {
    U2_RETURN_IF_ERROR(CheckSequenceRequest(r));
    return http_->Infer(r.samples, r.padded_length, SequenceParameters(r), r.request_id,
                        {{kSequenceIdHeader, std::to_string(r.sequence_id)}});
  }

 private:
  std::unique_ptr<HttpClient> http_;
};

StatusOr<std::unique_ptr<SequenceChannel>> HttpClient::OpenSequenceChannel(SequenceTransport transport) {
  if (transport == SequenceTransport::kStream)
    return Unimplemented("streaming RPC (ModelStreamInfer) needs gRPC; over HTTP each chunk is one request");
  return std::unique_ptr<SequenceChannel>(
      new HttpSequenceChannel(std::make_unique<HttpClient>(host_, port_, model_)));
}

}  // namespace

StatusOr<Protocol> ParseProtocol(const std::string& name) {
  if (name == "grpc" || name == "gRPC" || name == "GRPC") return Protocol::kGrpc;
  if (name == "http" || name == "HTTP") return Protocol::kHttp;
  return InvalidArgument("unknown protocol '" + name + "' (grpc or http)");
}

StatusOr<std::pair<std::string, Parameter>> ParseParameterArg(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0)
    return InvalidArgument("a parameter needs KEY=VALUE, got '" + arg + "'");
  const std::string key = arg.substr(0, eq), value = arg.substr(eq + 1);
  if (value.empty()) return std::pair<std::string, Parameter>(key, std::string());
  char* end = nullptr;
  errno = 0;
  const long long i = std::strtoll(value.c_str(), &end, 10);
  if (*end == '\0' && errno == 0) return std::pair<std::string, Parameter>(key, static_cast<int64_t>(i));
  const double d = std::strtod(value.c_str(), &end);
  if (*end == '\0' && std::isfinite(d)) return std::pair<std::string, Parameter>(key, d);
  if (value == "true" || value == "false") return std::pair<std::string, Parameter>(key, value == "true");
  return std::pair<std::string, Parameter>(key, value);
}

StatusOr<std::unique_ptr<AsrClient>> AsrClient::Create(Protocol protocol, const std::string& url,
                                                       const std::string& model) {
  std::string host = url, port = protocol == Protocol::kGrpc ? "8001" : "8000";
  if (host.rfind("http://", 0) == 0) host = host.substr(7);
  const size_t colon = host.rfind(':');
  if (colon != std::string::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty() || port.empty())
    return InvalidArgument("bad server URL '" + url + "' (expected host:port)");
  if (protocol == Protocol::kGrpc)
    return std::unique_ptr<AsrClient>(new GrpcClient(host + ":" + port, model));
  return std::unique_ptr<AsrClient>(new HttpClient(host, port, model));
}

Status ChunkingOptions::Validate() const {
  if (sample_rate < 1000 || sample_rate > 192000)
    return InvalidArgument("bad sample rate " + std::to_string(sample_rate));
  for (const auto& [name, ms] : {std::pair{"chunk", chunk_ms}, std::pair{"first chunk", first_chunk_ms}}) {
    if (ms < 1 || ms > 60000)
      return InvalidArgument(std::string(name) + " size must be 1..60000 ms, got " + std::to_string(ms));
  }
  if (chunk_samples() == 0 || first_chunk_samples() == 0)
    return InvalidArgument("chunk shorter than one sample");
  return Status::Ok();
}

size_t ChunkingOptions::chunk_samples() const {
  return static_cast<size_t>(int64_t{chunk_ms} * sample_rate / 1000);
}
size_t ChunkingOptions::first_chunk_samples() const {
  return static_cast<size_t>(int64_t{first_chunk_ms} * sample_rate / 1000);
}

std::vector<AudioChunk> PlanChunks(size_t total_samples, const ChunkingOptions& options) {
  const size_t first = std::max<size_t>(options.first_chunk_samples(), 1);
  const size_t later = std::max<size_t>(options.chunk_samples(), 1);
  std::vector<AudioChunk> chunks;
  size_t offset = 0;
  do {
    AudioChunk c;
    c.first = chunks.empty();
    c.offset = offset;
    c.padded_length = c.first ? first : later;
    c.length = std::min(c.padded_length, total_samples - offset);
    offset += c.length;
    c.last = offset >= total_samples;
    chunks.push_back(c);
  } while (offset < total_samples);
  return chunks;
}

}  // namespace u2::server
