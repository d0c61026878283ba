// The WeNet encoder (Conformer or Transformer layers) and its CTC head, over a packed batch.
//
// Data layout: the rows of all utterances are stacked (M = Σ T′_b rows of D floats), so every
// position-wise GEMM (QKV, FFN, pointwise convs, CTC) runs once over the whole batch; attention and
// the depthwise convolution work per utterance through row segments. Nothing is padded, so a
// batched utterance computes exactly what it computes alone.
//
// Streaming (WeNet forward_chunk, docs/wenet-numerics.md §4.1) fits the same layer code: a chunk's rows are
// the queries, its attention segment points at a per-stream K|V cache holding history + the chunk
// (AttentionSegment.kv_row/k_pos), and the depthwise conv reads its K−1 frames of history from the
// stream's conv cache (DepthwiseSegment.history, post-GLU values).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "u2/model/asr_model.h"
#include "u2/model/weights.h"

namespace u2 {

struct EncoderLayerWeights {
  // Conformer: norm_ff_macaron, norm_mha, norm_conv, norm_ff, norm_final.
  // Transformer: norm1 → norm_mha, norm2 → norm_ff.
  NormWeights norm_ff_macaron, norm_mha, norm_conv, norm_ff, norm_final;
  LinearWeights ff_macaron_w1, ff_macaron_w2, ff_w1, ff_w2;
  LinearWeights qkv;  // Wq|Wk|Wv stacked: one GEMM
  LinearWeights attn_out;
  LinearWeights linear_pos;  // rel-pos only
  Tensor pos_bias_u, pos_bias_v;
  // Convolution module. The depthwise weight is (K, D) with BatchNorm folded in.
  LinearWeights pointwise_conv1, pointwise_conv2;
  Tensor depthwise_weight, depthwise_bias;
  Tensor glu_of_bias;  // GLU(pointwise_conv1.bias): what causal left padding becomes (docs/wenet-numerics.md
                       // §3.7)
  Tensor initial_conv_history;  // (K−1, D) rows of glu_of_bias (or zeros): a new stream's conv cache
  NormWeights conv_layer_norm;  // cnn_module_norm = layer_norm
};

// How one layer reaches the rest of the batch: attention over the packed QKV (offline: each
// utterance's own rows; streaming: each stream's K|V cache), the depthwise conv's segments, and a
// hook after the conv module (streaming updates its conv cache there).
struct LayerContext {
  // qkv: m × 3D (Q|K|V, bias added); writes the m × D attention output to `out`.
  std::function<void(int layer, const float* qkv, float* out, Workspace& ws)> attention;
  std::span<const DepthwiseSegment> conv_segments;
  std::function<void(int layer, const float* glu)> after_conv;  // optional
};

class ConformerEncoder {
 public:
  static StatusOr<std::unique_ptr<ConformerEncoder>> Load(const ModelConfig& config,
                                                          const WeightLoader& loader,
                                                          std::shared_ptr<const Backend> backend);

  Status Forward(std::span<const FeatureView> feats, const EncodeOptions& options, Workspace& ws,
                 EncoderOutput* out) const;

  // One chunk per stream (WeNet forward_chunk, docs/wenet-numerics.md §4.1), all streams in one packed batch.
  // Streams whose chunk gives no encoder frame are left untouched (length 0).
  Status ForwardChunk(std::span<EncoderStream* const> streams, std::span<const FeatureView> chunks,
                      const StreamingOptions& options, Workspace& ws, EncoderOutput* out) const;
  void InitStream(EncoderStream* stream) const;

  // The sinusoid table (max_len × D) shared with the decoders.
  const Tensor& pos_table() const { return pos_table_; }

 private:
  ConformerEncoder(const ModelConfig& config, std::shared_ptr<const Backend> backend)
      : config_(config), backend_(std::move(backend)) {}

  // CMVN + conv subsampling of one utterance into `conv_out` (T′ × F′·D).
  void Subsample(const FeatureView& f, Workspace& ws, float* conv_out) const;
  // CMVN + subsampling + embedding linear (×√D, +PE) of a packed batch into x (M × D);
  // positions[b] is the first encoder position of entry b (0 offline, the stream offset streaming).
  void Embed(std::span<const FeatureView> feats, const std::vector<int>& lengths,
             const std::vector<int>& offsets, const std::vector<int>& positions, int m, Workspace& ws,
             float* x) const;
  // One layer over the packed batch, in place on x (M × D).
  void Layer(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const;
  // after_norm + CTC head over the packed output rows; fills encoder_out and ctc_log_probs.
  void Finish(const float* x, int m, Workspace& ws, EncoderOutput* out) const;
  AttentionParams AttentionTemplate(const EncoderLayerWeights& w) const;

  ModelConfig config_;
  std::shared_ptr<const Backend> backend_;
  Tensor cmvn_mean_, cmvn_istd_;
  // Subsampling convs, weights reordered to (out, kh, kw, in) for channels-last im2col.
  std::vector<Conv2dParams> convs_;
  std::vector<Tensor> conv_weights_, conv_biases_;
  std::vector<std::shared_ptr<const PreparedWeight>> conv_prepared_;  // conv_weights_ as GEMM weights
  LinearWeights embed_out_;  // input columns reordered from c·F′+f to f·D+c
  Tensor pos_table_;
  std::vector<EncoderLayerWeights> layers_;
  NormWeights after_norm_;
  LinearWeights ctc_;
};

}  // namespace u2
