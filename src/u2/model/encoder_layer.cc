#include "u2/model/encoder_layer.h"

#include <algorithm>

#include "u2/model/branchformer_layer.h"
#include "u2/model/conformer_layer.h"
#include "u2/model/squeezeformer_layer.h"

namespace u2 {

TimeGrid TimeGrid::FromLengths(std::vector<int> lengths, int stride) {
  TimeGrid g;
  g.stride = stride;
  g.lengths = std::move(lengths);
  g.offsets.resize(g.lengths.size());
  for (size_t b = 0; b < g.lengths.size(); ++b) {
    g.offsets[b] = g.rows;
    g.rows += g.lengths[b];
    g.max_length = std::max(g.max_length, g.lengths[b]);
  }
  return g;
}

TimeGrid TimeGrid::Subsampled(int factor) const {
  std::vector<int> sub(lengths.size());
  for (size_t b = 0; b < lengths.size(); ++b) sub[b] = (lengths[b] + factor - 1) / factor;
  return FromLengths(std::move(sub), stride * factor);
}

std::vector<RowSegment> TimeGrid::Segments() const {
  std::vector<RowSegment> segs;
  for (size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] > 0) segs.push_back({offsets[b], lengths[b], static_cast<int>(b)});
  }
  return segs;
}

StatusOr<AttentionWeights> AttentionWeights::Load(const EncoderConfig& e, const WeightLoader& loader,
                                                  const std::string& prefix, int group,
                                                  const InputAffine* affine) {
  const int D = e.width();
  const std::string p = prefix + ".";
  AttentionWeights w;
  w.group = group;
  if (affine) {
    U2_ASSIGN_OR_RETURN(
        w.qkv, loader.FoldedLinear({p + "linear_q", p + "linear_k", p + "linear_v"}, {D, D}, D, D, *affine));
  } else {
    U2_ASSIGN_OR_RETURN(w.qkv, loader.StackedLinear({p + "linear_q", p + "linear_k", p + "linear_v"}, D, D));
  }
  U2_ASSIGN_OR_RETURN(w.out, loader.Linear(p + "linear_out", D, D));
  if (e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn) {
    U2_ASSIGN_OR_RETURN(w.linear_pos, loader.Linear(p + "linear_pos", D, D));
    U2_ASSIGN_OR_RETURN(w.pos_bias_u,
                        loader.Device(p + "pos_bias_u", {e.attention_heads, group * e.head_dim()}));
    U2_ASSIGN_OR_RETURN(w.pos_bias_v,
                        loader.Device(p + "pos_bias_v", {e.attention_heads, group * e.head_dim()}));
  }
  return w;
}

StatusOr<FeedForwardWeights> FeedForwardWeights::Load(const WeightLoader& loader, const std::string& prefix,
                                                      int dim, int hidden) {
  FeedForwardWeights w;
  U2_ASSIGN_OR_RETURN(w.w1, loader.Linear(prefix + ".w_1", dim, hidden));
  U2_ASSIGN_OR_RETURN(w.w2, loader.Linear(prefix + ".w_2", hidden, dim));
  return w;
}

StatusOr<std::vector<std::unique_ptr<EncoderLayer>>> LoadEncoderLayers(
    const ModelConfig& config, const WeightLoader& loader, std::shared_ptr<const Backend> backend) {
  const EncoderConfig& e = config.encoder;
  std::vector<std::unique_ptr<EncoderLayer>> layers;
  for (int i = 0; i < e.num_blocks; ++i) {
    const std::string prefix = "encoder.encoders." + std::to_string(i) + ".";
    switch (e.type) {
      case EncoderType::kConformer:
      case EncoderType::kTransformer:
      case EncoderType::kEfficientConformer: {
        U2_ASSIGN_OR_RETURN(auto layer, ConformerLayer::Load(e, i, loader, prefix, backend));
        layers.push_back(std::move(layer));
        break;
      }
      case EncoderType::kBranchformer: {
        U2_ASSIGN_OR_RETURN(auto layer, BranchformerLayer::Load(e, i, loader, prefix, backend));
        layers.push_back(std::move(layer));
        break;
      }
      case EncoderType::kEBranchformer: {
        U2_ASSIGN_OR_RETURN(auto layer, EBranchformerLayer::Load(e, loader, prefix, backend));
        layers.push_back(std::move(layer));
        break;
      }
      case EncoderType::kSqueezeformer: {
        U2_ASSIGN_OR_RETURN(auto layer, SqueezeformerLayer::Load(e, loader, prefix, backend));
        layers.push_back(std::move(layer));
        break;
      }
    }
  }
  return layers;
}

}  // namespace u2
