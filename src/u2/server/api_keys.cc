#include "u2/server/api_keys.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <fstream>

namespace u2::server {
namespace {

std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Compares without an early exit, so the time taken does not tell how much of a key matched.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

void AuthConfig::Register(OptionRegistry* r) {
  r->Add("api-keys-file", &api_keys_file,
         "file of API keys, one per line; requests must send 'Authorization: Bearer KEY' (empty: no keys)");
  r->Add("auth-health", &protect_health, "with --api-keys-file: also require a key for health and metrics");
}

StatusOr<std::unordered_set<std::string>> ApiKeys::ReadKeys(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read the API keys file " + path);
  std::unordered_set<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    std::string_view key = line;
    if (const size_t hash = key.find('#'); hash != std::string_view::npos) key = key.substr(0, hash);
    key = Trim(key);
    if (!key.empty()) keys.emplace(key);
  }
  if (keys.empty()) return InvalidArgument("the API keys file " + path + " holds no key");
  return keys;
}

StatusOr<std::shared_ptr<ApiKeys>> ApiKeys::Create(const AuthConfig& config) {
  std::shared_ptr<ApiKeys> k(new ApiKeys());
  k->protect_health_ = config.protect_health;
  if (config.api_keys_file.empty()) return k;
  k->path_ = config.api_keys_file;
  k->file_stamp_ = FileStamp(k->path_);
  U2_ASSIGN_OR_RETURN(k->keys_, ReadKeys(k->path_));
  k->next_check_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  return k;
}

void ApiKeys::RefreshLocked() const {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_check_) return;
  next_check_ = now + std::chrono::seconds(1);
  const std::string stamp = FileStamp(path_);
  if (stamp == file_stamp_) return;
  auto keys = ReadKeys(path_);
  if (!keys.ok()) {
    spdlog::warn("API keys: {}; keeping the {} keys read before", keys.status().message(), keys_.size());
    return;
  }
  keys_ = std::move(keys).value();
  file_stamp_ = stamp;
  spdlog::info("API keys: re-read {} ({} keys)", path_, keys_.size());
}

Status ApiKeys::CheckKey(std::string_view key) const {
  if (!enabled()) return Status::Ok();
  if (key.empty()) return Unauthenticated("an API key is required (Authorization: Bearer KEY)");
  std::lock_guard<std::mutex> lock(mu_);
  RefreshLocked();
  bool found = false;
  for (const std::string& k : keys_) found |= SameKey(k, key);
  return found ? Status::Ok() : Unauthenticated("invalid API key");
}

Status ApiKeys::CheckAuthorization(std::string_view authorization) const {
  if (!enabled()) return Status::Ok();
  authorization = Trim(authorization);
  if (authorization.empty()) return Unauthenticated("an API key is required (Authorization: Bearer KEY)");
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return Unauthenticated("the Authorization header must be 'Bearer KEY'");
  }
  return CheckKey(Trim(authorization.substr(kBearer.size())));
}

}  // namespace u2::server
