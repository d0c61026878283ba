// API keys: with --api-keys-file, every inference and model request must carry one of the keys
// in that file, as `Authorization: Bearer KEY` (HTTP, OpenAI, WebSocket upgrade; browsers, which
// cannot set headers on a WebSocket, may send `?api_key=KEY` instead) or as gRPC metadata
// `authorization: Bearer KEY`. A missing or wrong key is 401 / UNAUTHENTICATED. Health,
// readiness and metrics stay open unless --auth-health is set (load balancers and Prometheus
// probe them without credentials).
//
// The file holds one key per line ('#' starts a comment, blank lines are ignored) and is re-read
// when it changes, so keys can be rotated without a restart (a mounted Kubernetes secret, say).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "u2/util/option_registry.h"
#include "u2/util/status.h"

namespace u2::server {

struct AuthConfig {
  std::string api_keys_file;  // empty: no authentication
  bool protect_health = false;

  void Register(OptionRegistry* r);
};

class ApiKeys {
 public:
  // Reads the file; an unreadable file or one without keys is an error (a typo must not open the
  // server). With no file configured, every request passes.
  static StatusOr<std::shared_ptr<ApiKeys>> Create(const AuthConfig& config);

  bool enabled() const { return !path_.empty(); }
  bool protects_health() const { return protect_health_; }
  // OK when authentication is off or `authorization` is "Bearer KEY" with a known KEY;
  // Unauthenticated otherwise, saying what was missing.
  Status CheckAuthorization(std::string_view authorization) const;
  Status CheckKey(std::string_view key) const;

 private:
  ApiKeys() = default;
  // Re-reads the file if it changed (checked at most once a second). Keeps the old keys if the
  // new file cannot be read or holds none.
  void RefreshLocked() const;
  static StatusOr<std::unordered_set<std::string>> ReadKeys(const std::string& path);

  std::string path_;
  bool protect_health_ = false;
  mutable std::mutex mu_;
  mutable std::unordered_set<std::string> keys_;
  mutable std::chrono::steady_clock::time_point next_check_;
  mutable std::string file_stamp_;  // size and mtime of the file last read
};

}  // namespace u2::server
