#include "u2/model/asr_model.h"

#include <filesystem>

#include "u2/model/decoder.h"
#include "u2/model/encoder.h"
#include "u2/model/weights.h"

namespace u2 {

Status ModelLoadOptions::Validate() const {
  if (num_threads < 1 || num_threads > 256) {
    return InvalidArgument("ModelLoadOptions.num_threads must be in [1, 256], got " +
                           std::to_string(num_threads));
  }
  return Status::Ok();
}

std::string ModelLoadOptions::ToString() const {
  std::string s =
      "ModelLoadOptions{num_threads=" + std::to_string(num_threads) + ", device=" + DeviceTypeName(device);
  if (device == DeviceType::kCuda) s.append(":").append(std::to_string(device_index));
  s += std::string(", precision=") + PrecisionName(precision) + "}";
  return s;
}

Status EncodeOptions::Validate() const {
  if (decoding_chunk_size == 0 || decoding_chunk_size < -1) {
    return InvalidArgument("decoding_chunk_size must be -1 (full context) or > 0, got " +
                           std::to_string(decoding_chunk_size));
  }
  if (num_decoding_left_chunks < -1) {
    return InvalidArgument("num_decoding_left_chunks must be >= -1, got " +
                           std::to_string(num_decoding_left_chunks));
  }
  return Status::Ok();
}

Status StreamingOptions::Validate() const {
  if (decoding_chunk_size <= 0) {
    return InvalidArgument("streaming decoding_chunk_size must be > 0, got " +
                           std::to_string(decoding_chunk_size));
  }
  if (num_decoding_left_chunks < -1) {
    return InvalidArgument("num_decoding_left_chunks must be >= -1, got " +
                           std::to_string(num_decoding_left_chunks));
  }
  return Status::Ok();
}

std::vector<float> EncoderOutput::EncoderFrames(int b) const {
  if (b < 0 || b >= batch_size() || lengths[b] == 0 || encoder_out.empty()) return {};
  const float* src = encoder_out.f32() + static_cast<size_t>(offsets[b]) * dim;
  if (backend) return backend->DownloadRows(src, lengths[b], dim, dim);
  return std::vector<float>(src, src + static_cast<size_t>(lengths[b]) * dim);  // host tensor
}

AsrModel::AsrModel() = default;
AsrModel::~AsrModel() = default;

StatusOr<std::shared_ptr<const AsrModel>> AsrModel::Load(const std::string& model_dir,
                                                         const ModelLoadOptions& options) {
  U2_RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<AsrModel> model(new AsrModel());
  U2_ASSIGN_OR_RETURN(model->config_, ModelConfig::FromFile(model_dir + "/model.json"));
  BackendOptions bo;
  bo.device = options.device;
  bo.device_index = options.device_index;
  bo.num_threads = options.num_threads;
  bo.precision = options.precision;
  U2_ASSIGN_OR_RETURN(model->backend_, CreateBackend(bo));
  const std::string weights_path = model_dir + "/model.safetensors";
  auto file = SafeTensorsFile::Open(weights_path);
  if (!file.ok()) return file.status().WithContext("loading " + weights_path);
  WeightLoader loader(*file, model->backend_);
  const ModelConfig& c = model->config_;
  if (c.encoder.do_rel_shift && options.device != DeviceType::kCpu) {
    return Unimplemented(model_dir +
                         ": a squeezeformer with do_rel_shift runs on the CPU only (its shifted "
                         "positional scores have no CUDA kernel yet)");
  }
  if (const int grouped = c.encoder.group_size * c.encoder.head_dim();
      options.device != DeviceType::kCpu && !c.encoder.group_layer_idx.empty() && grouped > 128) {
    return Unimplemented(model_dir + ": grouped attention with group_size × head dim " +
                         std::to_string(grouped) +
                         " > 128 runs on the CPU only (the CUDA attention kernel takes head dims up to 128)");
  }
  auto loaded = Encoder::Load(c, loader, model->backend_);
  if (!loaded.ok()) return loaded.status().WithContext(model_dir);
  model->encoder_ = std::move(loaded).value();
  if (c.HasDecoder()) {
    const bool bi = c.decoder.type == DecoderType::kBiTransformer;
    // The decoders share the encoder's sinusoid table unless the encoder is wider than its output
    // (Squeezeformer's final_proj): then the converter stores the decoders' own table.
    Tensor decoder_pos = model->encoder_->pos_table();
    const std::string own_table = bi ? "decoder.left_decoder.embed.1.pe" : "decoder.embed.1.pe";
    if (c.encoder.width() != c.encoder.output_size) {
      auto table = loader.Device(own_table, {1, c.max_positions, c.encoder.output_size});
      if (!table.ok()) return table.status().WithContext(model_dir);
      decoder_pos = table->Reshape({c.max_positions, c.encoder.output_size});
    }
    auto left = TransformerDecoder::Load(c, loader, bi ? "decoder.left_decoder." : "decoder.",
                                         c.decoder.num_blocks, decoder_pos, model->backend_);
    if (!left.ok()) return left.status().WithContext(model_dir);
    model->left_decoder_ = std::move(left).value();
    if (c.HasRightDecoder()) {
      auto right = TransformerDecoder::Load(c, loader, "decoder.right_decoder.", c.decoder.r_num_blocks,
                                            decoder_pos, model->backend_);
      if (!right.ok()) return right.status().WithContext(model_dir);
      model->right_decoder_ = std::move(right).value();
    }
  }
  return std::shared_ptr<const AsrModel>(std::move(model));
}

std::unique_ptr<Workspace> AsrModel::AcquireWorkspace() const {
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!pool_.empty()) {
      std::unique_ptr<Workspace> ws = std::move(pool_.back());
      pool_.pop_back();
      return ws;
    }
  }
  return std::make_unique<Workspace>(*backend_);
}

void AsrModel::ReleaseWorkspace(std::unique_ptr<Workspace> ws) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  pool_.push_back(std::move(ws));
}

// Returns the workspace to the pool on every exit path.
class AsrModel::WorkspaceLease {
 public:
  explicit WorkspaceLease(const AsrModel& m) : model_(m), ws_(m.AcquireWorkspace()) {}
  ~WorkspaceLease() { model_.ReleaseWorkspace(std::move(ws_)); }
  Workspace& get() { return *ws_; }

 private:
  const AsrModel& model_;
  std::unique_ptr<Workspace> ws_;
};

StatusOr<EncoderOutput> AsrModel::Encode(std::span<const FeatureView> feats,
                                         const EncodeOptions& options) const {
  U2_RETURN_IF_ERROR(options.Validate());
  EncoderOutput out;
  WorkspaceLease ws(*this);
  U2_RETURN_IF_ERROR(encoder_->Forward(feats, options, ws.get(), &out));
  U2_RETURN_IF_ERROR(backend_->Synchronize());
  out.backend = backend_;
  return out;
}

StatusOr<std::vector<HypothesisScores>> AsrModel::ScoreHypotheses(
    const EncoderOutput& enc, std::span<const std::vector<std::vector<int>>> hyps_per_utt) const {
  if (!left_decoder_) return FailedPrecondition("this model has no attention decoder");
  if (hyps_per_utt.size() != enc.lengths.size() || enc.offsets.size() != enc.lengths.size()) {
    return InvalidArgument("ScoreHypotheses: " + std::to_string(hyps_per_utt.size()) +
                           " n-best lists for an encoder output of " + std::to_string(enc.lengths.size()) +
                           " utterances");
  }
  if (enc.dim != config_.encoder.output_size) {
    return InvalidArgument("ScoreHypotheses: encoder output dim " + std::to_string(enc.dim) + " != model's " +
                           std::to_string(config_.encoder.output_size));
  }
  const int m_enc = enc.encoder_out.empty() ? 0 : static_cast<int>(enc.encoder_out.dim(0));
  if (!enc.encoder_out.empty() && (enc.encoder_out.device() != backend_->device() ||
                                   enc.encoder_out.rank() != 2 || enc.encoder_out.dim(1) != enc.dim)) {
    return InvalidArgument("ScoreHypotheses: encoder_out " + enc.encoder_out.ShapeString() + " on " +
                           DeviceTypeName(enc.encoder_out.device()) + " does not fit this model");
  }
  for (size_t b = 0; b < enc.lengths.size(); ++b) {
    if (enc.lengths[b] < 0 || enc.offsets[b] < 0 || enc.offsets[b] + enc.lengths[b] > m_enc) {
      return InvalidArgument("ScoreHypotheses: utterance " + std::to_string(b) + " rows [" +
                             std::to_string(enc.offsets[b]) + ", +" + std::to_string(enc.lengths[b]) +
                             ") lie outside encoder_out's " + std::to_string(m_enc) + " rows");
    }
  }
  const int V = config_.vocab_size;
  std::vector<DecoderSequence> l2r, r2l;
  for (size_t b = 0; b < hyps_per_utt.size(); ++b) {
    for (size_t i = 0; i < hyps_per_utt[b].size(); ++i) {
      const std::vector<int>& y = hyps_per_utt[b][i];
      if (static_cast<int>(y.size()) + 1 > config_.max_positions) {
        return InvalidArgument("ScoreHypotheses: hypothesis " + std::to_string(i) + " of utterance " +
                               std::to_string(b) + " has " + std::to_string(y.size()) +
                               " tokens, more than " + std::to_string(config_.max_positions - 1));
      }
      for (int t : y) {
        if (t < 0 || t >= V) {
          return InvalidArgument("ScoreHypotheses: hypothesis " + std::to_string(i) + " of utterance " +
                                 std::to_string(b) + " has token id " + std::to_string(t) + " outside [0, " +
                                 std::to_string(V) + ")");
        }
      }
      DecoderSequence s;
      s.utterance = static_cast<int>(b);
      s.inputs.push_back(config_.sos_id);
      s.inputs.insert(s.inputs.end(), y.begin(), y.end());
      s.targets.assign(y.begin(), y.end());
      s.targets.push_back(config_.eos_id);
      l2r.push_back(s);
      if (right_decoder_) {
        DecoderSequence rs;
        rs.utterance = s.utterance;
        rs.inputs.push_back(config_.sos_id);
        rs.inputs.insert(rs.inputs.end(), y.rbegin(), y.rend());
        rs.targets.assign(y.rbegin(), y.rend());
        rs.targets.push_back(config_.eos_id);
        r2l.push_back(std::move(rs));
      }
    }
  }
  WorkspaceLease ws(*this);
  std::vector<float> l2r_scores, r2l_scores;
  U2_RETURN_IF_ERROR(left_decoder_->Score(enc, l2r, ws.get(), &l2r_scores));
  if (right_decoder_) U2_RETURN_IF_ERROR(right_decoder_->Score(enc, r2l, ws.get(), &r2l_scores));
  U2_RETURN_IF_ERROR(backend_->Synchronize());
  std::vector<HypothesisScores> out(hyps_per_utt.size());
  size_t k = 0;
  for (size_t b = 0; b < hyps_per_utt.size(); ++b) {
    for (size_t i = 0; i < hyps_per_utt[b].size(); ++i, ++k) {
      out[b].l2r.push_back(l2r_scores[k]);
      if (right_decoder_) out[b].r2l.push_back(r2l_scores[k]);
    }
  }
  return out;
}

std::unique_ptr<EncoderStream> AsrModel::NewStream() const {
  auto st = std::make_unique<EncoderStream>();
  st->model_ = this;
  encoder_->InitStream(st.get());
  return st;
}

StatusOr<EncoderOutput> AsrModel::ForwardChunk(std::span<EncoderStream* const> streams,
                                               std::span<const FeatureView> chunks,
                                               const StreamingOptions& options) const {
  U2_RETURN_IF_ERROR(options.Validate());
  if (streams.size() != chunks.size()) {
    return InvalidArgument("ForwardChunk: " + std::to_string(streams.size()) + " streams but " +
                           std::to_string(chunks.size()) + " chunks");
  }
  for (size_t b = 0; b < streams.size(); ++b) {
    if (streams[b] == nullptr || streams[b]->model_ != this) {
      return InvalidArgument("ForwardChunk: stream " + std::to_string(b) + " was not made by this model");
    }
    for (size_t c = 0; c < b; ++c) {
      if (streams[c] == streams[b])
        return InvalidArgument("ForwardChunk: a stream appears twice in one batch");
    }
  }
  EncoderOutput out;
  WorkspaceLease ws(*this);
  U2_RETURN_IF_ERROR(encoder_->ForwardChunk(streams, chunks, options, ws.get(), &out));
  U2_RETURN_IF_ERROR(backend_->Synchronize());
  out.backend = backend_;
  return out;
}

StatusOr<EncoderOutput> AsrModel::StreamEncoderOutput(std::span<const EncoderStream* const> streams) const {
  const int D = config_.encoder.output_size;
  EncoderOutput out;
  out.dim = D;
  std::vector<float> packed;
  int m = 0;
  for (const EncoderStream* st : streams) {
    if (st == nullptr || st->model_ != this) return InvalidArgument("StreamEncoderOutput: foreign stream");
    out.lengths.push_back(st->num_frames());
    out.offsets.push_back(m);
    m += st->num_frames();
    packed.insert(packed.end(), st->encoder_frames().begin(), st->encoder_frames().end());
  }
  out.ctc_log_probs.assign(streams.size(), {});
  out.encoder_out = backend_->Upload(packed, {m, D});
  out.backend = backend_;
  return out;
}

}  // namespace u2
