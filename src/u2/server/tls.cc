#include "u2/server/tls.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

namespace u2::server {
namespace {

std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "missing";
  return std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
}

}  // namespace

StatusOr<std::shared_ptr<boost::asio::ssl::context>> TlsContextProvider::Load(const std::string& cert,
                                                                              const std::string& key) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                   ec);
  if (!ec) ctx->use_certificate_chain_file(cert, ec);
  if (ec) return InvalidArgument("cannot load the TLS certificate " + cert + ": " + ec.message());
  ctx->use_private_key_file(key, ssl::context::pem, ec);
  if (ec) return InvalidArgument("cannot load the TLS key " + key + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return InvalidArgument("the TLS key " + key + " does not match the certificate " + cert);
  }
  return ctx;
}

std::string TlsContextProvider::Stamp() const { return FileStamp(cert_path_) + "|" + FileStamp(key_path_); }

StatusOr<std::shared_ptr<TlsContextProvider>> TlsContextProvider::Create(const std::string& cert_path,
                                                                         const std::string& key_path) {
  std::shared_ptr<TlsContextProvider> p(new TlsContextProvider());
  p->cert_path_ = cert_path;
  p->key_path_ = key_path;
  p->stamp_ = p->Stamp();
  U2_ASSIGN_OR_RETURN(p->context_, Load(cert_path, key_path));
  p->next_check_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  return p;
}

std::shared_ptr<boost::asio::ssl::context> TlsContextProvider::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now >= next_check_) {
    next_check_ = now + std::chrono::seconds(1);
    if (const std::string stamp = Stamp(); stamp != stamp_) {
      auto fresh = Load(cert_path_, key_path_);
      if (fresh.ok()) {
        context_ = std::move(fresh).value();
        stamp_ = stamp;
        spdlog::info("TLS: reloaded {} and {}", cert_path_, key_path_);
      } else {
        // Mid-rotation (one file written, not the other yet): keep serving the old pair.
        spdlog::warn("TLS: {}; keeping the previous certificate", fresh.status().message());
      }
    }
  }
  return context_;
}

}  // namespace u2::server
