#include "u2/server/kserve_http.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace u2::server {
namespace {

using nlohmann::json;

template <typename T>
void AppendValue(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->append(b, sizeof(T));
}

// A JSON number as an element of integer type T: an integer (or an integral float) within T's
// range; anything else is refused rather than converted (out of range would be undefined).
template <typename T>
bool JsonInteger(const json& e, T* out) {
  constexpr auto kMin = std::numeric_limits<T>::min();
  constexpr auto kMax = std::numeric_limits<T>::max();
  if (e.is_number_unsigned()) {
    const uint64_t u = e.get<uint64_t>();
    if (u > static_cast<uint64_t>(kMax)) return false;
    *out = static_cast<T>(u);
  } else if (e.is_number_integer()) {
    const int64_t i = e.get<int64_t>();
    if (i < 0 ? (!std::is_signed_v<T> || i < static_cast<int64_t>(kMin))
              : static_cast<uint64_t>(i) > static_cast<uint64_t>(kMax))
      return false;
    *out = static_cast<T>(i);
  } else {
    // kMax + 1.0 is a power of two, exact as a double even for 64-bit types.
    const double v = e.get<double>();
    if (!(v == std::floor(v) && v >= static_cast<double>(kMin) && v < static_cast<double>(kMax) + 1.0))
      return false;
    *out = static_cast<T>(v);
  }
  return true;
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
    auto integer = [&](auto zero) -> Status {
      decltype(zero) v;
      if (!JsonInteger(*e, &v)) {
        return InvalidArgument("input '" + name + "': " + e->dump() + " is not a value of datatype " + dt);
      }
      AppendValue(out, v);
      return Status::Ok();
    };
    if (dt == "FP32") {
      const double v = e->get<double>();
      if (std::fabs(v) > std::numeric_limits<float>::max()) {  // no float holds it: the cast is undefined
        return InvalidArgument("input '" + name + "': " + e->dump() + " is not a value of datatype " + dt);
      }
      AppendValue<float>(out, static_cast<float>(v));
    } else if (dt == "FP64") {
      AppendValue<double>(out, e->get<double>());
    } else if (dt == "INT8") {
      U2_RETURN_IF_ERROR(integer(int8_t{}));
    } else if (dt == "INT16") {
      U2_RETURN_IF_ERROR(integer(int16_t{}));
    } else if (dt == "INT32") {
      U2_RETURN_IF_ERROR(integer(int32_t{}));
    } else if (dt == "INT64") {
      U2_RETURN_IF_ERROR(integer(int64_t{}));
    } else if (dt == "UINT8") {
      U2_RETURN_IF_ERROR(integer(uint8_t{}));
    } else if (dt == "UINT16") {
      U2_RETURN_IF_ERROR(integer(uint16_t{}));
    } else if (dt == "UINT32") {
      U2_RETURN_IF_ERROR(integer(uint32_t{}));
    } else if (dt == "UINT64") {
      U2_RETURN_IF_ERROR(integer(uint64_t{}));
    } else {
      return InvalidArgument("input '" + name + "': datatype '" + dt + "' cannot be given as JSON data");
    }
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

}  // namespace

bool HttpOutputChoice::BinaryFor(const std::string& name) const {
  for (const auto& [n, b] : outputs) {
    if (n == name) return b;
  }
  return binary_default;
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
        t.Borrow(std::string_view(body).substr(offset, size));
        offset += size;
      } else {
        if (!in.contains("data")) return InvalidArgument("input '" + t.name + "' has no 'data'");
        std::string bytes;
        U2_RETURN_IF_ERROR(JsonDataToRaw(t.name, t.datatype, in["data"], &bytes));
        t.Own(std::move(bytes));
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
  return Status::Ok();
}

}  // namespace u2::server
