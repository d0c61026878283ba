// The Branchformer layer (WeNet wenet/branchformer, Peng et al. 2022) and the E-Branchformer layer
// (wenet/e_branchformer, Kim et al. 2022). Both run two branches on the same input and merge them:
//
//   attention branch:  x1 = MHA(LN_mha(x))                  (the Conformer's self-attention)
//   cgMLP branch:      x2 = cgMLP(LN_mlp(x))
//   cgMLP(h) = proj2( a ⊙ gate(b) ),  [a | b] = GELU(proj1(h)),
//              gate(b) = act(linear?(dwconv(LN(b))))        (convolutional spatial gating unit)
//
//   Branchformer:   x = LN_final(x + merge_proj(cat[x1, x2]))           merge_method "concat"
//                   x = LN_final(x + merge_proj((1−w)·x1 + w·x2))       merge_method "fixed_ave"
//                   (with one branch only, that branch alone; merge_proj may then be absent)
//   E-Branchformer: x = x + ½·FFN_macaron(LN(x))
//                   c = cat[x1, x2];  x = x + merge_proj(c + dwconv_fusion(c))
//                   x = LN_final(x + ½·FFN(LN(x)))
//
// Causal models pad the depthwise convs on the left only. WeNet pads the cgMLP gate with zeros
// BEFORE its LayerNorm, so the padding is worth LN(0) = the norm's bias after it; that is the pad
// value here, and a stream's initial history. E-Branchformer's fusion conv: WeNet's forward_chunk
// pads every chunk with zeros instead of carrying the previous chunk's frames; here a stream
// carries them, so streaming equals the chunk-masked forward the model was trained with
// (docs/wenet-crosscheck.md records WeNet's difference).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/model/encoder_layer.h"

namespace u2 {

// The convolutional gating MLP of both layer kinds.
struct CgmlpWeights {
  LinearWeights channel_proj1;  // D → U
  NormWeights gate_norm;        // over U/2
  Tensor conv_weight;           // (K, U/2)
  Tensor conv_bias;             // (U/2) or empty
  LinearWeights linear;         // U/2 → U/2, use_linear_after_conv only
  LinearWeights channel_proj2;  // U/2 → D
  int history = -1;             // its entry in ConvHistories(), -1 when it has none

  // `prefix` names the module, e.g. "encoder.encoders.0.cgmlp". Appends a causal conv's initial
  // history to `histories`.
  static StatusOr<CgmlpWeights> Load(const EncoderConfig& e, const WeightLoader& loader,
                                     const std::string& prefix, std::vector<Tensor>* histories);
  // y (m × D, ldy) = scale·cgMLP(in); `in` is m × D contiguous.
  void Forward(const Backend& be, const EncoderConfig& e, int layer, const float* in, int m, float scale,
               float* y, int ldy, const LayerContext& ctx, Workspace& ws) const;
};

class BranchformerLayer final : public EncoderLayer {
 public:
  // `index` picks the block's cgmlp_weight.
  static StatusOr<std::unique_ptr<BranchformerLayer>> Load(const EncoderConfig& e, int index,
                                                           const WeightLoader& loader,
                                                           const std::string& prefix,
                                                           std::shared_ptr<const Backend> backend);
  void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const override;
  const std::vector<Tensor>& ConvHistories() const override { return conv_histories_; }

 private:
  BranchformerLayer(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  bool has_attention_ = false, has_cgmlp_ = false;
  float cgmlp_weight_ = 0.5f;  // fixed_ave
  NormWeights norm_mha_, norm_mlp_, norm_final_;
  AttentionWeights attention_;
  CgmlpWeights cgmlp_;
  LinearWeights merge_proj_;  // empty weight: identity (one branch built)
  std::vector<Tensor> conv_histories_;
};

class EBranchformerLayer final : public EncoderLayer {
 public:
  static StatusOr<std::unique_ptr<EBranchformerLayer>> Load(const EncoderConfig& e,
                                                            const WeightLoader& loader,
                                                            const std::string& prefix,
                                                            std::shared_ptr<const Backend> backend);
  void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const override;
  const std::vector<Tensor>& ConvHistories() const override { return conv_histories_; }

 private:
  EBranchformerLayer(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  bool has_ffn_ = false, has_macaron_ = false;
  NormWeights norm_ff_macaron_, norm_ff_, norm_mha_, norm_mlp_, norm_final_;
  FeedForwardWeights ff_macaron_, ff_;
  AttentionWeights attention_;
  CgmlpWeights cgmlp_;
  Tensor fusion_weight_;  // (K, 2D)
  Tensor fusion_bias_;    // (2D)
  int fusion_history_ = -1;
  LinearWeights merge_proj_;  // 2D → D
  std::vector<Tensor> conv_histories_;
};

}  // namespace u2
