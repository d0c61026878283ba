#include "u2/server/http_api.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace u2::server {
namespace {

namespace http = boost::beast::http;
using nlohmann::json;

std::string UrlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> SplitPath(std::string_view target) {
  const size_t q = target.find('?');
  if (q != std::string_view::npos) target = target.substr(0, q);
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string_view::npos) end = target.size();
    if (end > start) parts.push_back(UrlDecode(target.substr(start, end - start)));
    start = end + 1;
  }
  return parts;
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

template <typename T>
void AppendValue(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

void Flatten(const json& j, std::vector<const json*>* out) {
  if (j.is_array()) {
    for (const json& e : j) Flatten(e, out);
  } else {
    out->push_back(&j);
  }
}

// JSON `data` (nested or flat) to raw little-endian bytes of `datatype`.
Status JsonDataToRaw(const std::string& name, const std::string& dt, const json& data, std::string* out) {
  std::vector<const json*> flat;
  Flatten(data, &flat);
  for (const json* e : flat) {
    if (dt == "BYTES") {
      if (!e->is_string()) return InvalidArgument("input '" + name + "': BYTES data must be strings");
      const std::string& s = e->get_ref<const std::string&>();
      AppendValue<uint32_t>(out, static_cast<uint32_t>(s.size()));
      out->append(s);
      continue;
    }
    if (dt == "BOOL") {
      if (!e->is_boolean()) return InvalidArgument("input '" + name + "': BOOL data must be true/false");
      out->push_back(e->get<bool>() ? 1 : 0);
      continue;
    }
    if (!e->is_number()) {
      return InvalidArgument("input '" + name + "': expected numbers for datatype " + dt + ", got " +
                             std::string(e->type_name()));
    }
    const double v = e->get<double>();
    if (dt == "FP32")
      AppendValue<float>(out, static_cast<float>(v));
    else if (dt == "FP64")
      AppendValue<double>(out, v);
    else if (dt == "INT8")
      AppendValue<int8_t>(out, static_cast<int8_t>(v));
    else if (dt == "INT16")
      AppendValue<int16_t>(out, static_cast<int16_t>(v));
    else if (dt == "INT32")
      AppendValue<int32_t>(out, static_cast<int32_t>(e->get<int64_t>()));
    else if (dt == "INT64")
      AppendValue<int64_t>(out, e->get<int64_t>());
    else if (dt == "UINT8")
      AppendValue<uint8_t>(out, static_cast<uint8_t>(v));
    else if (dt == "UINT16")
      AppendValue<uint16_t>(out, static_cast<uint16_t>(v));
    else if (dt == "UINT32")
      AppendValue<uint32_t>(out, static_cast<uint32_t>(e->get<uint64_t>()));
    else if (dt == "UINT64")
      AppendValue<uint64_t>(out, e->get<uint64_t>());
    else
      return InvalidArgument("input '" + name + "': datatype '" + dt + "' cannot be given as JSON data");
  }
  return Status::Ok();
}

StatusOr<Parameter> JsonToParameter(const std::string& key, const json& v) {
  if (v.is_boolean()) return Parameter{v.get<bool>()};
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Parameter{static_cast<int64_t>(u)};
    return Parameter{u};
  }
  if (v.is_number_integer()) return Parameter{v.get<int64_t>()};
  if (v.is_number_float()) return Parameter{v.get<double>()};
  if (v.is_string()) return Parameter{v.get<std::string>()};
  return InvalidArgument("parameter '" + key + "' must be a bool, number or string");
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
  if (auto found = service->Find(model, version); !found.ok()) {
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
                   json out = {{"model_name", r.model_name}, {"model_version", r.model_version}};
                   if (!r.id.empty()) out["id"] = r.id;
                   json outputs = json::array();
                   std::string tail;
                   auto binary_for = [&](const std::string& name) {
                     for (const auto& [n, b] : choice.outputs) {
                       if (n == name) return b;
                     }
                     return choice.binary_default;
                   };
                   for (const OutputTensor& t : r.outputs) {
                     json o = {{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}};
                     if (binary_for(t.name)) {
                       const std::string raw = t.RawBytes();
                       o["parameters"] = {{"binary_data_size", raw.size()}};
                       tail += raw;
                     } else {
                       json data = json::array();
                       for (const auto& s : t.strings) data.push_back(s);
                       o["data"] = data;
                     }
                     outputs.push_back(std::move(o));
                   }
                   out["outputs"] = outputs;
                   std::string header = out.dump(-1, ' ', false, json::error_handler_t::replace);
                   HttpResponse res;
                   if (tail.empty()) {
                     res = MakeResponse(req, 200, std::move(header));
                   } else {
                     const size_t header_size = header.size();
                     res = MakeResponse(req, 200, header + tail, "application/octet-stream");
                     // The length of the uncompressed JSON header, as Triton sends it.
                     res.set("Inference-Header-Content-Length", std::to_string(header_size));
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
        {{"name", kServerName}, {"version", kServerVersion}, {"extensions", service->Extensions()}});
  }
  if (p[1] == "health" && p.size() == 3 && (p[2] == "live" || p[2] == "ready")) {
    if (!only(http::verb::get)) return;
    const bool yes = p[2] == "live" ? true : service->ready();
    return respond(MakeResponse(req, yes ? 200 : 400, "", ""));
  }
  if (p[1] == "repository" && p.size() == 3 && p[2] == "index") {
    if (!only(http::verb::post)) return;
    json models = json::array();
    for (ServedModel* m : service->models()) {
      models.push_back({{"name", m->name}, {"version", kModelVersion}, {"state", "READY"}, {"reason", ""}});
    }
    return ok_json(models);
  }
  if (p[1] != "models" || p.size() < 3) return not_found();
  if (p.size() == 3 && p[2] == "stats") {
    if (!only(http::verb::get)) return;
    auto stats = service->Statistics("", "");
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
  auto found = service->Find(model, version);
  if (action == "ready") {
    if (!found.ok() || !service->ready()) {
      return respond(MakeErrorResponse(req, 400, found.ok() ? "Model not ready" : found.status().message()));
    }
    return respond(MakeResponse(req, 200, "", ""));
  }
  if (!found.ok()) return error(found.status());
  if (action.empty()) return ok_json(MetadataJson(service->Metadata(**found)));
  if (action == "config") {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    auto st = google::protobuf::util::MessageToJsonString(service->Config(**found), &text, options);
    if (!st.ok()) return error(Internal("cannot print the model config: " + st.ToString()));
    json j = json::parse(text);
    NumbersFromStrings(j);
    // perf_analyzer needs these bools spelled out even when false.
    j["model_transaction_policy"]["decoupled"] = false;
    j["response_cache"]["enable"] = false;
    return ok_json(j);
  }
  auto stats = service->Statistics(model, version);
  return stats.ok() ? ok_json(StatsJson(*stats)) : error(stats.status());
}

}  // namespace

StatusOr<std::string> Deflate(std::string_view data, bool gzip) {
  z_stream zs{};
  // 15 + 16: a gzip wrapper; 15: zlib ("deflate" in HTTP).
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return Internal("zlib deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (ret != Z_STREAM_END) return Internal("zlib deflate failed");
  return out;
}

void CompressIfAccepted(std::string_view accept_encoding, HttpResponse* res) {
  // Accept-Encoding is a list like "gzip, deflate;q=0.5"; a coding with q=0 is refused.
  auto accepts = [&](std::string_view coding) {
    size_t pos = 0;
    while (pos < accept_encoding.size()) {
      size_t end = accept_encoding.find(',', pos);
      if (end == std::string_view::npos) end = accept_encoding.size();
      std::string_view item = accept_encoding.substr(pos, end - pos);
      pos = end + 1;
      const size_t semi = item.find(';');
      std::string_view name = item.substr(0, semi);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (name != coding) continue;
      if (semi == std::string_view::npos) return true;
      std::string_view q = item.substr(semi + 1);
      while (!q.empty() && q.front() == ' ') q.remove_prefix(1);
      return !(q.starts_with("q=0") && q.find_first_not_of("0.", 2) == std::string_view::npos);
    }
    return false;
  };
  const bool gzip = accepts("gzip");
  if (!gzip && !accepts("deflate")) return;
  if (res->body().size() < 64) return;  // not worth a header
  auto packed = Deflate(res->body(), gzip);
  if (!packed.ok()) return;  // send it uncompressed rather than fail the request
  res->body() = std::move(packed).value();
  res->set(http::field::content_encoding, gzip ? "gzip" : "deflate");
  res->prepare_payload();
}

StatusOr<std::string> Inflate(const std::string& compressed, uint64_t max_bytes) {
  z_stream zs{};
  // 15 + 32: zlib or gzip header, detected automatically.
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return Internal("zlib inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buf[1 << 16];
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    ret = inflate(&zs, Z_NO_FLUSH);
    if (ret != Z_OK && ret != Z_STREAM_END) {
      inflateEnd(&zs);
      return InvalidArgument("cannot decompress the request body (Content-Encoding): " +
                             std::string(zs.msg ? zs.msg : "corrupt or truncated data"));
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() > max_bytes) {
      inflateEnd(&zs);
      return InvalidArgument("decompressed request body exceeds " + std::to_string(max_bytes) + " bytes");
    }
    if (ret == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return InvalidArgument("cannot decompress the request body: truncated compressed data");
    }
  }
  inflateEnd(&zs);
  return out;
}

Status ParseHttpInferRequest(const std::string& body, int64_t header_length, InferRequest* request,
                             HttpOutputChoice* choice) {
  if (header_length > static_cast<int64_t>(body.size())) {
    return InvalidArgument("Inference-Header-Content-Length " + std::to_string(header_length) +
                           " is larger than the request body (" + std::to_string(body.size()) + " bytes)");
  }
  const size_t json_size = header_length < 0 ? body.size() : static_cast<size_t>(header_length);
  json j = json::parse(body.begin(), body.begin() + json_size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("failed to parse the request JSON: malformed JSON");
  if (!j.is_object()) return InvalidArgument("the request JSON must be an object");
  try {
    if (j.contains("id")) {
      if (!j["id"].is_string()) return InvalidArgument("'id' must be a string");
      request->id = j["id"].get<std::string>();
    }
    if (j.contains("parameters")) {
      if (!j["parameters"].is_object()) return InvalidArgument("'parameters' must be an object");
      for (auto& [k, v] : j["parameters"].items()) {
        if (k == "binary_data_output") {
          if (!v.is_boolean()) return InvalidArgument("'binary_data_output' must be a bool");
          choice->binary_default = v.get<bool>();
          continue;
        }
        U2_ASSIGN_OR_RETURN(Parameter p, JsonToParameter(k, v));
        request->parameters[k] = std::move(p);
      }
    }
    if (!j.contains("inputs") || !j["inputs"].is_array()) return InvalidArgument("'inputs' must be an array");
    size_t offset = json_size;
    for (const json& in : j["inputs"]) {
      if (!in.is_object()) return InvalidArgument("each input must be an object");
      InputTensor t;
      if (!in.contains("name") || !in["name"].is_string()) return InvalidArgument("an input has no 'name'");
      t.name = in["name"].get<std::string>();
      if (!in.contains("datatype") || !in["datatype"].is_string()) {
        return InvalidArgument("input '" + t.name + "' has no 'datatype'");
      }
      t.datatype = in["datatype"].get<std::string>();
      if (!in.contains("shape") || !in["shape"].is_array()) {
        return InvalidArgument("input '" + t.name + "' has no 'shape' array");
      }
      for (const json& d : in["shape"]) {
        if (!d.is_number_integer()) return InvalidArgument("input '" + t.name + "': shape must be integers");
        t.shape.push_back(d.get<int64_t>());
      }
      const bool has_binary = in.contains("parameters") && in["parameters"].is_object() &&
                              in["parameters"].contains("binary_data_size");
      if (has_binary) {
        if (in.contains("data")) {
          return InvalidArgument("input '" + t.name + "' has both 'data' and 'binary_data_size'");
        }
        const json& n = in["parameters"]["binary_data_size"];
        if (!n.is_number_unsigned()) {
          return InvalidArgument("input '" + t.name + "': binary_data_size must be a non-negative integer");
        }
        const uint64_t size = n.get<uint64_t>();
        if (size > body.size() - offset) {
          return InvalidArgument("input '" + t.name + "': binary_data_size " + std::to_string(size) +
                                 " exceeds the " + std::to_string(body.size() - offset) +
                                 " bytes of binary data left in the request body (truncated?)");
        }
        t.data = std::string_view(body).substr(offset, size);
        offset += size;
      } else {
        if (!in.contains("data")) return InvalidArgument("input '" + t.name + "' has no 'data'");
        U2_RETURN_IF_ERROR(JsonDataToRaw(t.name, t.datatype, in["data"], &t.owned));
        t.data = t.owned;
      }
      request->inputs.push_back(std::move(t));
    }
    if (offset != body.size()) {
      return InvalidArgument("the request body has " + std::to_string(body.size() - offset) +
                             " bytes after the last input's binary data");
    }
    if (j.contains("outputs")) {
      if (!j["outputs"].is_array()) return InvalidArgument("'outputs' must be an array");
      for (const json& o : j["outputs"]) {
        if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
          return InvalidArgument("each output must be an object with a 'name'");
        }
        bool binary = choice->binary_default;
        if (o.contains("parameters") && o["parameters"].is_object() &&
            o["parameters"].contains("binary_data")) {
          const json& b = o["parameters"]["binary_data"];
          if (!b.is_boolean()) return InvalidArgument("output parameter 'binary_data' must be a bool");
          binary = b.get<bool>();
        }
        choice->outputs.emplace_back(o["name"].get<std::string>(), binary);
      }
    }
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("bad request JSON: ") + e.what());
  }
  // Views into `body` were taken; owned strings moved with their tensors keep their data, but
  // a moved std::string with small-string storage changes address: re-point them.
  for (InputTensor& t : request->inputs) {
    if (!t.owned.empty()) t.data = t.owned;
  }
  return Status::Ok();
}

HttpHandler MakeRestHandler(InferenceService* service) {
  return [service](HttpRequest&& req, Responder respond) {
    HandleRest(service, std::move(req), std::move(respond));
  };
}

HttpHandler MakeMetricsHandler(InferenceService* service) {
  return [service](HttpRequest&& req, Responder respond) {
    const auto target = std::string(req.target());
    if (target != "/metrics" && target.rfind("/metrics?", 0) != 0) {
      return respond(MakeErrorResponse(req, 404, "Not Found"));
    }
    if (req.method() != http::verb::get) return respond(MakeErrorResponse(req, 405, "Method Not Allowed"));
    respond(MakeResponse(req, 200, service->PrometheusText(), "text/plain; version=0.0.4; charset=utf-8"));
  };
}

}  // namespace u2::server
