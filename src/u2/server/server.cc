#include "u2/server/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <spdlog/spdlog.h>

#include <climits>
#include <filesystem>
#include <fstream>
#include <thread>

#include "u2/backend/cpu/cpu_backend.h"
#include "u2/engine/recognizer.h"
#include "u2/model/model_config.h"
#include "u2/server/grpc_api.h"
#include "u2/server/http_api.h"
#include "u2/server/http_router.h"
#include "u2/server/inference.h"
#include "u2/server/memory_trimmer.h"
#include "u2/server/model_repository.h"
#include "u2/server/openai_api.h"
#include "u2/server/websocket_session.h"

namespace u2::server {
namespace {

// "NAME=PATH" or "PATH" (named after the directory) for every --model-dir.
StatusOr<std::vector<std::pair<std::string, std::string>>> NamedModelDirs(
    const std::vector<std::string>& specs) {
  std::vector<std::pair<std::string, std::string>> dirs;
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    std::string name, path;
    if (eq != std::string::npos) {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    } else {
      path = spec;
      const auto normal = std::filesystem::path(spec).lexically_normal();
      name = normal.filename().string();
      if (name.empty()) name = normal.parent_path().filename().string();
    }
    if (name.empty() || name.find('/') != std::string::npos) {
      return InvalidArgument("bad model name '" + name + "' for " + spec + " (use NAME=PATH)");
    }
    for (const auto& [n, p] : dirs) {
      if (n == name) return InvalidArgument("two model dirs are both named '" + name + "'; use NAME=PATH");
    }
    dirs.emplace_back(name, path);
  }
  return dirs;
}

Status CheckReadable(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) return InvalidArgument("cannot read " + what + " " + path);
  return Status::Ok();
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcCredentials(const GrpcConfig& c) {
  if (!c.use_ssl && !c.use_ssl_mutual) return grpc::InsecureServerCredentials();
  U2_RETURN_IF_ERROR(CheckReadable(c.server_cert, "--grpc-server-cert"));
  U2_RETURN_IF_ERROR(CheckReadable(c.server_key, "--grpc-server-key"));
  if (!c.root_cert.empty()) U2_RETURN_IF_ERROR(CheckReadable(c.root_cert, "--grpc-root-cert"));
  // The files are watched: a renewed certificate is served without a restart.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      c.server_key, c.server_cert, c.root_cert, static_cast<unsigned>(c.cert_refresh_s));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!c.root_cert.empty()) options.watch_root_certs();
  options.set_cert_request_type(c.use_ssl_mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                 : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace

struct Server::Impl {
  ServerConfig config;
  std::vector<std::shared_ptr<const Recognizer>> recognizers;
  std::vector<std::unique_ptr<OfflineBatcher>> batchers;
  std::vector<std::unique_ptr<StreamScheduler>> schedulers;
  ModelRepository models;
  std::unique_ptr<LongAudioRecognizer> long_audio;  // null: no VAD, long recordings refused
  std::unique_ptr<InferenceService> service;
  std::shared_ptr<ApiKeys> keys;
  std::unique_ptr<grpc::Service> grpc_service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::shared_ptr<WebSocketFrontEnd> websocket;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<HttpServer> metrics;
  std::unique_ptr<MemoryTrimmer> trimmer;
  int grpc_port = -1;
  std::mutex shutdown_mu;
  bool shut_down = false;

  Status LoadModels();
  Status AddModelDir(const std::string& dir_name, const std::string& path, bool several);
  Status StartGrpc();
  Status StartHttp();
};

Status Server::Impl::LoadModels() {
  if (std::filesystem::exists(config.long_audio.vad_model_dir)) {
    U2_ASSIGN_OR_RETURN(long_audio, LongAudioRecognizer::Create(config.long_audio));
    spdlog::info("long recordings: segmented by the VAD in {} ({})", config.long_audio.vad_model_dir,
                 config.long_audio.vad.ToString());
  } else {
    spdlog::warn("no VAD at {} (--vad-model-dir): recordings longer than a model takes whole are refused",
                 config.long_audio.vad_model_dir);
  }
  U2_ASSIGN_OR_RETURN(auto dirs, NamedModelDirs(config.model_dirs));
  for (const auto& [name, path] : dirs) U2_RETURN_IF_ERROR(AddModelDir(name, path, dirs.size() > 1));
  return Status::Ok();
}

// One model dir: its recognizer and batcher, served under the offline decoding modes' names and,
// if it can stream, the streaming name. With one model dir the names are the plain mode names
// (WeNet's clients expect "attention_rescoring"); with several, "<NAME>-<mode>".
Status Server::Impl::AddModelDir(const std::string& dir_name, const std::string& path, bool several) {
  RecognizerConfig rc = config.recognizer;
  rc.model_dir = path;
  U2_ASSIGN_OR_RETURN(const DeviceSpec device, ParseDevice(config.device));
  rc.device = device.type;
  rc.device_index = device.index;
  U2_ASSIGN_OR_RETURN(rc.precision, ParsePrecision(config.precision));
  const auto t0 = std::chrono::steady_clock::now();
  auto created = Recognizer::Create(rc);
  if (!created.ok()) return created.status().WithContext("loading model " + path);
  std::shared_ptr<const Recognizer> rec = std::move(created).value();
  recognizers.push_back(rec);
  for (const std::string& w : rec->warnings()) spdlog::warn("{}: {}", dir_name, w);
  spdlog::info("loaded {} from {} in {:.2f} s ({} Hz, backend {}, defaults {})", dir_name, path,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               rec->sample_rate(), rec->model()->backend().Name(), rec->default_options().ToString());
  if (rc.device == DeviceType::kCpu) {
    static const std::string blas_warning = cpu::OpenBlasCoreWarning();
    if (!blas_warning.empty()) spdlog::warn("{}", blas_warning);
  }

  U2_ASSIGN_OR_RETURN(
      auto batcher, OfflineBatcher::Create(config.batcher,
                                           [rec](std::span<const Waveform> batch, const DecodingOptions& o) {
                                             return rec->Recognize(batch, o);
                                           }));
  OfflineBatcher* raw_batcher = batcher.get();
  batchers.push_back(std::move(batcher));

  const int64_t max_samples =
      static_cast<int64_t>(static_cast<double>(rec->max_samples()) * kWireSampleRate / rec->sample_rate());
  auto name_of = [&](const std::string& mode) { return several ? dir_name + "-" + mode : mode; };
  for (DecodingMode mode :
       {DecodingMode::kAttentionRescoring, DecodingMode::kCtcGreedy, DecodingMode::kCtcPrefixBeamSearch}) {
    auto m = std::make_unique<ServedModel>();
    m->name = name_of(DecodingModeName(mode));
    m->model_dir = path;
    m->recognizer = rec;
    m->model_config = rec->model_config();
    m->defaults = rec->default_options();
    m->defaults.mode = mode;
    m->defaults.nbest = 1;
    m->batcher = raw_batcher;
    m->max_samples = max_samples;
    m->long_audio = long_audio.get();
    if (mode == DecodingMode::kAttentionRescoring && !m->model_config.HasDecoder()) {
      spdlog::warn("{}: no attention decoder, not serving {}", dir_name, m->name);
      continue;
    }
    U2_RETURN_IF_ERROR(m->defaults.Validate(m->model_config).WithContext("decoding defaults of " + m->name));
    spdlog::info("serving model '{}' ({})", m->name, m->defaults.ToString());
    models.Add(std::move(m));
  }
  if (config.streams.max_streams == 0) return Status::Ok();
  const std::string name = name_of("streaming_wenet");
  if (config.stream_defaults.vad_gate && !long_audio) {
    return FailedPrecondition("--stream-vad-gate needs the VAD (--vad-model-dir " +
                              config.long_audio.vad_model_dir + " does not exist)");
  }
  auto streaming = StreamingRecognizer::Create(rec, long_audio ? long_audio->shared_vad() : nullptr);
  StatusOr<std::unique_ptr<StreamScheduler>> scheduler =
      streaming.ok() ? StreamScheduler::Create(
                           std::shared_ptr<const StreamingRecognizer>(std::move(*streaming)), config.streams)
                     : StatusOr<std::unique_ptr<StreamScheduler>>(streaming.status());
  if (!scheduler.ok()) {
    // E.g. a model that cannot decode chunk by chunk: serve it offline only.
    spdlog::warn("{}: not serving {}: {}", dir_name, name, scheduler.status().ToString());
    return Status::Ok();
  }
  auto m = std::make_unique<ServedModel>();
  m->name = name;
  m->model_dir = path;
  m->recognizer = rec;
  m->model_config = rec->model_config();
  m->defaults = rec->default_options();
  m->streams = scheduler->get();
  m->stream_defaults = (*scheduler)->recognizer().default_options();
  if (config.stream_defaults.chunk_size > 0)
    m->stream_defaults.decoding_chunk_size = config.stream_defaults.chunk_size;
  m->stream_defaults.num_decoding_left_chunks = config.stream_defaults.left_chunks;
  m->stream_defaults.vad_gate = config.stream_defaults.vad_gate;
  m->stream_defaults.vad = config.long_audio.vad;
  if (config.recognizer.beam) m->stream_defaults.beam = *config.recognizer.beam;
  if (config.recognizer.ctc_weight) m->stream_defaults.ctc_weight = *config.recognizer.ctc_weight;
  if (config.recognizer.reverse_weight) m->stream_defaults.reverse_weight = *config.recognizer.reverse_weight;
  m->stream_defaults.nbest = 1;
  m->stream_defaults.rescoring = m->model_config.HasDecoder();
  U2_RETURN_IF_ERROR(
      m->stream_defaults.Validate(m->model_config).WithContext("streaming defaults of " + name));
  // One request is one chunk; the engine limits the whole stream's length.
  m->max_samples = max_samples;
  spdlog::info("serving model '{}' ({}; {})", m->name, m->stream_defaults.ToString(),
               (*scheduler)->config().ToString());
  schedulers.push_back(std::move(scheduler).value());
  models.Add(std::move(m));
  return Status::Ok();
}

Status Server::Impl::StartGrpc() {
  if (config.grpc.port < 0) return Status::Ok();
  U2_ASSIGN_OR_RETURN(auto credentials, GrpcCredentials(config.grpc));
  grpc_service = MakeGrpcService(service.get(), keys);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.bind_address + ":" + std::to_string(config.grpc.port), credentials,
                           &grpc_port);
  builder.RegisterService(grpc_service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint64_t>(config.http.max_body_bytes, INT_MAX)));
  builder.SetMaxSendMessageSize(INT_MAX);
  grpc_server = builder.BuildAndStart();
  if (!grpc_server || grpc_port <= 0) {
    return Unavailable("cannot listen for gRPC on " + config.bind_address + ":" +
                       std::to_string(config.grpc.port));
  }
  return Status::Ok();
}

Status Server::Impl::StartHttp() {
  InferenceService* svc = service.get();
  if (config.http.port >= 0) {
    HttpServerConfig hc = config.http;
    hc.bind_address = config.bind_address;
    // The HTTP port also carries the OpenAI API (/v1), WebSocket streaming (/ws) and the web page (/).
    websocket = std::make_shared<WebSocketFrontEnd>(svc, config.websocket);
    HttpRouter router;
    router.Add("/v2", MakeRestHandler(svc));
    router.Add("/v1", MakeOpenAiHandler(svc));
    router.SetFallback(websocket->PageHandler());
    U2_ASSIGN_OR_RETURN(http, HttpServer::Start(hc, router.Handler(), websocket, MakeAuthFilter(keys)));
  }
  if (config.metrics.port >= 0) {
    HttpServerConfig mc;
    mc.bind_address = config.bind_address;
    mc.port = config.metrics.port;
    mc.num_threads = 1;
    mc.max_body_bytes = 1 << 16;
    mc.ssl_cert = config.http.ssl_cert;
    mc.ssl_key = config.http.ssl_key;
    std::function<WebSocketCounters()> ws_counters;
    if (websocket) ws_counters = [ws = websocket] { return ws->stats(); };
    RequestFilter filter = keys->protects_health() ? MakeAuthFilter(keys) : nullptr;
    U2_ASSIGN_OR_RETURN(metrics,
                        HttpServer::Start(mc, MakeMetricsHandler(&models, ws_counters), nullptr, filter));
  }
  return Status::Ok();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(); }

int Server::http_port() const { return impl_->http ? impl_->http->port() : -1; }
int Server::grpc_port() const { return impl_->grpc_port; }
int Server::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : -1; }

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  U2_RETURN_IF_ERROR(config.Validate());
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  U2_ASSIGN_OR_RETURN(impl->keys, ApiKeys::Create(config.auth));
  U2_RETURN_IF_ERROR(impl->LoadModels());
  impl->service = std::make_unique<InferenceService>(&impl->models, config.unknown_sequence_retryable);
  U2_RETURN_IF_ERROR(impl->StartGrpc());
  U2_RETURN_IF_ERROR(impl->StartHttp());
  impl->trimmer = std::make_unique<MemoryTrimmer>(config.memory_trim_interval_s);
  impl->service->SetReady(true);
  if (impl->grpc_server) impl->grpc_server->GetHealthCheckService()->SetServingStatus(true);
  std::unique_ptr<Server> server(new Server(std::move(impl)));
  spdlog::info("u2serve ready: gRPC {}:{}{}, HTTP {}:{}{}, metrics {}:{}{}", config.bind_address,
               server->grpc_port(), config.grpc.use_ssl || config.grpc.use_ssl_mutual ? " (TLS)" : "",
               config.bind_address, server->http_port(), config.http.tls() ? " (TLS)" : "",
               config.bind_address, server->metrics_port(),
               config.auth.api_keys_file.empty() ? "" : "; API keys required");
  return server;
}

void Server::Shutdown() {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  InferenceService* service = impl_->service.get();
  if (service) service->StartDraining();
  if (impl_->grpc_server) impl_->grpc_server->GetHealthCheckService()->SetServingStatus(false);
  // The drain: queued and running requests finish, and so do live streams (Triton sequences,
  // WebSocket and bidirectional-gRPC streams) whose clients keep feeding them to their end;
  // everything new is refused as retryable meanwhile. --drain-timeout-s bounds the wait.
  auto live_streams = [this] {
    int n = 0;
    for (const auto& s : impl_->schedulers) n += s->stats().live_streams;
    return n;
  };
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(impl_->config.drain_timeout_s);
  auto next_report = start + std::chrono::seconds(5);
  int requests = service ? service->in_flight() : 0, streams = live_streams();
  if (requests > 0 || streams > 0) {
    spdlog::info("draining: {} requests in flight, {} live streams (at most {} s)", requests, streams,
                 impl_->config.drain_timeout_s);
  }
  while ((requests > 0 || streams > 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    requests = service ? service->in_flight() : 0;
    streams = live_streams();
    if (std::chrono::steady_clock::now() >= next_report) {
      spdlog::info("draining: {} requests in flight, {} live streams", requests, streams);
      next_report += std::chrono::seconds(5);
    }
  }
  if (requests > 0 || streams > 0) {
    spdlog::warn("shutdown: {} requests in flight and {} live streams after {} s; they are cut off", requests,
                 streams, impl_->config.drain_timeout_s);
  }
  // What is still queued (nothing, unless the drain timed out) is answered UNAVAILABLE.
  for (auto& s : impl_->schedulers) s->Shutdown();
  // Responses already handed to the transports get a moment to go out.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (impl_->grpc_server)
    impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (impl_->http) impl_->http->Stop();
  if (impl_->metrics) impl_->metrics->Stop();
  for (auto& b : impl_->batchers) b->Shutdown();
  if (impl_->trimmer) impl_->trimmer->Stop();
  spdlog::info("u2serve stopped");
}

}  // namespace u2::server
