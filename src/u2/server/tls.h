// TLS for the HTTP port (HTTPS and WSS): the server certificate and key, re-read when their files
// change, so a renewed certificate is picked up without a restart (gRPC's own TLS does the same
// with its file watcher, grpc_api.h).
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "u2/util/status.h"

namespace u2::server {

class TlsContextProvider {
 public:
  // Loads cert (PEM chain) and key (PEM); an unreadable or mismatched pair is an error.
  static StatusOr<std::shared_ptr<TlsContextProvider>> Create(const std::string& cert_path,
                                                              const std::string& key_path);
  // The context new connections use: a fresh one if the files changed since the last load
  // (checked at most once a second) and load cleanly; the previous one otherwise.
  std::shared_ptr<boost::asio::ssl::context> Current();

 private:
  TlsContextProvider() = default;
  static StatusOr<std::shared_ptr<boost::asio::ssl::context>> Load(const std::string& cert,
                                                                   const std::string& key);
  std::string Stamp() const;

  std::string cert_path_, key_path_;
  std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::string stamp_;
  std::chrono::steady_clock::time_point next_check_;
};

}  // namespace u2::server
