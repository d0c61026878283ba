// The Conformer layer (WeNet ConformerEncoderLayer) and, without its macaron feed-forward and
// convolution module, the Transformer layer (TransformerEncoderLayer): pre- or post-norm residual
// sublayers in the order [FFN_macaron ×½] → self-attention → [conv module] → FFN [×½] → [norm_final].
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/model/encoder_layer.h"

namespace u2 {

class ConformerLayer final : public EncoderLayer {
 public:
  static StatusOr<std::unique_ptr<ConformerLayer>> Load(const EncoderConfig& e, const WeightLoader& loader,
                                                        const std::string& prefix,
                                                        std::shared_ptr<const Backend> backend);
  void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const override;
  const std::vector<Tensor>& ConvHistories() const override { return conv_histories_; }

 private:
  ConformerLayer(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  // Conformer: norm_ff_macaron, norm_mha, norm_conv, norm_ff, norm_final.
  // Transformer: norm1 → norm_mha, norm2 → norm_ff.
  NormWeights norm_ff_macaron_, norm_mha_, norm_conv_, norm_ff_, norm_final_;
  FeedForwardWeights ff_macaron_, ff_;
  AttentionWeights attention_;
  // Convolution module. The depthwise weight is (K, D) with BatchNorm folded in.
  LinearWeights pointwise_conv1_, pointwise_conv2_;
  Tensor depthwise_weight_, depthwise_bias_;
  // GLU(pointwise_conv1.bias): what causal left padding becomes (docs/wenet-numerics.md §3.7).
  Tensor glu_of_bias_;
  NormWeights conv_layer_norm_;  // cnn_module_norm = layer_norm
  // Causal conv module: (K−1, D) rows of glu_of_bias (or zeros), a new stream's conv cache.
  std::vector<Tensor> conv_histories_;
};

}  // namespace u2
