#include "u2/server/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <climits>
#include <filesystem>
#include <sstream>
#include <thread>

#include "u2/engine/recognizer.h"
#include "u2/model/model_config.h"
#include "u2/server/grpc_api.h"
#include "u2/server/http_api.h"
#include "u2/server/http_server.h"
#include "u2/server/inference.h"
#include "u2/server/websocket_session.h"

namespace u2::server {

// ---------------------------------------------------------------------------------------------
// Config

Status ServerConfig::LoadYaml(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return InvalidArgument("cannot read config " + path + ": " + e.what());
  }
  if (!root.IsMap()) return InvalidArgument(path + ": expected a mapping of option names to values");
  try {
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      std::replace(key.begin(), key.end(), '-', '_');
      const YAML::Node& v = kv.second;
      if (key == "model_dir" || key == "model_dirs") {
        model_dirs.clear();
        if (v.IsSequence()) {
          for (const auto& e : v) model_dirs.push_back(e.as<std::string>());
        } else {
          model_dirs.push_back(v.as<std::string>());
        }
      } else if (key == "bind")
        bind_address = v.as<std::string>();
      else if (key == "http_port")
        http_port = v.as<int>();
      else if (key == "grpc_port")
        grpc_port = v.as<int>();
      else if (key == "metrics_port")
        metrics_port = v.as<int>();
      else if (key == "threads")
        threads = v.as<int>();
      else if (key == "device")
        device = v.as<std::string>();
      else if (key == "precision")
        precision = v.as<std::string>();
      else if (key == "workers")
        workers = v.as<int>();
      else if (key == "http_threads")
        http_threads = v.as<int>();
      else if (key == "max_batch_size")
        max_batch_size = v.as<int>();
      else if (key == "max_queue_delay_us")
        max_queue_delay_us = v.as<int64_t>();
      else if (key == "preferred_batch_size" || key == "preferred_batch_sizes") {
        preferred_batch_sizes.clear();
        if (v.IsSequence()) {
          for (const auto& e : v) preferred_batch_sizes.push_back(e.as<int>());
        } else {
          preferred_batch_sizes.push_back(v.as<int>());
        }
      } else if (key == "max_queue_size")
        max_queue_size = v.as<int>();
      else if (key == "length_aware_batching")
        length_aware_batching = v.as<bool>();
      else if (key == "max_request_bytes")
        max_request_bytes = v.as<int64_t>();
      else if (key == "beam")
        beam = v.as<int>();
      else if (key == "ctc_weight")
        ctc_weight = v.as<double>();
      else if (key == "reverse_weight")
        reverse_weight = v.as<double>();
      else if (key == "drain_timeout_s")
        drain_timeout_s = v.as<int>();
      else if (key == "max_streams")
        max_streams = v.as<int>();
      else if (key == "stream_idle_timeout_ms")
        stream_idle_timeout_ms = v.as<int64_t>();
      else if (key == "max_stream_batch")
        max_stream_batch = v.as<int>();
      else if (key == "stream_batch_delay_us")
        stream_batch_delay_us = v.as<int64_t>();
      else if (key == "stream_workers")
        stream_workers = v.as<int>();
      else if (key == "stream_chunk_size")
        stream_chunk_size = v.as<int>();
      else if (key == "stream_left_chunks")
        stream_left_chunks = v.as<int>();
      else if (key == "config") {
        // ignore: a config file naming itself
      } else {
        return InvalidArgument(path + ": unknown option '" + kv.first.as<std::string>() + "'");
      }
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ": bad value: " + e.what());
  }
  return Status::Ok();
}

Status ServerConfig::Validate() const {
  if (model_dirs.empty()) return InvalidArgument("no model given (--model-dir)");
  for (int port : {http_port, grpc_port, metrics_port}) {
    if (port < -1 || port > 65535)
      return InvalidArgument("port " + std::to_string(port) + " is outside [-1, 65535]");
  }
  if (threads < 1 || threads > 256) return InvalidArgument("threads must be in [1, 256]");
  U2_RETURN_IF_ERROR(ParseDeviceType(device).status().WithContext("device"));
  U2_RETURN_IF_ERROR(ParsePrecision(precision).status().WithContext("precision"));
  if (http_threads < 1 || http_threads > 256) return InvalidArgument("http_threads must be in [1, 256]");
  if (max_request_bytes < 1024) return InvalidArgument("max_request_bytes must be >= 1024");
  if (drain_timeout_s < 0) return InvalidArgument("drain_timeout_s must be >= 0");
  if (max_streams < 0) return InvalidArgument("max_streams must be >= 0 (0: no streaming)");
  if (max_streams > 0) U2_RETURN_IF_ERROR(StreamConfig().Validate());
  if (stream_chunk_size < 1) return InvalidArgument("stream_chunk_size must be >= 1");
  if (stream_left_chunks < -1) return InvalidArgument("stream_left_chunks must be >= -1 (-1: all)");
  OfflineBatcherConfig b;
  b.max_batch_size = max_batch_size;
  b.max_queue_delay_us = max_queue_delay_us;
  b.preferred_batch_sizes = preferred_batch_sizes;
  b.num_workers = workers;
  b.max_queue_size = max_queue_size;
  return b.Validate();
}

std::string ServerConfig::ToString() const {
  std::ostringstream os;
  os << "ServerConfig(model_dirs=[";
  for (size_t i = 0; i < model_dirs.size(); ++i) os << (i ? ", " : "") << model_dirs[i];
  os << "], bind=" << bind_address << ", http_port=" << http_port << ", grpc_port=" << grpc_port
     << ", metrics_port=" << metrics_port << ", threads=" << threads << ", device=" << device
     << ", precision=" << precision << ", workers=" << workers << ", max_batch_size=" << max_batch_size
     << ", max_queue_delay_us=" << max_queue_delay_us << ", preferred_batch_sizes=[";
  for (size_t i = 0; i < preferred_batch_sizes.size(); ++i) os << (i ? "," : "") << preferred_batch_sizes[i];
  os << "], max_queue_size=" << max_queue_size << ", length_aware_batching=" << length_aware_batching
     << ", max_request_bytes=" << max_request_bytes << ", max_streams=" << max_streams
     << ", stream_idle_timeout_ms=" << stream_idle_timeout_ms << ", max_stream_batch=" << max_stream_batch
     << ", stream_batch_delay_us=" << stream_batch_delay_us << ", stream_workers=" << stream_workers
     << ", stream_chunk_size=" << stream_chunk_size << ", stream_left_chunks=" << stream_left_chunks << ")";
  return os.str();
}

StreamSchedulerConfig ServerConfig::StreamConfig() const {
  StreamSchedulerConfig c;
  c.max_streams = max_streams;
  c.max_batch_streams = max_stream_batch;
  c.idle_timeout_ms = stream_idle_timeout_ms;
  c.max_batch_delay_us = stream_batch_delay_us;
  c.num_workers = stream_workers;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Server

namespace {

StatusOr<std::unique_ptr<StreamScheduler>> MakeStreamScheduler(const ServerConfig& config,
                                                               std::shared_ptr<const Recognizer> rec) {
  U2_ASSIGN_OR_RETURN(std::unique_ptr<StreamingRecognizer> streaming, StreamingRecognizer::Create(rec));
  std::shared_ptr<const StreamingRecognizer> shared = std::move(streaming);
  return StreamScheduler::Create(shared, config.StreamConfig());
}

}  // namespace

struct Server::Impl {
  ServerConfig config;
  std::vector<std::shared_ptr<const Recognizer>> recognizers;
  std::vector<std::unique_ptr<OfflineBatcher>> batchers;
  std::vector<std::unique_ptr<StreamScheduler>> schedulers;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<inference::GRPCInferenceService::CallbackService> grpc_service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<HttpServer> metrics;
  int grpc_port = -1;
  std::mutex shutdown_mu;
  bool shut_down = false;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(); }

int Server::http_port() const { return impl_->http ? impl_->http->port() : -1; }
int Server::grpc_port() const { return impl_->grpc_port; }
int Server::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : -1; }

StatusOr<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  U2_RETURN_IF_ERROR(config.Validate());
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  ServingOptions serving;
  serving.max_batch_size = config.max_batch_size;
  serving.max_sequence_batch_size = 512;  // WeNet's streaming_wenet config
  serving.preferred_batch_sizes = config.preferred_batch_sizes;
  serving.max_queue_delay_us = config.max_queue_delay_us;
  impl->service = std::make_unique<InferenceService>(serving);

  // Names: NAME=PATH, else the directory's name; with one model dir the modes are the plain
  // model names (WeNet's clients expect "attention_rescoring"), with several "<NAME>-<mode>".
  std::vector<std::pair<std::string, std::string>> dirs;
  for (const std::string& spec : config.model_dirs) {
    const size_t eq = spec.find('=');
    std::string name, path;
    if (eq != std::string::npos) {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    } else {
      path = spec;
      name = std::filesystem::path(spec).lexically_normal().filename().string();
      if (name.empty())
        name = std::filesystem::path(spec).lexically_normal().parent_path().filename().string();
    }
    if (name.empty() || name.find('/') != std::string::npos) {
      return InvalidArgument("bad model name '" + name + "' for " + spec + " (use NAME=PATH)");
    }
    for (const auto& [n, p] : dirs) {
      if (n == name) return InvalidArgument("two model dirs are both named '" + name + "'; use NAME=PATH");
    }
    dirs.emplace_back(name, path);
  }

  for (const auto& [dir_name, path] : dirs) {
    RecognizerConfig rc;
    rc.model_dir = path;
    rc.num_threads = config.threads;
    U2_ASSIGN_OR_RETURN(rc.device, ParseDeviceType(config.device));
    U2_ASSIGN_OR_RETURN(rc.precision, ParsePrecision(config.precision));
    if (config.beam > 0) rc.beam = config.beam;
    if (config.ctc_weight >= 0) rc.ctc_weight = static_cast<float>(config.ctc_weight);
    if (config.reverse_weight >= 0) rc.reverse_weight = static_cast<float>(config.reverse_weight);
    const auto t0 = std::chrono::steady_clock::now();
    auto created = Recognizer::Create(rc);
    if (!created.ok()) return created.status().WithContext("loading model " + path);
    std::shared_ptr<const Recognizer> rec = std::move(created).value();
    impl->recognizers.push_back(rec);
    spdlog::info("loaded {} from {} in {:.2f} s ({} Hz, defaults {})", dir_name, path,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 rec->sample_rate(), rec->default_options().ToString());

    OfflineBatcherConfig bc;
    bc.max_batch_size = config.max_batch_size;
    bc.max_queue_delay_us = config.max_queue_delay_us;
    bc.preferred_batch_sizes = config.preferred_batch_sizes;
    bc.num_workers = config.workers;
    bc.max_queue_size = config.max_queue_size;
    bc.length_aware = config.length_aware_batching;
    auto batcher =
        OfflineBatcher::Create(bc, [rec](std::span<const Waveform> batch, const DecodingOptions& o) {
          return rec->Recognize(batch, o);
        });
    if (!batcher.ok()) return batcher.status();
    OfflineBatcher* raw_batcher = batcher->get();
    impl->batchers.push_back(std::move(batcher).value());

    const int64_t max_samples_16k =
        static_cast<int64_t>(static_cast<double>(rec->max_samples()) * 16000.0 / rec->sample_rate());
    for (DecodingMode mode :
         {DecodingMode::kAttentionRescoring, DecodingMode::kCtcGreedy, DecodingMode::kCtcPrefixBeamSearch}) {
      auto m = std::make_unique<ServedModel>();
      m->name = dirs.size() == 1 ? DecodingModeName(mode) : dir_name + "-" + DecodingModeName(mode);
      m->model_dir = path;
      m->defaults = rec->default_options();
      m->defaults.mode = mode;
      m->defaults.nbest = 1;
      m->recognizer = rec;
      m->batcher = raw_batcher;
      m->max_samples = max_samples_16k;
      m->validate_options = [rec](const DecodingOptions& o) { return o.Validate(rec->model_config()); };
      if (mode == DecodingMode::kAttentionRescoring && !rec->model_config().HasDecoder()) {
        spdlog::warn("{}: no attention decoder, not serving {}", dir_name, m->name);
        continue;
      }
      if (Status s = m->validate_options(m->defaults); !s.ok()) {
        return s.WithContext("decoding defaults of " + m->name);
      }
      spdlog::info("serving model '{}' ({})", m->name, m->defaults.ToString());
      impl->service->AddModel(std::move(m));
    }
    if (config.max_streams > 0) {
      const std::string name = dirs.size() == 1 ? "streaming_wenet" : dir_name + "-streaming_wenet";
      auto scheduler = MakeStreamScheduler(config, rec);
      if (!scheduler.ok()) {
        // E.g. a model that cannot decode chunk by chunk: serve it offline only.
        spdlog::warn("{}: not serving {}: {}", dir_name, name, scheduler.status().ToString());
        continue;
      }
      auto m = std::make_unique<ServedModel>();
      m->name = name;
      m->model_dir = path;
      m->defaults = rec->default_options();
      m->recognizer = rec;
      m->streams = scheduler->get();
      m->stream_defaults = (*scheduler)->recognizer().default_options();
      m->stream_defaults.decoding_chunk_size = config.stream_chunk_size;
      m->stream_defaults.num_decoding_left_chunks = config.stream_left_chunks;
      if (config.beam > 0) m->stream_defaults.beam = config.beam;
      m->stream_defaults.nbest = 1;
      if (config.ctc_weight >= 0) m->stream_defaults.ctc_weight = static_cast<float>(config.ctc_weight);
      if (config.reverse_weight >= 0)
        m->stream_defaults.reverse_weight = static_cast<float>(config.reverse_weight);
      m->stream_defaults.rescoring = rec->model_config().HasDecoder();
      if (Status s = m->stream_defaults.Validate(rec->model_config()); !s.ok()) {
        return s.WithContext("streaming defaults of " + name);
      }
      // One request is one chunk; the engine limits the whole stream's length.
      m->max_samples = max_samples_16k;
      spdlog::info("serving model '{}' ({}; {})", m->name, m->stream_defaults.ToString(),
                   (*scheduler)->config().ToString());
      impl->schedulers.push_back(std::move(scheduler).value());
      impl->service->AddModel(std::move(m));
    }
  }

  InferenceService* service = impl->service.get();
  if (config.grpc_port >= 0) {
    impl->grpc_service = MakeGrpcService(service);
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config.bind_address + ":" + std::to_string(config.grpc_port),
                             grpc::InsecureServerCredentials(), &impl->grpc_port);
    builder.RegisterService(impl->grpc_service.get());
    builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(config.max_request_bytes, INT_MAX)));
    builder.SetMaxSendMessageSize(INT_MAX);
    impl->grpc_server = builder.BuildAndStart();
    if (!impl->grpc_server || impl->grpc_port <= 0) {
      return Unavailable("cannot listen for gRPC on " + config.bind_address + ":" +
                         std::to_string(config.grpc_port));
    }
  }
  if (config.http_port >= 0) {
    HttpServerConfig hc;
    hc.bind_address = config.bind_address;
    hc.port = config.http_port;
    hc.num_threads = config.http_threads;
    hc.max_body_bytes = static_cast<uint64_t>(config.max_request_bytes);
    // The HTTP port also carries WebSocket streaming (/ws) and the web page (/).
    auto web = std::make_shared<WebSocketFrontEnd>(service);
    U2_ASSIGN_OR_RETURN(impl->http, HttpServer::Start(hc, web->WrapHandler(MakeRestHandler(service)), web));
  }
  if (config.metrics_port >= 0) {
    HttpServerConfig mc;
    mc.bind_address = config.bind_address;
    mc.port = config.metrics_port;
    mc.num_threads = 1;
    mc.max_body_bytes = 1 << 16;
    U2_ASSIGN_OR_RETURN(impl->metrics, HttpServer::Start(mc, MakeMetricsHandler(service)));
  }
  service->SetReady(true);
  if (impl->grpc_server) impl->grpc_server->GetHealthCheckService()->SetServingStatus(true);
  std::unique_ptr<Server> server(new Server(std::move(impl)));
  spdlog::info("u2serve ready: gRPC {}:{}, HTTP {}:{}, metrics {}:{}", config.bind_address,
               server->grpc_port(), config.bind_address, server->http_port(), config.bind_address,
               server->metrics_port());
  return server;
}

void Server::Shutdown() {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  InferenceService* service = impl_->service.get();
  service->StartDraining();
  if (impl_->grpc_server) impl_->grpc_server->GetHealthCheckService()->SetServingStatus(false);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(impl_->config.drain_timeout_s);
  while (service->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (service->in_flight() > 0) {
    spdlog::warn("shutdown: {} requests still in flight after {} s", service->in_flight(),
                 impl_->config.drain_timeout_s);
  }
  // Live sequences hold no request; their queued feeds (none after the drain, unless it timed
  // out) are answered UNAVAILABLE.
  for (auto& s : impl_->schedulers) s->Shutdown();
  // Responses already handed to the transports get a moment to go out.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (impl_->grpc_server)
    impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (impl_->http) impl_->http->Stop();
  if (impl_->metrics) impl_->metrics->Stop();
  for (auto& b : impl_->batchers) b->Shutdown();
  spdlog::info("u2serve stopped");
}

}  // namespace u2::server
