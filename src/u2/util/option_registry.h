// Named settings, declared once by the config struct that owns them and then read from every
// source: command-line flags (CLI11), a YAML file, and printed back (ToString). This is the
// nested-config pattern of sherpa-onnx (each config's Register(ParseOptions*)): a component adds
// a knob in its own Register and every source knows it.
//
//   void HttpServerConfig::Register(OptionRegistry* r) {
//     r->Add("http-port", &port, "HTTP port (0: any free port, -1: off)");
//   }
//
// Flag names use '-'; the YAML key of "http-port" is "http_port" (either spelling is accepted).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "u2/util/status.h"

namespace CLI {
class App;
}
namespace YAML {
class Node;
}

namespace u2 {

class OptionRegistry {
 public:
  void Add(const std::string& name, int* value, const std::string& help);
  void Add(const std::string& name, int64_t* value, const std::string& help);
  void Add(const std::string& name, uint64_t* value, const std::string& help);
  void Add(const std::string& name, double* value, const std::string& help);
  void Add(const std::string& name, float* value, const std::string& help);
  void Add(const std::string& name, bool* value, const std::string& help);
  void Add(const std::string& name, std::string* value, const std::string& help);
  void Add(const std::string& name, std::vector<int>* value, const std::string& help);
  void Add(const std::string& name, std::vector<std::string>* value, const std::string& help);
  // Unset unless given: the owner's default (e.g. the model's own setting) applies.
  void Add(const std::string& name, std::optional<int>* value, const std::string& help);
  void Add(const std::string& name, std::optional<float>* value, const std::string& help);

  // Adds every option as --NAME to `app`, with its current value as the shown default.
  void AddTo(CLI::App* app);
  // Sets the options named by the keys of a YAML mapping; InvalidArgument names the file and
  // the key for an unknown key or a value of the wrong type.
  Status LoadYaml(const YAML::Node& root, const std::string& source);
  Status LoadYamlFile(const std::string& path);
  // "name=value, ..." of every option, in registration order.
  std::string ToString() const;
  bool Has(const std::string& name) const;

 private:
  struct Option {
    std::string name, help;
    std::function<void(CLI::App*, const Option&)> add_flag;
    std::function<void(const YAML::Node&)> from_yaml;  // throws YAML::Exception on a bad value
    std::function<std::string()> print;
  };
  template <typename T>
  void AddScalar(const std::string& name, T* value, const std::string& help);
  std::vector<Option> options_;
};

}  // namespace u2
