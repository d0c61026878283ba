#include "u2/server/http_router.h"

#include <boost/beast/websocket/rfc6455.hpp>

#include "u2/server/formats.h"

namespace u2::server {
namespace {

namespace http = boost::beast::http;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void HttpRouter::Add(std::string prefix, HttpHandler handler) {
  routes_.emplace_back(std::move(prefix), std::move(handler));
}

void HttpRouter::SetFallback(HttpHandler handler) { fallback_ = std::move(handler); }

HttpHandler HttpRouter::Handler() const {
  return [routes = routes_, fallback = fallback_](HttpRequest&& request, Responder respond) {
    const std::string_view path = PathOf(std::string_view(request.target().data(), request.target().size()));
    for (const auto& [prefix, handler] : routes) {
      if (path == prefix ||
          (path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '/')) {
        return handler(std::move(request), std::move(respond));
      }
    }
    if (fallback) return fallback(std::move(request), std::move(respond));
    respond(MakeErrorResponse(request, 404, "Not Found"));
  };
}

std::string_view PathOf(std::string_view target) {
  const size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string UrlDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i] == '+' && plus_is_space ? ' ' : s[i]);
    }
  }
  return out;
}

std::string QueryParameter(std::string_view target, std::string_view key) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (UrlDecode(pair.substr(0, eq)) == key) {
      return eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return "";
}

bool IsOpenPath(std::string_view path) {
  if (path == "/" || path == "/index.html" || path == "/metrics" || path == "/ws/stats") return true;
  if (path == "/v2/health/live" || path == "/v2/health/ready") return true;
  // /v2/models/NAME[/versions/V]/ready
  return path.starts_with("/v2/models/") && path.ends_with("/ready");
}

RequestFilter MakeAuthFilter(std::shared_ptr<const ApiKeys> keys) {
  if (!keys || !keys->enabled()) return nullptr;
  return [keys](const HttpRequest& request) -> std::optional<HttpResponse> {
    const std::string_view target(request.target().data(), request.target().size());
    const std::string_view path = PathOf(target);
    const bool upgrade = boost::beast::websocket::is_upgrade(request);
    if (!upgrade && !keys->protects_health() && IsOpenPath(path)) return std::nullopt;
    const auto authorization = request[http::field::authorization];
    Status s = keys->CheckAuthorization(std::string_view(authorization.data(), authorization.size()));
    if (!s.ok() && upgrade && authorization.empty()) {
      s = keys->CheckKey(QueryParameter(target, "api_key"));
    }
    if (s.ok()) return std::nullopt;
    HttpResponse res =
        path.starts_with("/v1/")
            ? MakeResponse(request, 401,
                           OpenAiError(s.message(), "invalid_request_error", "", "invalid_api_key"))
            : MakeErrorResponse(request, 401, s.message());
    res.set(http::field::www_authenticate, "Bearer");
    return res;
  };
}

}  // namespace u2::server
