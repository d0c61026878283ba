// The Conformer layer (WeNet ConformerEncoderLayer) and, without its macaron feed-forward and
// convolution module, the Transformer layer (TransformerEncoderLayer): pre- or post-norm residual
// sublayers in the order [FFN_macaron ×½] → self-attention → [conv module] → FFN [×½] → [norm_final].
//
// Efficient Conformer blocks (wenet/efficient_conformer) are Conformer layers too, with two
// options: grouped attention (AttentionWeights::group) and a time stride s (a stride block,
// StrideConformerEncoderLayer): its depthwise conv keeps every s-th frame, its residual around
// the conv module is the average of each s input frames (AvgPool1d, ceil_mode, partial windows
// averaged over the frames they have), and the FFN and final norm run at the reduced rate.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/model/conv_module.h"
#include "u2/model/encoder_layer.h"

namespace u2 {

class ConformerLayer final : public EncoderLayer {
 public:
  // `block` picks the block's conv kernel, attention group and time stride.
  static StatusOr<std::unique_ptr<ConformerLayer>> Load(const EncoderConfig& e, int block,
                                                        const WeightLoader& loader, const std::string& prefix,
                                                        std::shared_ptr<const Backend> backend);
  void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const override;
  const std::vector<Tensor>& ConvHistories() const override { return conv_histories_; }
  int time_stride() const override { return stride_; }

 private:
  ConformerLayer(const EncoderConfig& e, std::shared_ptr<const Backend> backend)
      : config_(e), backend_(std::move(backend)) {}

  EncoderConfig config_;
  std::shared_ptr<const Backend> backend_;
  int kernel_ = 0;  // the depthwise conv's
  int stride_ = 1;
  // Conformer: norm_ff_macaron, norm_mha, norm_conv, norm_ff, norm_final.
  // Transformer: norm1 → norm_mha, norm2 → norm_ff.
  NormWeights norm_ff_macaron_, norm_mha_, norm_conv_, norm_ff_, norm_final_;
  FeedForwardWeights ff_macaron_, ff_;
  AttentionWeights attention_;
  ConvModuleWeights conv_;
  // Causal conv module: (K−1, D) rows of glu_of_bias (or zeros), a new stream's conv cache.
  std::vector<Tensor> conv_histories_;
};

}  // namespace u2
