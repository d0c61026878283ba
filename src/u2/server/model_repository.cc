#include "u2/server/model_repository.h"

#include <algorithm>
#include <filesystem>

#include "u2/server/kserve_types.h"

namespace u2::server {

void ModelRepository::Add(std::unique_ptr<ServedModel> model) { models_.push_back(std::move(model)); }

StatusOr<ServedModel*> ModelRepository::Find(const std::string& name, const std::string& version) const {
  for (const auto& m : models_) {
    if (m->name != name) continue;
    if (!version.empty() && version != kModelVersion) {
      return NotFound("Request for unknown model: '" + name + "' version " + version + " is not found");
    }
    return m.get();
  }
  return NotFound("Request for unknown model: '" + name + "' is not found");
}

StatusOr<ServedModel*> ModelRepository::FindStreaming(const std::string& name) const {
  std::vector<ServedModel*> streaming;
  for (const auto& m : models_) {
    if (m->streaming()) streaming.push_back(m.get());
  }
  if (streaming.empty()) return NotFound("this server serves no streaming model");
  if (name.empty()) return streaming.front();
  for (ServedModel* m : streaming) {
    if (m->name == name) return m;
  }
  for (ServedModel* m : streaming) {
    if (m->name.rfind(name + "-", 0) == 0 ||
        std::filesystem::path(m->model_dir).lexically_normal().filename().string() == name) {
      return m;
    }
  }
  std::string names;
  for (ServedModel* m : streaming) names += (names.empty() ? "" : ", ") + m->name;
  return NotFound("no streaming model named '" + name + "' (streaming models: " + names + ")");
}

std::vector<ServedModel*> ModelRepository::models() const {
  std::vector<ServedModel*> out;
  for (const auto& m : models_) out.push_back(m.get());
  return out;
}

int ModelRepository::pending_requests() const {
  int n = 0;
  std::vector<const OfflineBatcher*> seen;
  for (const auto& m : models_) {
    if (!m->batcher || std::find(seen.begin(), seen.end(), m->batcher) != seen.end()) continue;
    seen.push_back(m->batcher);
    n += m->batcher->queued_tasks();
  }
  return n;
}

std::vector<std::string> ModelRepository::Extensions() const {
  std::vector<std::string> e = {"model_configuration", "binary_tensor_data", "parameters", "statistics"};
  if (std::any_of(models_.begin(), models_.end(), [](const auto& m) { return m->streaming(); })) {
    e.push_back("sequence");
  }
  return e;
}

inference::ModelMetadataResponse ModelRepository::Metadata(const ServedModel& m) const {
  inference::ModelMetadataResponse r;
  r.set_name(m.name);
  r.add_versions(kModelVersion);
  r.set_platform(kPlatform);
  auto* wav = r.add_inputs();
  wav->set_name("WAV");
  wav->set_datatype("FP32");
  wav->add_shape(-1);
  wav->add_shape(-1);
  auto* lens = r.add_inputs();
  lens->set_name("WAV_LENS");
  lens->set_datatype("INT32");
  lens->add_shape(-1);
  lens->add_shape(1);
  auto* out = r.add_outputs();
  out->set_name("TRANSCRIPTS");
  out->set_datatype("BYTES");
  out->add_shape(-1);
  out->add_shape(1);
  return r;
}

StatusOr<inference::ModelStatisticsResponse> ModelRepository::Statistics(const std::string& name,
                                                                         const std::string& version) const {
  inference::ModelStatisticsResponse resp;
  std::vector<ServedModel*> chosen;
  if (name.empty()) {
    chosen = models();
  } else {
    U2_ASSIGN_OR_RETURN(ServedModel * m, Find(name, version));
    chosen.push_back(m);
  }
  for (ServedModel* m : chosen) ToProto(m->name, m->stats.Get(), resp.add_model_stats());
  return resp;
}

namespace {

void AddSequenceBatching(const ServedModel& m, inference::ModelConfig* c) {
  // WeNet's model_repo_stateful: sequence batching, oldest strategy, the control tensors its
  // Python models see (internal here: clients never send them).
  const StreamSchedulerConfig& sc = m.streams->config();
  auto* sb = c->mutable_sequence_batching();
  sb->set_max_sequence_idle_microseconds(static_cast<uint64_t>(sc.idle_timeout_ms) * 1000);
  auto* oldest = sb->mutable_oldest();
  oldest->set_max_candidate_sequences(sc.max_streams);
  oldest->add_preferred_batch_size(sc.max_batch_streams);
  oldest->set_max_queue_delay_microseconds(static_cast<uint64_t>(sc.max_batch_delay_us));
  using Control = inference::ModelSequenceBatching::Control;
  auto control = [&](const char* name, Control::Kind kind) {
    auto* ci = sb->add_control_input();
    ci->set_name(name);
    auto* ctl = ci->add_control();
    ctl->set_kind(kind);
    if (kind == Control::CONTROL_SEQUENCE_CORRID) {
      ctl->set_data_type(inference::TYPE_UINT64);
    } else {
      ctl->add_fp32_false_true(0);
      ctl->add_fp32_false_true(1);
    }
  };
  control("START", Control::CONTROL_SEQUENCE_START);
  control("READY", Control::CONTROL_SEQUENCE_READY);
  control("END", Control::CONTROL_SEQUENCE_END);
  control("CORRID", Control::CONTROL_SEQUENCE_CORRID);
}

}  // namespace

inference::ModelConfig ModelRepository::Config(const ServedModel& m) const {
  inference::ModelConfig c;
  c.set_name(m.name);
  c.set_backend(kPlatform);
  c.mutable_version_policy()->mutable_latest()->set_num_versions(1);
  auto* wav = c.add_input();
  wav->set_name("WAV");
  wav->set_data_type(inference::TYPE_FP32);
  wav->add_dims(-1);
  auto* lens = c.add_input();
  lens->set_name("WAV_LENS");
  lens->set_data_type(inference::TYPE_INT32);
  lens->add_dims(1);
  auto* out = c.add_output();
  out->set_name("TRANSCRIPTS");
  out->set_data_type(inference::TYPE_STRING);
  out->add_dims(1);
  auto* group = c.add_instance_group();
  group->set_name(m.name);
  group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  auto param = [&](const std::string& k, const std::string& v) {
    (*c.mutable_parameters())[k].set_string_value(v);
  };
  if (m.streaming()) {
    c.set_max_batch_size(kMaxSequenceBatchSize);
    AddSequenceBatching(m, &c);
    group->set_count(m.streams->config().num_workers);
    const StreamOptions& o = m.stream_defaults;
    param("decoding_chunk_size", std::to_string(o.decoding_chunk_size));
    param("num_decoding_left_chunks", std::to_string(o.num_decoding_left_chunks));
    param("beam", std::to_string(o.beam));
    param("rescoring", o.rescoring ? "1" : "0");
    param("ctc_weight", std::to_string(o.ctc_weight));
    param("reverse_weight", std::to_string(o.reverse_weight));
  } else {
    const OfflineBatcherConfig batching = m.batcher ? m.batcher->config() : OfflineBatcherConfig{};
    c.set_max_batch_size(batching.max_batch_size);
    auto* db = c.mutable_dynamic_batching();
    for (int p : batching.preferred_batch_sizes) db->add_preferred_batch_size(p);
    db->set_max_queue_delay_microseconds(static_cast<uint64_t>(batching.max_queue_delay_us));
    group->set_count(batching.num_workers);
    param("decoding_mode", DecodingModeName(m.defaults.mode));
    param("beam", std::to_string(m.defaults.beam));
    param("ctc_weight", std::to_string(m.defaults.ctc_weight));
    param("reverse_weight", std::to_string(m.defaults.reverse_weight));
  }
  param("model_dir", m.model_dir);
  c.mutable_model_transaction_policy()->set_decoupled(false);
  c.mutable_response_cache()->set_enable(false);
  return c;
}

}  // namespace u2::server
