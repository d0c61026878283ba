// The Squeezeformer block (WeNet wenet/squeezeformer, Kim et al. 2022) and the time reduction /
// recovery between blocks.
//
// Block, post-LN (every LayerNorm eps 1e-5):
//   x = layer_norm1(x + MHA(x))      rel-pos attention, optionally with Transformer-XL's rel_shift
//   x = layer_norm2(x + FFN1(x))     w_2(act(w_1(x))), no half step
//   x = layer_norm3(x + Conv(x))     the Conformer conv module (conv_module.h)
//   x = layer_norm4(x + FFN2(x))
// With adaptive_scale, the attention, both FFNs and the conv module first apply
// ada_scale ⊙ x + ada_bias; that affine is folded into their first linear layers at load.
//
// Time reduction, before the blocks in reduce_idx: the activation is saved, then a depthwise
// conv with stride 2 (conv1d: kernel 5 with 3 zero frames each side; stream: kernel 1) and a
// pointwise conv keep ceil(T/2) frames; later blocks see every other position and chunk-mask
// frame. Recovery, before the blocks in recover_idx: time_recover_layer on every frame repeated
// twice, cut to the saved length, plus the saved activation (the latest reduction not yet undone).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/model/conv_module.h"
#include "u2/model/encoder_layer.h"

namespace u2 {

class SqueezeformerLayer final : public EncoderLayer {
 public:
  static StatusOr<std::unique_ptr<SqueezeformerLayer>> Load(const EncoderConfig& e,
                                                            const WeightLoader& loader,
                                                            const std::string& prefix,
                                                            std::shared_ptr<const Backend> backend);
  void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const override;
  const std::vector<Tensor>& ConvHistories() const override { return conv_histories_; }

 private:
  SqueezeformerLayer(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  NormWeights layer_norm_[4];
  AttentionWeights attention_;
  FeedForwardWeights ffn1_, ffn2_;
  ConvModuleWeights conv_;
  std::vector<Tensor> conv_histories_;
};

class SqueezeformerTimeReduction {
 public:
  // encoder.time_reduction_layer.{dw_conv,pw_conv} and encoder.time_recover_layer.
  static StatusOr<std::unique_ptr<SqueezeformerTimeReduction>> Load(const EncoderConfig& e,
                                                                    const WeightLoader& loader,
                                                                    std::shared_ptr<const Backend> backend);
  // x (ctx.grid's rows) → every other frame, written to the front of x; returns the new grid.
  TimeGrid Reduce(float* x, const LayerContext& ctx, Workspace& ws) const;
  // x (`reduced` grid) → `full` grid's rows: time_recover_layer(x repeated) + saved, into x.
  void Recover(float* x, const TimeGrid& reduced, const float* saved, const TimeGrid& full,
               Workspace& ws) const;

 private:
  SqueezeformerTimeReduction(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  Tensor dw_weight_, dw_bias_;  // (K, E), (E)
  int kernel_ = 1;
  int left_pad_ = 0;
  LinearWeights pw_conv_;
  LinearWeights recover_;
};

}  // namespace u2
