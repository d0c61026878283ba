// u2serve: the Triton-compatible speech recognition server (offline and streaming), with the
// OpenAI transcription API and WeNet's WebSocket protocol on its HTTP port.
//   u2serve --model-dir models/demo [--config server.yaml] [--http-port 8000] [--grpc-port 8001] ...
// Every flag can also be set in the YAML config (same names, '-' or '_'); flags win. The options
// are declared by the components that own them (src/u2/server/server_config.h).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <string>

#include "u2/server/server.h"

int main(int argc, char** argv) {
  u2::server::ServerConfig config;
  u2::OptionRegistry options;
  config.Register(&options);
  // The YAML file supplies defaults, so it is read before the flags are parsed.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string path;
    if (a == "--config" && i + 1 < argc) path = argv[i + 1];
    if (a.rfind("--config=", 0) == 0) path = a.substr(9);
    if (!path.empty()) {
      if (u2::Status s = options.LoadYamlFile(path); !s.ok()) {
        std::fprintf(stderr, "u2serve: %s\n", s.message().c_str());
        return 2;
      }
    }
  }
  CLI::App app{
      "u2serve: speech recognition server for WeNet U2/U2++ models (Triton/KServe v2 gRPC + HTTP, OpenAI "
      "/v1/audio/transcriptions, WebSocket)"};
  std::string config_path;
  app.add_option("--config", config_path, "YAML file with any of these options (flags override it)");
  options.AddTo(&app);
  CLI11_PARSE(app, argc, argv);

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  spdlog::info("starting u2serve: {}", options.ToString());
  auto server = u2::server::Server::Start(config);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}
