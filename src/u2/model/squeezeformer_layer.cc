#include "u2/model/squeezeformer_layer.h"

#include <algorithm>

namespace u2 {
namespace {
constexpr float kLayerNormEps = 1e-5f;  // nn.LayerNorm(size) everywhere in WeNet's squeezeformer
}  // namespace

StatusOr<std::unique_ptr<SqueezeformerLayer>> SqueezeformerLayer::Load(
    const EncoderConfig& e, const WeightLoader& loader, const std::string& p,
    std::shared_ptr<const Backend> backend) {
  std::unique_ptr<SqueezeformerLayer> l(new SqueezeformerLayer(e, std::move(backend)));
  const int E = e.width();
  const int F = e.linear_units;
  for (int i = 0; i < 4; ++i) {
    U2_ASSIGN_OR_RETURN(l->layer_norm_[i],
                        loader.Norm(p + "layer_norm" + std::to_string(i + 1), E, kLayerNormEps));
  }
  std::unique_ptr<InputAffine> attn_affine, ffn1_affine, ffn2_affine, conv_affine;
  if (e.adaptive_scale) {
    U2_ASSIGN_OR_RETURN(InputAffine a, loader.AdaptiveScale(p + "self_attn", E));
    attn_affine = std::make_unique<InputAffine>(std::move(a));
    U2_ASSIGN_OR_RETURN(InputAffine f1, loader.AdaptiveScale(p + "ffn1", E));
    ffn1_affine = std::make_unique<InputAffine>(std::move(f1));
    U2_ASSIGN_OR_RETURN(InputAffine f2, loader.AdaptiveScale(p + "ffn2", E));
    ffn2_affine = std::make_unique<InputAffine>(std::move(f2));
    U2_ASSIGN_OR_RETURN(InputAffine c, loader.AdaptiveScale(p + "conv_module", E));
    conv_affine = std::make_unique<InputAffine>(std::move(c));
  }
  U2_ASSIGN_OR_RETURN(l->attention_,
                      AttentionWeights::Load(e, loader, p + "self_attn", 1, attn_affine.get()));
  l->attention_.rel_shift = e.do_rel_shift;
  auto ffn = [&](const std::string& name, const InputAffine* affine) -> StatusOr<FeedForwardWeights> {
    if (!affine) return FeedForwardWeights::Load(loader, p + name, E, F);
    FeedForwardWeights w;
    U2_ASSIGN_OR_RETURN(w.w1, loader.FoldedLinear({p + name + ".w_1"}, {F, E}, E, F, *affine));
    U2_ASSIGN_OR_RETURN(w.w2, loader.Linear(p + name + ".w_2", F, E));
    return w;
  };
  U2_ASSIGN_OR_RETURN(l->ffn1_, ffn("ffn1", ffn1_affine.get()));
  U2_ASSIGN_OR_RETURN(l->ffn2_, ffn("ffn2", ffn2_affine.get()));
  U2_ASSIGN_OR_RETURN(l->conv_, ConvModuleWeights::Load(e, loader, p + "conv_module", e.cnn_module_kernel,
                                                        conv_affine.get(), &l->conv_histories_));
  return l;
}

void SqueezeformerLayer::Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_;
  const int E = e.width();
  const int F = e.linear_units;
  float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(m) * E);
  auto residual_norm = [&](int norm, const float* bias) {
    const LayerNormParams ln = layer_norm_[norm].params();
    be.AddResidual(x, tmp, E, bias, 1.0f, m, E, &ln, x);
  };
  {
    float* qkv = ws.Floats(kSlotBig, static_cast<size_t>(m) * 3 * E);
    float* att = ws.Floats(kSlotAtt, static_cast<size_t>(m) * E);
    attention_.qkv.Forward(be, x, m, E, qkv, 3 * E);
    ctx.attention(index, attention_, qkv, att, ws);
    attention_.out.Apply(be, att, m, E, tmp, E);
    residual_norm(0, attention_.out.b());
  }
  auto feed_forward = [&](const FeedForwardWeights& ff, int norm) {
    float* hidden = ws.Floats(kSlotBig, static_cast<size_t>(m) * F);
    ff.w1.Forward(be, x, m, E, hidden, F, e.activation);
    ff.w2.Apply(be, hidden, m, F, tmp, E);
    residual_norm(norm, ff.w2.b());
  };
  feed_forward(ffn1_, 1);
  {
    float* h = ws.Floats(kSlotH, static_cast<size_t>(m) * E);
    conv_.Depthwise(be, index, x, m, E, ctx, ws, h);
    conv_.pointwise_conv2.Apply(be, h, m, E, tmp, E);
    residual_norm(2, conv_.pointwise_conv2.b());
  }
  feed_forward(ffn2_, 3);
}

StatusOr<std::unique_ptr<SqueezeformerTimeReduction>> SqueezeformerTimeReduction::Load(
    const EncoderConfig& e, const WeightLoader& loader, std::shared_ptr<const Backend> backend) {
  std::unique_ptr<SqueezeformerTimeReduction> r(new SqueezeformerTimeReduction(e, std::move(backend)));
  const int E = e.width();
  r->kernel_ = e.time_reduction == TimeReductionType::kConv1d ? 5 : 1;
  r->left_pad_ = e.time_reduction == TimeReductionType::kConv1d ? 3 : 0;
  const std::string p = "encoder.time_reduction_layer.";
  U2_RETURN_IF_ERROR(loader.DepthwiseConv(p + "dw_conv", E, r->kernel_, &r->dw_weight_, &r->dw_bias_));
  r->pw_conv_.in = E;
  r->pw_conv_.out = E;
  U2_RETURN_IF_ERROR(loader.LoadLinearWeight(p + "pw_conv.weight", {E, E, 1}, &r->pw_conv_));
  U2_ASSIGN_OR_RETURN(r->pw_conv_.bias, loader.OptionalDevice(p + "pw_conv.bias", {E}));
  U2_ASSIGN_OR_RETURN(r->recover_, loader.Linear("encoder.time_recover_layer", E, E));
  return r;
}

TimeGrid SqueezeformerTimeReduction::Reduce(float* x, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const int E = config_.width();
  const TimeGrid& grid = *ctx.grid;
  const TimeGrid reduced = grid.Subsampled(2);
  // The strided conv is the stride-1 conv (zeros beyond each sequence) read at frames 2r.
  float* conv = ws.Floats(kSlotH, static_cast<size_t>(grid.rows) * E);
  DepthwiseConvParams dp;
  dp.channels = E;
  dp.kernel = kernel_;
  dp.left_pad = left_pad_;
  dp.weight = dw_weight_.f32();
  dp.bias = dw_bias_.f32();
  ctx.depthwise(0, -1, dp, x, conv);  // no stream history: WeNet's reduction has no cache
  std::vector<int> picked;
  for (const RowSegment& r : grid.Segments()) {
    for (int j = 0; j < reduced.lengths[r.pos]; ++j) picked.push_back(r.row + 2 * j);
  }
  float* every_other = ws.Floats(kSlotTmp, static_cast<size_t>(reduced.rows) * E);
  be.GatherRows(every_other, E, conv, E, picked, E);
  pw_conv_.Forward(be, every_other, reduced.rows, E, x, E);
  return reduced;
}

void SqueezeformerTimeReduction::Recover(float* x, const TimeGrid& reduced, const float* saved,
                                         const TimeGrid& full, Workspace& ws) const {
  const Backend& be = *backend_;
  const int E = config_.width();
  // The linear of a repeated row is the repeated linear: project the reduced rows, then repeat.
  float* projected = ws.Floats(kSlotH, static_cast<size_t>(reduced.rows) * E);
  recover_.Forward(be, x, reduced.rows, E, projected, E);
  std::vector<int> rows;
  for (size_t b = 0; b < full.lengths.size(); ++b) {
    for (int t = 0; t < full.lengths[b]; ++t) rows.push_back(reduced.offsets[b] + t / 2);
  }
  be.GatherRows(x, E, projected, E, rows, E);
  be.AddResidual(x, saved, E, nullptr, 1.0f, full.rows, E, nullptr, nullptr);
}

}  // namespace u2
