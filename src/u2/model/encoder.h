// The WeNet encoder (Conformer or Transformer layers) and its CTC head, over a packed batch.
//
// Data layout: the rows of all utterances are stacked (M = Σ T′_b rows of D floats), so every
// position-wise GEMM (QKV, FFN, pointwise convs, CTC) runs once over the whole batch; attention and
// the depthwise convolution work per utterance through row segments. Nothing is padded, so a
// batched utterance computes exactly what it computes alone.
//
// Streaming (WeNet forward_chunk, spec §4.1) fits the same layer code: a chunk's rows are the
// queries, its attention segment points at a per-stream K|V cache holding history + the chunk
// (AttentionSegment.kv_row/k_pos), and the depthwise conv reads its K−1 frames of history from the
// stream's conv cache (DepthwiseSegment.history, post-GLU values).
#pragma once

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
  Tensor glu_of_bias;           // GLU(pointwise_conv1.bias): what causal left padding becomes (spec §3.7)
  NormWeights conv_layer_norm;  // cnn_module_norm = layer_norm
};

class ConformerEncoder {
 public:
  static StatusOr<std::unique_ptr<ConformerEncoder>> Load(const ModelConfig& config,
                                                          const WeightLoader& loader,
                                                          std::shared_ptr<const Backend> backend);

  Status Forward(std::span<const FeatureView> feats, const EncodeOptions& options, Workspace& ws,
                 EncoderOutput* out) const;

  // The sinusoid table (max_len × D) shared with the decoders.
  const Tensor& pos_table() const { return pos_table_; }

 private:
  ConformerEncoder(const ModelConfig& config, std::shared_ptr<const Backend> backend)
      : config_(config), backend_(std::move(backend)) {}

  // CMVN + conv subsampling of one utterance into `conv_out` (T′ × F′·D).
  void Subsample(const FeatureView& f, Workspace& ws, float* conv_out) const;
  // One layer over the packed batch, in place on x (M × D).
  void Layer(int index, float* x, int m, std::span<const AttentionSegment> attn_segs,
             std::span<const DepthwiseSegment> conv_segs, const AttentionParams& attn_template,
             const float* pos_proj, Workspace& ws) const;

  ModelConfig config_;
  std::shared_ptr<const Backend> backend_;
  Tensor cmvn_mean_, cmvn_istd_;
  // Subsampling convs, weights reordered to (out, kh, kw, in) for channels-last im2col.
  std::vector<Conv2dParams> convs_;
  std::vector<Tensor> conv_weights_, conv_biases_;
  LinearWeights embed_out_;  // input columns reordered from c·F′+f to f·D+c
  Tensor pos_table_;
  std::vector<EncoderLayerWeights> layers_;
  NormWeights after_norm_;
  LinearWeights ctc_;
};

}  // namespace u2
