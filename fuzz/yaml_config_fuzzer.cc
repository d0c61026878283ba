// u2serve's YAML configuration (--config): the text as YAML, then every component's options set
// from it (OptionRegistry::LoadYaml over ServerConfig's registry, as LoadYamlFile does after
// reading the file), then ServerConfig::Validate. yaml-cpp itself is Debian's, uninstrumented.
#include <yaml-cpp/yaml.h>

#include <string>

#include "fuzz_support.h"
#include "u2/server/server_config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(u2::fuzz::AsText(data, size)));
  } catch (const std::exception&) {
    return 0;  // LoadYamlFile's answer: InvalidArgument("cannot read config ...")
  }
  u2::server::ServerConfig config;
  u2::OptionRegistry registry;
  config.Register(&registry);
  if (!registry.LoadYaml(root, "fuzz.yaml").ok()) return 0;
  (void)config.Validate();
  (void)registry.ToString();
  return 0;
}
