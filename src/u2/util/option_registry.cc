#include "u2/util/option_registry.h"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <sstream>

namespace u2 {
namespace {

std::string YamlKey(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

template <typename T>
std::string Print(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

template <typename T>
std::string PrintList(const std::vector<T>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + Print(v[i]);
  return s + "]";
}

// A YAML value that may be one item or a list of them.
template <typename T>
std::vector<T> ListOf(const YAML::Node& node) {
  std::vector<T> out;
  if (node.IsSequence()) {
    for (const auto& e : node) out.push_back(e.as<T>());
  } else {
    out.push_back(node.as<T>());
  }
  return out;
}

}  // namespace

template <typename T>
void OptionRegistry::AddScalar(const std::string& name, T* value, const std::string& help) {
  Option o;
  o.name = name;
  o.help = help;
  o.add_flag = [value](CLI::App* app, const Option& self) {
    app->add_option("--" + self.name, *value, self.help)->capture_default_str();
  };
  o.from_yaml = [value](const YAML::Node& node) { *value = node.as<T>(); };
  o.print = [value] { return Print(*value); };
  options_.push_back(std::move(o));
}

void OptionRegistry::Add(const std::string& name, int* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, int64_t* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, uint64_t* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, double* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, float* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, bool* value, const std::string& help) {
  AddScalar(name, value, help);
}
void OptionRegistry::Add(const std::string& name, std::string* value, const std::string& help) {
  AddScalar(name, value, help);
}

void OptionRegistry::Add(const std::string& name, std::vector<int>* value, const std::string& help) {
  Option o{
      name, help,
      [value](CLI::App* app, const Option& self) { app->add_option("--" + self.name, *value, self.help); },
      [value](const YAML::Node& node) { *value = ListOf<int>(node); }, [value] { return PrintList(*value); }};
  options_.push_back(std::move(o));
}

void OptionRegistry::Add(const std::string& name, std::vector<std::string>* value, const std::string& help) {
  Option o{
      name, help,
      [value](CLI::App* app, const Option& self) { app->add_option("--" + self.name, *value, self.help); },
      [value](const YAML::Node& node) { *value = ListOf<std::string>(node); },
      [value] { return PrintList(*value); }};
  options_.push_back(std::move(o));
}

void OptionRegistry::Add(const std::string& name, std::optional<int>* value, const std::string& help) {
  Option o{name, help,
           [value](CLI::App* app, const Option& self) {
             app->add_option_function<int>(
                 "--" + self.name, [value](const int& v) { *value = v; }, self.help);
           },
           [value](const YAML::Node& node) { *value = node.as<int>(); },
           [value] { return *value ? Print(**value) : std::string("(model)"); }};
  options_.push_back(std::move(o));
}

void OptionRegistry::Add(const std::string& name, std::optional<float>* value, const std::string& help) {
  Option o{name, help,
           [value](CLI::App* app, const Option& self) {
             app->add_option_function<float>(
                 "--" + self.name, [value](const float& v) { *value = v; }, self.help);
           },
           [value](const YAML::Node& node) { *value = node.as<float>(); },
           [value] { return *value ? Print(**value) : std::string("(model)"); }};
  options_.push_back(std::move(o));
}

void OptionRegistry::AddTo(CLI::App* app) {
  for (const Option& o : options_) o.add_flag(app, o);
}

bool OptionRegistry::Has(const std::string& name) const {
  return std::any_of(options_.begin(), options_.end(), [&](const Option& o) { return o.name == name; });
}

Status OptionRegistry::LoadYaml(const YAML::Node& root, const std::string& source) {
  if (!root.IsMap()) return InvalidArgument(source + ": expected a mapping of option names to values");
  for (const auto& kv : root) {
    std::string key;
    try {
      key = kv.first.as<std::string>();
    } catch (const YAML::Exception& e) {
      return InvalidArgument(source + ": a key is not a string");
    }
    auto it = std::find_if(options_.begin(), options_.end(),
                           [&](const Option& o) { return o.name == key || YamlKey(o.name) == key; });
    if (it == options_.end()) return InvalidArgument(source + ": unknown option '" + key + "'");
    try {
      it->from_yaml(kv.second);
    } catch (const YAML::Exception& e) {
      return InvalidArgument(source + ": bad value for '" + key + "': " + e.what());
    }
  }
  return Status::Ok();
}

Status OptionRegistry::LoadYamlFile(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return InvalidArgument("cannot read config " + path + ": " + e.what());
  }
  return LoadYaml(root, path);
}

std::string OptionRegistry::ToString() const {
  std::string s;
  for (const Option& o : options_) s += (s.empty() ? "" : ", ") + YamlKey(o.name) + "=" + o.print();
  return s;
}

}  // namespace u2
