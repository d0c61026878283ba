#include "u2/server/http_api.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "u2/server/formats.h"
#include "u2/server/http_compression.h"
#include "u2/server/http_router.h"
#include "u2/server/kserve_http.h"

namespace u2::server {
namespace {

namespace http = boost::beast::http;
using nlohmann::json;

std::vector<std::string> SplitPath(std::string_view target) {
  const size_t q = target.find('?');
  if (q != std::string_view::npos) target = target.substr(0, q);
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string_view::npos) end = target.size();
    if (end > start) parts.push_back(UrlDecode(target.substr(start, end - start), /*plus_is_space=*/false));
    start = end + 1;
  }
  return parts;
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

json StatsJson(const inference::ModelStatisticsResponse& resp) {
  auto dur = [](const inference::StatisticDuration& d) { return json{{"count", d.count()}, {"ns", d.ns()}}; };
  json models = json::array();
  for (const auto& m : resp.model_stats()) {
    const auto& is = m.inference_stats();
    json batch = json::array();
    for (const auto& b : m.batch_stats()) {
      batch.push_back({{"batch_size", b.batch_size()},
                       {"compute_input", dur(b.compute_input())},
                       {"compute_infer", dur(b.compute_infer())},
                       {"compute_output", dur(b.compute_output())}});
    }
    models.push_back({{"name", m.name()},
                      {"version", m.version()},
                      {"last_inference", m.last_inference()},
                      {"inference_count", m.inference_count()},
                      {"execution_count", m.execution_count()},
                      {"inference_stats",
                       {{"success", dur(is.success())},
                        {"fail", dur(is.fail())},
                        {"queue", dur(is.queue())},
                        {"compute_input", dur(is.compute_input())},
                        {"compute_infer", dur(is.compute_infer())},
                        {"compute_output", dur(is.compute_output())},
                        {"cache_hit", dur(is.cache_hit())},
                        {"cache_miss", dur(is.cache_miss())}}},
                      {"batch_stats", batch},
                      {"memory_usage", json::array()}});
  }
  return json{{"model_stats", models}};
}

// Protobuf's JSON mapping writes 64-bit integers as strings; the REST API uses numbers.
void NumbersFromStrings(json& j) {
  static const char* kIntegerKeys[] = {"dims",
                                       "shape",
                                       "max_queue_delay_microseconds",
                                       "max_sequence_idle_microseconds",
                                       "priority_levels",
                                       "default_priority_level",
                                       "default_timeout_microseconds",
                                       "num_versions"};
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      bool integer_key =
          std::find(std::begin(kIntegerKeys), std::end(kIntegerKeys), k) != std::end(kIntegerKeys);
      if (integer_key && v.is_string()) {
        v = std::stoll(v.get<std::string>());
      } else if (integer_key && v.is_array()) {
        for (auto& e : v) {
          if (e.is_string()) e = std::stoll(e.get<std::string>());
        }
      } else {
        NumbersFromStrings(v);
      }
    }
  } else if (j.is_array()) {
    for (auto& e : j) NumbersFromStrings(e);
  }
}

json MetadataJson(const inference::ModelMetadataResponse& m) {
  auto tensors = [](const auto& list) {
    json a = json::array();
    for (const auto& t : list) {
      json shape = json::array();
      for (int64_t d : t.shape()) shape.push_back(d);
      a.push_back({{"name", t.name()}, {"datatype", t.datatype()}, {"shape", shape}});
    }
    return a;
  };
  json versions = json::array();
  for (const auto& v : m.versions()) versions.push_back(v);
  return {{"name", m.name()},
          {"versions", versions},
          {"platform", m.platform()},
          {"inputs", tensors(m.inputs())},
          {"outputs", tensors(m.outputs())}};
}

void HandleInfer(InferenceService* service, HttpRequest&& req, const std::string& model,
                 const std::string& version, Responder respond) {
  // Unknown model or version first, as Triton does, whatever the body holds.
  if (auto found = service->models().Find(model, version); !found.ok()) {
    return respond(MakeErrorResponse(req, HttpStatusFor(found.status()), found.status().message()));
  }
  // The body must outlive the parsed request's views only until Infer returns (it copies).
  std::string body = std::move(req.body());
  const auto encoding = req[http::field::content_encoding];
  if (!encoding.empty() && encoding != "identity") {
    if (encoding != "gzip" && encoding != "deflate") {
      return respond(
          MakeErrorResponse(req, 400, "unsupported Content-Encoding '" + std::string(encoding) + "'"));
    }
    auto inflated = Inflate(body, 1ull << 31);
    if (!inflated.ok()) return respond(MakeErrorResponse(req, 400, inflated.status().message()));
    body = std::move(inflated).value();
  }
  int64_t header_length = -1;
  const auto hl = req["Inference-Header-Content-Length"];
  if (!hl.empty()) {
    const std::string s(hl);
    if (!AllDigits(s) || s.size() > 15) {
      return respond(MakeErrorResponse(req, 400, "bad Inference-Header-Content-Length '" + s + "'"));
    }
    header_length = std::stoll(s);
    if (header_length == 0) {
      return respond(
          MakeErrorResponse(req, 400,
                            "raw binary requests (Inference-Header-Content-Length: 0) are not supported; "
                            "send a JSON header"));
    }
  }
  InferRequest request;
  HttpOutputChoice choice;
  if (Status s = ParseHttpInferRequest(body, header_length, &request, &choice); !s.ok()) {
    return respond(MakeErrorResponse(req, HttpStatusFor(s), s.message()));
  }
  request.model_name = model;
  request.model_version = version;
  for (const auto& [name, binary] : choice.outputs) request.requested_outputs.push_back(name);
  auto request_header = std::make_shared<HttpRequest>();
  request_header->version(req.version());
  request_header->keep_alive(req.keep_alive());
  const std::string accept_encoding(req[http::field::accept_encoding]);
  service->Infer(std::move(request),
                 [request_header, choice, respond, accept_encoding](const Status& status, InferResponse r) {
                   const HttpRequest& req = *request_header;
                   if (!status.ok())
                     return respond(MakeErrorResponse(req, HttpStatusFor(status), status.message()));
                   KServeHttpBody body = FormatKServeHttpResponse(r, choice);
                   HttpResponse res;
                   if (!body.has_binary) {
                     res = MakeResponse(req, 200, std::move(body.body));
                   } else {
                     res = MakeResponse(req, 200, std::move(body.body), "application/octet-stream");
                     // The length of the uncompressed JSON header, as Triton sends it.
                     res.set("Inference-Header-Content-Length", std::to_string(body.json_size));
                   }
                   CompressIfAccepted(accept_encoding, &res);
                   respond(std::move(res));
                 });
}

void HandleRest(InferenceService* service, HttpRequest&& req, Responder respond) {
  const std::vector<std::string> p = SplitPath(std::string_view(req.target().data(), req.target().size()));
  const http::verb method = req.method();
  auto only = [&](http::verb allowed) {
    if (method == allowed) return true;
    respond(MakeErrorResponse(req, 405, "Method Not Allowed"));
    return false;
  };
  auto ok_json = [&](const json& j) { respond(MakeResponse(req, 200, j.dump())); };
  auto error = [&](const Status& s) { respond(MakeErrorResponse(req, HttpStatusFor(s), s.message())); };
  auto not_found = [&] { respond(MakeErrorResponse(req, 404, "Not Found")); };

  if (p.empty() || p[0] != "v2") return not_found();
  if (p.size() == 1) {
    if (!only(http::verb::get)) return;
    return ok_json(
        {{"name", kServerName}, {"version", kServerVersion}, {"extensions", service->models().Extensions()}});
  }
  if (p[1] == "health" && p.size() == 3 && (p[2] == "live" || p[2] == "ready")) {
    if (!only(http::verb::get)) return;
    const bool yes = p[2] == "live" ? true : service->ready();
    return respond(MakeResponse(req, yes ? 200 : 400, "", ""));
  }
  if (p[1] == "repository" && p.size() == 3 && p[2] == "index") {
    if (!only(http::verb::post)) return;
    json models = json::array();
    for (ServedModel* m : service->models().models()) {
      models.push_back({{"name", m->name}, {"version", kModelVersion}, {"state", "READY"}, {"reason", ""}});
    }
    return ok_json(models);
  }
  if (p[1] != "models" || p.size() < 3) return not_found();
  if (p.size() == 3 && p[2] == "stats") {
    if (!only(http::verb::get)) return;
    auto stats = service->models().Statistics("", "");
    return stats.ok() ? ok_json(StatsJson(*stats)) : error(stats.status());
  }
  // /v2/models/{m}[/versions/{v}][/action]
  const std::string& model = p[2];
  std::string version;
  size_t next = 3;
  if (p.size() > 4 && p[3] == "versions") {
    if (!AllDigits(p[4])) return not_found();
    version = p[4];
    next = 5;
  } else if (p.size() == 4 && p[3] == "versions") {
    return not_found();
  }
  if (p.size() > next + 1) return not_found();
  const std::string action = p.size() == next + 1 ? p[next] : "";
  if (action == "infer") {
    if (!only(http::verb::post)) return;
    return HandleInfer(service, std::move(req), model, version, std::move(respond));
  }
  if (action != "" && action != "ready" && action != "config" && action != "stats") return not_found();
  if (!only(http::verb::get)) return;
  auto found = service->models().Find(model, version);
  if (action == "ready") {
    if (!found.ok() || !service->ready()) {
      return respond(MakeErrorResponse(req, 400, found.ok() ? "Model not ready" : found.status().message()));
    }
    return respond(MakeResponse(req, 200, "", ""));
  }
  if (!found.ok()) return error(found.status());
  if (action.empty()) return ok_json(MetadataJson(service->models().Metadata(**found)));
  if (action == "config") {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    auto st = google::protobuf::util::MessageToJsonString(service->models().Config(**found), &text, options);
    if (!st.ok()) return error(Internal("cannot print the model config: " + st.ToString()));
    json j = json::parse(text);
    NumbersFromStrings(j);
    // perf_analyzer needs these bools spelled out even when false.
    j["model_transaction_policy"]["decoupled"] = false;
    j["response_cache"]["enable"] = false;
    return ok_json(j);
  }
  auto stats = service->models().Statistics(model, version);
  return stats.ok() ? ok_json(StatsJson(*stats)) : error(stats.status());
}

}  // namespace

HttpHandler MakeRestHandler(InferenceService* service) {
  return [service](HttpRequest&& req, Responder respond) {
    HandleRest(service, std::move(req), std::move(respond));
  };
}

HttpHandler MakeMetricsHandler(const ModelRepository* models, std::function<WebSocketCounters()> websocket) {
  return [models, websocket](HttpRequest&& req, Responder respond) {
    const auto target = std::string(req.target());
    if (target != "/metrics" && target.rfind("/metrics?", 0) != 0) {
      return respond(MakeErrorResponse(req, 404, "Not Found"));
    }
    if (req.method() != http::verb::get) return respond(MakeErrorResponse(req, 405, "Method Not Allowed"));
    std::optional<WebSocketCounters> ws;
    if (websocket) ws = websocket();
    respond(MakeResponse(req, 200, PrometheusText(*models, ws ? &*ws : nullptr),
                         "text/plain; version=0.0.4; charset=utf-8"));
  };
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
      return 503;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 400;
  }
}

}  // namespace u2::server
