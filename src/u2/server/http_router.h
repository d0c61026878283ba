// The HTTP port's routes and its gate: which handler a path goes to (/v2: KServe, /v1: OpenAI,
// the rest: the web page and WebSocket stats), and the API-key check every request passes first.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "u2/server/api_keys.h"
#include "u2/server/http_server.h"

namespace u2::server {

class HttpRouter {
 public:
  // Requests whose path is `prefix` or starts with "`prefix`/" go to `handler` (first match).
  void Add(std::string prefix, HttpHandler handler);
  // Everything else (404 if none).
  void SetFallback(HttpHandler handler);
  HttpHandler Handler() const;

 private:
  std::vector<std::pair<std::string, HttpHandler>> routes_;
  HttpHandler fallback_;
};

// The request path without the query ("/a/b?x=1" -> "/a/b").
std::string_view PathOf(std::string_view target);
// The value of query parameter `key` in `target`, URL-decoded ("" if absent).
std::string QueryParameter(std::string_view target, std::string_view key);
// %XX escapes; "+" is a space in query strings (plus_is_space), itself in paths.
std::string UrlDecode(std::string_view s, bool plus_is_space = true);

// Health, readiness, metrics and the web page itself: open even with API keys unless
// keys->protects_health().
bool IsOpenPath(std::string_view path);

// The API-key gate (api_keys.h): 401 with a JSON error (OpenAI's shape under /v1) for a missing or
// wrong key. The key comes from "Authorization: Bearer KEY", or for WebSocket upgrades (which
// browsers cannot give headers) from the query parameter api_key. Null when keys are off.
RequestFilter MakeAuthFilter(std::shared_ptr<const ApiKeys> keys);

}  // namespace u2::server
