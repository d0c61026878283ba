#include "u2/model/branchformer_layer.h"

#include <algorithm>

namespace u2 {
namespace {

// The branch layers' own LayerNorms are torch.nn.LayerNorm(size) in WeNet: eps 1e-5 whatever the
// encoder's norm_eps (which only the final after_norm uses).
constexpr float kLayerNormEps = 1e-5f;

// (K−1) rows of `row` (or zeros), a causal conv's initial history; appended to `histories`.
int AddHistory(const WeightLoader& loader, int kernel, int channels, const std::vector<float>* row,
               std::vector<Tensor>* histories) {
  std::vector<float> hist(static_cast<size_t>(kernel - 1) * channels, 0.0f);
  if (row) {
    for (int k = 0; k < kernel - 1; ++k)
      std::copy(row->begin(), row->end(), hist.begin() + static_cast<size_t>(k) * channels);
  }
  histories->push_back(loader.Upload(hist, {kernel - 1, channels}));
  return static_cast<int>(histories->size()) - 1;
}

DepthwiseConvParams ConvParams(const Tensor& weight, const Tensor& bias, int channels, int kernel,
                               bool causal) {
  DepthwiseConvParams p;
  p.channels = channels;
  p.kernel = kernel;
  p.left_pad = causal ? kernel - 1 : (kernel - 1) / 2;
  p.weight = weight.f32();
  p.bias = bias.f32();
  return p;
}

}  // namespace

StatusOr<CgmlpWeights> CgmlpWeights::Load(const EncoderConfig& e, const WeightLoader& loader,
                                          const std::string& prefix, std::vector<Tensor>* histories) {
  const int D = e.width();
  const int U = e.cgmlp_linear_units;
  const int K = e.cgmlp_conv_kernel;
  CgmlpWeights w;
  U2_ASSIGN_OR_RETURN(w.channel_proj1, loader.Linear(prefix + ".channel_proj1.0", D, U));
  U2_ASSIGN_OR_RETURN(w.gate_norm, loader.Norm(prefix + ".csgu.norm", U / 2, kLayerNormEps));
  U2_RETURN_IF_ERROR(loader.DepthwiseConv(prefix + ".csgu.conv", U / 2, K, &w.conv_weight, &w.conv_bias));
  if (e.use_linear_after_conv) {
    U2_ASSIGN_OR_RETURN(w.linear, loader.Linear(prefix + ".csgu.linear", U / 2, U / 2));
  }
  U2_ASSIGN_OR_RETURN(w.channel_proj2, loader.Linear(prefix + ".channel_proj2", U / 2, D));
  if (e.causal && K > 1) {
    // WeNet pads the gate with zeros before its norm: LN(0) is the norm's bias.
    std::vector<float> beta;
    if (!w.gate_norm.beta.empty()) {
      U2_ASSIGN_OR_RETURN(beta, loader.Host(prefix + ".csgu.norm.bias", {U / 2}));
    }
    w.history = AddHistory(loader, K, U / 2, beta.empty() ? nullptr : &beta, histories);
  }
  return w;
}

void CgmlpWeights::Forward(const Backend& be, const EncoderConfig& e, int layer, const float* in, int m,
                           float scale, float* y, int ldy, const LayerContext& ctx, Workspace& ws) const {
  const int U = e.cgmlp_linear_units;
  const int half = U / 2;
  float* hidden = ws.Floats(kSlotBig, static_cast<size_t>(m) * U);
  float* gate = ws.Floats(kSlotGate, static_cast<size_t>(m) * half);
  float* conv = ws.Floats(kSlotAtt, static_cast<size_t>(m) * half);
  channel_proj1.Forward(be, in, m, channel_proj1.in, hidden, U, Activation::kGelu);
  be.LayerNorm(hidden + half, m, half, U, gate_norm.params(), gate, half);
  DepthwiseConvParams dp = ConvParams(conv_weight, conv_bias, half, e.cgmlp_conv_kernel, e.causal);
  if (e.causal) dp.pad_value = gate_norm.beta.empty() ? nullptr : gate_norm.beta.f32();
  if (e.use_linear_after_conv) {
    ctx.depthwise(layer, history, dp, gate, conv);
    linear.Forward(be, conv, m, half, gate, half, e.gate_activation);
  } else {
    dp.activation = e.gate_activation;
    ctx.depthwise(layer, history, dp, gate, conv);
    std::swap(gate, conv);
  }
  be.Multiply(hidden, U, gate, half, m, half, gate, half);
  channel_proj2.Apply(be, gate, m, half, y, ldy, {channel_proj2.b(), Activation::kNone, scale});
}

// ---------------------------------------------------------------------------- Branchformer

StatusOr<std::unique_ptr<BranchformerLayer>> BranchformerLayer::Load(const EncoderConfig& e, int index,
                                                                     const WeightLoader& loader,
                                                                     const std::string& p,
                                                                     std::shared_ptr<const Backend> backend) {
  std::unique_ptr<BranchformerLayer> l(new BranchformerLayer(e, std::move(backend)));
  const int D = e.width();
  l->has_attention_ = e.use_attn;
  l->has_cgmlp_ = e.use_cgmlp;
  l->cgmlp_weight_ = e.CgmlpWeight(index);
  bool merge_linear = e.use_attn && e.use_cgmlp;  // WeNet: Identity when only one branch is built
  if (merge_linear && e.merge_method == MergeMethod::kFixedAverage) {
    // A weight of 0 or 1 drops a branch (and its weights), but keeps the merge Linear.
    if (l->cgmlp_weight_ == 0.0f) l->has_cgmlp_ = false;
    if (l->cgmlp_weight_ == 1.0f) l->has_attention_ = false;
  }
  if (l->has_attention_) {
    U2_ASSIGN_OR_RETURN(l->norm_mha_, loader.Norm(p + "norm_mha", D, kLayerNormEps));
    U2_ASSIGN_OR_RETURN(l->attention_, AttentionWeights::Load(e, loader, p + "attn"));
  }
  if (l->has_cgmlp_) {
    U2_ASSIGN_OR_RETURN(l->norm_mlp_, loader.Norm(p + "norm_mlp", D, kLayerNormEps));
    U2_ASSIGN_OR_RETURN(l->cgmlp_, CgmlpWeights::Load(e, loader, p + "cgmlp", &l->conv_histories_));
  }
  U2_ASSIGN_OR_RETURN(l->norm_final_, loader.Norm(p + "norm_final", D, kLayerNormEps));
  if (merge_linear) {
    const int in = l->has_attention_ && l->has_cgmlp_ && e.merge_method == MergeMethod::kConcat ? 2 * D : D;
    U2_ASSIGN_OR_RETURN(l->merge_proj_, loader.Linear(p + "merge_proj", in, D));
  }
  return l;
}

void BranchformerLayer::Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_;
  const int D = e.width();
  const bool both = has_attention_ && has_cgmlp_;
  const bool concat = both && e.merge_method == MergeMethod::kConcat;
  // The branch outputs: side by side for concat ([x1 | x2], m × 2D), else x1 and x2 apart, each
  // scaled by its fixed_ave weight in its output linear's epilogue, then summed into x1.
  float* branches = ws.Floats(kSlotBranch, static_cast<size_t>(m) * 2 * D);
  float* x1 = branches;
  float* x2 = concat ? branches + D : branches + static_cast<size_t>(m) * D;
  const int ld = concat ? 2 * D : D;
  const float w2 = both && !concat ? cgmlp_weight_ : 1.0f;
  const float w1 = both && !concat ? 1.0f - cgmlp_weight_ : 1.0f;
  float* h = ws.Floats(kSlotH, static_cast<size_t>(m) * D);
  if (has_attention_) {
    float* qkv = ws.Floats(kSlotBig, static_cast<size_t>(m) * 3 * D);
    float* att = ws.Floats(kSlotAtt, static_cast<size_t>(m) * D);
    be.LayerNorm(x, m, D, D, norm_mha_.params(), h, D);
    attention_.qkv.Forward(be, h, m, D, qkv, 3 * D);
    ctx.attention(index, attention_, qkv, att, ws);
    attention_.out.Apply(be, att, m, D, x1, ld, {attention_.out.b(), Activation::kNone, w1});
  }
  if (has_cgmlp_) {
    be.LayerNorm(x, m, D, D, norm_mlp_.params(), h, D);
    cgmlp_.Forward(be, e, index, h, m, w2, x2, ld, ctx, ws);
  }
  const float* merged = concat ? branches : (has_attention_ ? x1 : x2);
  if (both && !concat) be.AddResidual(x1, x2, D, nullptr, 1.0f, m, D, nullptr, nullptr);
  const LayerNormParams fin = norm_final_.params();
  if (merge_proj_.out > 0) {
    float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(m) * D);
    merge_proj_.Apply(be, merged, m, merge_proj_.in, tmp, D);
    be.AddResidual(x, tmp, D, merge_proj_.b(), 1.0f, m, D, &fin, x);
  } else {
    be.AddResidual(x, merged, ld, nullptr, 1.0f, m, D, &fin, x);
  }
}

// -------------------------------------------------------------------------- E-Branchformer

StatusOr<std::unique_ptr<EBranchformerLayer>> EBranchformerLayer::Load(
    const EncoderConfig& e, const WeightLoader& loader, const std::string& p,
    std::shared_ptr<const Backend> backend) {
  std::unique_ptr<EBranchformerLayer> l(new EBranchformerLayer(e, std::move(backend)));
  const int D = e.width();
  const int Fe = e.linear_units;
  l->has_ffn_ = e.use_ffn;
  l->has_macaron_ = e.use_ffn && e.macaron_style;
  if (l->has_macaron_) {
    U2_ASSIGN_OR_RETURN(l->norm_ff_macaron_, loader.Norm(p + "norm_ff_macaron", D, kLayerNormEps));
    U2_ASSIGN_OR_RETURN(l->ff_macaron_, FeedForwardWeights::Load(loader, p + "feed_forward_macaron", D, Fe));
  }
  if (l->has_ffn_) {
    U2_ASSIGN_OR_RETURN(l->norm_ff_, loader.Norm(p + "norm_ff", D, kLayerNormEps));
    U2_ASSIGN_OR_RETURN(l->ff_, FeedForwardWeights::Load(loader, p + "feed_forward", D, Fe));
  }
  U2_ASSIGN_OR_RETURN(l->norm_mha_, loader.Norm(p + "norm_mha", D, kLayerNormEps));
  U2_ASSIGN_OR_RETURN(l->attention_, AttentionWeights::Load(e, loader, p + "attn"));
  U2_ASSIGN_OR_RETURN(l->norm_mlp_, loader.Norm(p + "norm_mlp", D, kLayerNormEps));
  U2_ASSIGN_OR_RETURN(l->cgmlp_, CgmlpWeights::Load(e, loader, p + "cgmlp", &l->conv_histories_));
  U2_ASSIGN_OR_RETURN(l->norm_final_, loader.Norm(p + "norm_final", D, kLayerNormEps));
  const int K = e.merge_conv_kernel;
  U2_RETURN_IF_ERROR(
      loader.DepthwiseConv(p + "depthwise_conv_fusion", 2 * D, K, &l->fusion_weight_, &l->fusion_bias_));
  if (e.causal && K > 1) l->fusion_history_ = AddHistory(loader, K, 2 * D, nullptr, &l->conv_histories_);
  U2_ASSIGN_OR_RETURN(l->merge_proj_, loader.Linear(p + "merge_proj", 2 * D, D));
  return l;
}

void EBranchformerLayer::Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_;
  const int D = e.width();
  const int Fe = e.linear_units;
  const float ff_scale = has_macaron_ ? 0.5f : 1.0f;
  float* h = ws.Floats(kSlotH, static_cast<size_t>(m) * D);
  float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(m) * D);
  auto feed_forward = [&](const NormWeights& norm, const FeedForwardWeights& ff) {
    float* hidden = ws.Floats(kSlotBig, static_cast<size_t>(m) * Fe);
    be.LayerNorm(x, m, D, D, norm.params(), h, D);
    ff.w1.Forward(be, h, m, D, hidden, Fe, e.activation);
    ff.w2.Apply(be, hidden, m, Fe, tmp, D);
    be.AddResidual(x, tmp, D, ff.w2.b(), ff_scale, m, D, nullptr, nullptr);
  };
  if (has_macaron_) feed_forward(norm_ff_macaron_, ff_macaron_);

  // The two branches side by side: c = [x1 | x2] (m × 2D).
  float* branches = ws.Floats(kSlotBranch, static_cast<size_t>(m) * 2 * D);
  {
    float* qkv = ws.Floats(kSlotBig, static_cast<size_t>(m) * 3 * D);
    float* att = ws.Floats(kSlotAtt, static_cast<size_t>(m) * D);
    be.LayerNorm(x, m, D, D, norm_mha_.params(), h, D);
    attention_.qkv.Forward(be, h, m, D, qkv, 3 * D);
    ctx.attention(index, attention_, qkv, att, ws);
    attention_.out.Forward(be, att, m, D, branches, 2 * D);
  }
  be.LayerNorm(x, m, D, D, norm_mlp_.params(), h, D);
  cgmlp_.Forward(be, e, index, h, m, 1.0f, branches + D, 2 * D, ctx, ws);

  // merge_proj(c + dwconv_fusion(c)), then the residual.
  float* merge = ws.Floats(kSlotMerge, static_cast<size_t>(m) * 2 * D);
  const DepthwiseConvParams dp =
      ConvParams(fusion_weight_, fusion_bias_, 2 * D, e.merge_conv_kernel, e.causal);
  ctx.depthwise(index, fusion_history_, dp, branches, merge);
  be.AddResidual(merge, branches, 2 * D, nullptr, 1.0f, m, 2 * D, nullptr, nullptr);
  merge_proj_.Apply(be, merge, m, 2 * D, tmp, D);
  const LayerNormParams fin = norm_final_.params();
  if (has_ffn_) {
    be.AddResidual(x, tmp, D, merge_proj_.b(), 1.0f, m, D, nullptr, nullptr);
    feed_forward(norm_ff_, ff_);
    be.LayerNorm(x, m, D, D, fin, x, D);
  } else {
    be.AddResidual(x, tmp, D, merge_proj_.b(), 1.0f, m, D, &fin, x);
  }
}

}  // namespace u2
