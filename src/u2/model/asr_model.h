// The engine-facing model: a WeNet U2/U2++ encoder (Conformer, Transformer, Branchformer or
// E-Branchformer) with its CTC head and attention decoder(s), loaded from a u2serve model
// directory (docs/model-format.md).
//
// Thread safety: a loaded AsrModel is immutable; Encode and ScoreHypotheses may run concurrently
// from several threads (each call borrows its own scratch workspace from a pool).
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/model/model_config.h"
#include "u2/util/status.h"

namespace u2 {

class Encoder;
class TransformerDecoder;
class AsrModel;

struct ModelLoadOptions {
  int num_threads = 1;  // the CPU backend's thread pool (GEMM tiles, attention, row kernels)
  DeviceType device = DeviceType::kCpu;
  int device_index = 0;                    // which GPU (cuda:N)
  Precision precision = Precision::kFp32;  // GEMM operands (fp16/bf16: CUDA only; int8: CPU only)
  Status Validate() const;
  std::string ToString() const;
};

// One utterance's fbank features BEFORE CMVN: num_frames × dim row-major floats.
struct FeatureView {
  const float* data = nullptr;
  int num_frames = 0;
  int dim = 0;
};

struct EncodeOptions {
  // Attention context (WeNet's decoding_chunk_size / num_decoding_left_chunks): -1 = full
  // context; C > 0 = chunk mask of C frames with `num_decoding_left_chunks` chunks of history
  // (-1 = all). Applied as WeNet does: only for use_dynamic_chunk models (static_chunk_size > 0
  // models always use their static chunk).
  int decoding_chunk_size = -1;
  int num_decoding_left_chunks = -1;
  bool capture_layers = false;  // keep per-layer outputs (tests, debugging)
  Status Validate() const;
};

struct EncoderOutput {
  std::vector<int> lengths;                       // T′_b, encoder frames per utterance
  std::vector<std::vector<float>> ctc_log_probs;  // per utterance, T′_b × vocab_size, host
  // The encoder output kept for the attention decoder: all utterances packed row after row,
  // (Σ T′_b) × D, on the model's device; utterance b starts at row offsets[b].
  Tensor encoder_out;
  std::vector<int> offsets;
  int dim = 0;
  std::shared_ptr<const Backend> backend;  // the device encoder_out lives on
  // With capture_layers: per utterance, the embedding output (layer 0's input) and each layer's
  // output, host, T′_b × D.
  std::vector<std::vector<float>> embed;
  std::vector<std::vector<std::vector<float>>> layers;

  int batch_size() const { return static_cast<int>(lengths.size()); }
  // Host copy of utterance b's encoder output (T′_b × D).
  std::vector<float> EncoderFrames(int b) const;
};

struct HypothesisScores {
  std::vector<float> l2r;  // per hypothesis: Σ_t log p_L(y_{t+1} | y_≤t) + log p_L(eos | y)
  std::vector<float> r2l;  // same with the right-to-left decoder on the reversed hyp; empty without one
};

struct StreamingOptions {
  int decoding_chunk_size = 16;  // C: encoder frames per chunk (chunk windows hold
                                 // (C−1)·R + RC + 1 feature frames, stride C·R; docs/wenet-numerics.md §4.2)
  int num_decoding_left_chunks = -1;  // attention history kept, in chunks (-1 = all)
  Status Validate() const;
  // WeNet's required_cache_size: C × left, negative = keep everything.
  int RequiredCacheSize() const {
    return num_decoding_left_chunks < 0 ? -1 : decoding_chunk_size * num_decoding_left_chunks;
  }
};

// One utterance being encoded chunk by chunk: WeNet forward_chunk's offset, per-layer attention
// K|V cache and causal-conv cache, plus every encoder frame output so far (for rescoring at the
// end). Make one with AsrModel::NewStream(); use it with that model only, from one thread at a time.
class EncoderStream {
 public:
  // Embedding frames (encoder positions) consumed so far: WeNet forward_chunk's offset.
  int offset() const { return offset_; }
  // Encoder output frames so far (fewer than offset() when the encoder subsamples inside its stack).
  int num_frames() const { return dim_ > 0 ? static_cast<int>(encoder_frames_.size()) / dim_ : 0; }
  // K|V rows a layer holds (the most any layer does: layers after a time stride hold fewer).
  int cached_frames() const {
    int n = 0;
    for (int f : cache_frames_) n = std::max(n, f);
    return n;
  }
  // All encoder output frames so far, host, num_frames() × D.
  const std::vector<float>& encoder_frames() const { return encoder_frames_; }

 private:
  friend class Encoder;
  friend class AsrModel;
  const AsrModel* model_ = nullptr;
  int offset_ = 0;
  int dim_ = 0;
  std::vector<int> cache_frames_;    // per layer: t1, the K|V rows held
  std::vector<int> pending_frames_;  // per layer, during a chunk: t1 + the chunk's rows
  std::vector<int> capacity_;        // per layer: rows allocated
  std::vector<Tensor> att_cache_;    // per layer (capacity, 2D): [K | V] rows [0, t1)
  // Per layer, per causal depthwise conv (EncoderLayer::ConvHistories): its last K−1 input rows.
  std::vector<std::vector<Tensor>> conv_cache_;
  std::vector<float> encoder_frames_;
};

class AsrModel {
 public:
  static StatusOr<std::shared_ptr<const AsrModel>> Load(const std::string& model_dir,
                                                        const ModelLoadOptions& options = {});
  ~AsrModel();

  const ModelConfig& config() const { return config_; }
  const Backend& backend() const { return *backend_; }

  // Batched full-utterance encoder + CTC log-probs. An utterance may give at most
  // config().MaxEncoderFrames() encoder frames (else InvalidArgument); one too short for a single
  // frame (config().NumEncoderFrames(T) == 0) gets length 0 and empty log-probs.
  StatusOr<EncoderOutput> Encode(std::span<const FeatureView> feats, const EncodeOptions& options = {}) const;

  // Attention-decoder scores for n-best lists: hyps_per_utt[b] are token sequences (no sos/eos)
  // for utterance b of `enc`. All hypotheses of all utterances run as one batch.
  StatusOr<std::vector<HypothesisScores>> ScoreHypotheses(
      const EncoderOutput& enc, std::span<const std::vector<std::vector<int>>> hyps_per_utt) const;

  // ---- streaming (WeNet forward_chunk) ----
  std::unique_ptr<EncoderStream> NewStream() const;
  // Encodes one chunk of fbank frames (before CMVN) per stream, all streams in one batch. Returns
  // the chunk's encoder frames and CTC log-probs per stream (lengths[b] may be 0 when the chunk is
  // shorter than RC+1 frames). Exact (~1e-6) against the chunk-masked full forward for causal-conv
  // models; non-causal conv models stream as WeNet does (zero padding at both chunk edges).
  StatusOr<EncoderOutput> ForwardChunk(std::span<EncoderStream* const> streams,
                                       std::span<const FeatureView> chunks,
                                       const StreamingOptions& options) const;
  // The streams' accumulated encoder frames as one EncoderOutput (no CTC), for ScoreHypotheses.
  StatusOr<EncoderOutput> StreamEncoderOutput(std::span<const EncoderStream* const> streams) const;

 private:
  AsrModel();
  class WorkspaceLease;
  std::unique_ptr<Workspace> AcquireWorkspace() const;
  void ReleaseWorkspace(std::unique_ptr<Workspace> ws) const;

  ModelConfig config_;
  std::shared_ptr<const Backend> backend_;
  std::unique_ptr<Encoder> encoder_;
  std::unique_ptr<TransformerDecoder> left_decoder_;
  std::unique_ptr<TransformerDecoder> right_decoder_;
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<Workspace>> pool_;
};

}  // namespace u2
