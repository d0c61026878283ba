#include "u2/server/client.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <climits>
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
    inference::ModelInferRequest req;
    req.set_model_name(model_);
    req.set_id(request_id);
    for (const auto& [k, v] : parameters) SetParameter(&(*req.mutable_parameters())[k], v);
    auto* wav = req.add_inputs();
    wav->set_name("WAV");
    wav->set_datatype("FP32");
    wav->add_shape(1);
    wav->add_shape(static_cast<int64_t>(samples.size()));
    auto* lens = req.add_inputs();
    lens->set_name("WAV_LENS");
    lens->set_datatype("INT32");
    lens->add_shape(1);
    lens->add_shape(1);
    req.add_outputs()->set_name("TRANSCRIPTS");
    req.add_raw_input_contents(
        std::string(reinterpret_cast<const char*>(samples.data()), samples.size() * 4));
    const int32_t n = static_cast<int32_t>(samples.size());
    req.add_raw_input_contents(std::string(reinterpret_cast<const char*>(&n), 4));
    inference::ModelInferResponse resp;
    grpc::ClientContext ctx;
    U2_RETURN_IF_ERROR(FromGrpc(stub_->ModelInfer(&ctx, req, &resp)));
    if (resp.raw_output_contents_size() < 1 || resp.raw_output_contents(0).size() < 4) {
      return Internal("response has no TRANSCRIPTS data");
    }
    const std::string& raw = resp.raw_output_contents(0);
    uint32_t len;
    std::memcpy(&len, raw.data(), 4);
    if (len > raw.size() - 4) return Internal("malformed BYTES output");
    return raw.substr(4, len);
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
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
};

class HttpClient : public AsrClient {
 public:
  HttpClient(std::string host, std::string port, const std::string& model)
      : host_(std::move(host)), port_(std::move(port)), model_(model) {}

  StatusOr<std::string> Recognize(std::span<const float> samples,
                                  const std::map<std::string, Parameter>& parameters,
                                  const std::string& request_id) override {
    json params = json::object();
    for (const auto& [k, v] : parameters) {
      std::visit([&](const auto& x) { params[k] = x; }, v);
    }
    const size_t wav_bytes = samples.size() * 4;
    json header = {
        {"id", request_id},
        {"inputs",
         {{{"name", "WAV"},
           {"shape", {1, samples.size()}},
           {"datatype", "FP32"},
           {"parameters", {{"binary_data_size", wav_bytes}}}},
          {{"name", "WAV_LENS"}, {"shape", {1, 1}}, {"datatype", "INT32"}, {"data", {samples.size()}}}}},
        {"outputs", {{{"name", "TRANSCRIPTS"}, {"parameters", {{"binary_data", false}}}}}}};
    if (!params.empty()) header["parameters"] = params;
    const std::string head = header.dump();
    std::string body = head;
    body.append(reinterpret_cast<const char*>(samples.data()), wav_bytes);
    U2_ASSIGN_OR_RETURN(auto res,
                        Send(http::verb::post, "/v2/models/" + model_ + "/infer", body, head.size()));
    json j = json::parse(res.body(), nullptr, false);
    if (res.result_int() != 200) {
      const std::string msg =
          j.is_object() && j.contains("error") ? j["error"].get<std::string>() : res.body();
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
                                                   const std::string& body, int64_t header_length) {
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

}  // namespace

StatusOr<Protocol> ParseProtocol(const std::string& name) {
  if (name == "grpc" || name == "gRPC" || name == "GRPC") return Protocol::kGrpc;
  if (name == "http" || name == "HTTP") return Protocol::kHttp;
  return InvalidArgument("unknown protocol '" + name + "' (grpc or http)");
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

}  // namespace u2::server
