#include "u2/model/conformer_layer.h"

#include <algorithm>
#include <cmath>

namespace u2 {

StatusOr<std::unique_ptr<ConformerLayer>> ConformerLayer::Load(const EncoderConfig& e,
                                                               const WeightLoader& loader,
                                                               const std::string& p,
                                                               std::shared_ptr<const Backend> backend) {
  std::unique_ptr<ConformerLayer> w(new ConformerLayer(e, std::move(backend)));
  const int D = e.output_size;
  const int Fe = e.linear_units;
  const float eps = e.norm_eps;
  if (e.is_conformer()) {
    if (e.macaron_style) {
      U2_ASSIGN_OR_RETURN(w->norm_ff_macaron_, loader.Norm(p + "norm_ff_macaron", D, eps));
      U2_ASSIGN_OR_RETURN(w->ff_macaron_,
                          FeedForwardWeights::Load(loader, p + "feed_forward_macaron", D, Fe));
    }
    U2_ASSIGN_OR_RETURN(w->norm_mha_, loader.Norm(p + "norm_mha", D, eps));
    U2_ASSIGN_OR_RETURN(w->norm_ff_, loader.Norm(p + "norm_ff", D, eps));
    if (e.use_cnn_module) {
      U2_ASSIGN_OR_RETURN(w->norm_conv_, loader.Norm(p + "norm_conv", D, eps));
      U2_ASSIGN_OR_RETURN(w->norm_final_, loader.Norm(p + "norm_final", D, eps));
    }
  } else {
    U2_ASSIGN_OR_RETURN(w->norm_mha_, loader.Norm(p + "norm1", D, eps));
    U2_ASSIGN_OR_RETURN(w->norm_ff_, loader.Norm(p + "norm2", D, eps));
  }
  U2_ASSIGN_OR_RETURN(w->ff_, FeedForwardWeights::Load(loader, p + "feed_forward", D, Fe));
  U2_ASSIGN_OR_RETURN(w->attention_, AttentionWeights::Load(e, loader, p + "self_attn"));
  if (!e.has_conv_module()) return w;

  const int K = e.cnn_module_kernel;
  const std::string c = p + "conv_module.";
  w->pointwise_conv1_.in = D;
  w->pointwise_conv1_.out = 2 * D;
  U2_RETURN_IF_ERROR(
      loader.LoadLinearWeight(c + "pointwise_conv1.weight", {2 * D, D, 1}, &w->pointwise_conv1_));
  std::vector<float> b1;
  if (loader.Has(c + "pointwise_conv1.bias")) {
    U2_ASSIGN_OR_RETURN(b1, loader.Host(c + "pointwise_conv1.bias", {2 * D}));
    w->pointwise_conv1_.bias = loader.Upload(b1, {2 * D});
  }
  w->pointwise_conv2_.in = D;
  w->pointwise_conv2_.out = D;
  U2_RETURN_IF_ERROR(loader.LoadLinearWeight(c + "pointwise_conv2.weight", {D, D, 1}, &w->pointwise_conv2_));
  U2_ASSIGN_OR_RETURN(w->pointwise_conv2_.bias, loader.OptionalDevice(c + "pointwise_conv2.bias", {D}));

  U2_ASSIGN_OR_RETURN(std::vector<float> dw, loader.Host(c + "depthwise_conv.weight", {D, 1, K}));
  std::vector<float> db(D, 0.0f);
  if (loader.Has(c + "depthwise_conv.bias")) {
    U2_ASSIGN_OR_RETURN(db, loader.Host(c + "depthwise_conv.bias", {D}));
  }
  std::vector<float> scale(D, 1.0f), shift(D, 0.0f);
  if (e.cnn_module_norm == ConvNormType::kBatchNorm) {
    // Eval BatchNorm is per-channel affine: fold it into the depthwise conv.
    U2_ASSIGN_OR_RETURN(std::vector<float> g, loader.Host(c + "norm.weight", {D}));
    U2_ASSIGN_OR_RETURN(std::vector<float> b, loader.Host(c + "norm.bias", {D}));
    U2_ASSIGN_OR_RETURN(std::vector<float> mean, loader.Host(c + "norm.running_mean", {D}));
    U2_ASSIGN_OR_RETURN(std::vector<float> var, loader.Host(c + "norm.running_var", {D}));
    for (int ch = 0; ch < D; ++ch) {
      const double s = static_cast<double>(g[ch]) / std::sqrt(static_cast<double>(var[ch]) + e.conv_norm_eps);
      scale[ch] = static_cast<float>(s);
      shift[ch] = static_cast<float>((static_cast<double>(db[ch]) - mean[ch]) * s + b[ch]);
    }
  } else {
    U2_ASSIGN_OR_RETURN(w->conv_layer_norm_, loader.Norm(c + "norm", D, e.conv_norm_eps));
    shift = db;
  }
  std::vector<float> wt(static_cast<size_t>(K) * D);
  for (int ch = 0; ch < D; ++ch)
    for (int k = 0; k < K; ++k)
      wt[static_cast<size_t>(k) * D + ch] = dw[static_cast<size_t>(ch) * K + k] * scale[ch];
  w->depthwise_weight_ = loader.Upload(wt, {K, D});
  w->depthwise_bias_ = loader.Upload(shift, {D});
  std::vector<float> glu(D, 0.0f);
  if (!b1.empty()) {
    for (int ch = 0; ch < D; ++ch) glu[ch] = b1[ch] / (1.0f + std::exp(-b1[D + ch]));
  }
  if (e.causal && !b1.empty()) w->glu_of_bias_ = loader.Upload(glu, {D});
  if (e.causal && K > 1) {
    std::vector<float> hist(static_cast<size_t>(K - 1) * D);
    for (int k = 0; k < K - 1; ++k)
      std::copy(glu.begin(), glu.end(), hist.begin() + static_cast<size_t>(k) * D);
    w->conv_histories_.push_back(loader.Upload(hist, {K - 1, D}));
  }
  return w;
}

void ConformerLayer::Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_;
  const int D = e.output_size;
  const int Fe = e.linear_units;
  float* h = ws.Floats(kSlotH, static_cast<size_t>(m) * D);
  float* big = ws.Floats(kSlotBig, static_cast<size_t>(m) * std::max(3 * D, Fe));
  float* att = ws.Floats(kSlotAtt, static_cast<size_t>(m) * D);
  float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(m) * D);
  auto linear = [&](const float* in, const LinearWeights& l, float* y) {
    l.Apply(be, in, m, l.in, y, l.out);
  };

  enum class Kind { kFfnMacaron, kAttention, kConv, kFfn };
  struct Sublayer {
    Kind kind;
    const NormWeights* norm;
  };
  Sublayer subs[4];
  int n = 0;
  if (e.has_macaron()) subs[n++] = {Kind::kFfnMacaron, &norm_ff_macaron_};
  subs[n++] = {Kind::kAttention, &norm_mha_};
  if (e.has_conv_module()) subs[n++] = {Kind::kConv, &norm_conv_};
  subs[n++] = {Kind::kFfn, &norm_ff_};
  const float ff_scale = e.has_macaron() ? 0.5f : 1.0f;
  const bool pre = e.normalize_before;

  const float* in = x;
  if (pre) {
    be.LayerNorm(x, m, D, D, subs[0].norm->params(), h, D);
    in = h;
  }
  for (int s = 0; s < n; ++s) {
    const float* delta_bias = nullptr;
    float alpha = 1.0f;
    switch (subs[s].kind) {
      case Kind::kFfnMacaron:
      case Kind::kFfn: {
        const FeedForwardWeights& ff = subs[s].kind == Kind::kFfnMacaron ? ff_macaron_ : ff_;
        ff.w1.Forward(be, in, m, ff.w1.in, big, Fe, e.activation);
        linear(big, ff.w2, tmp);
        delta_bias = ff.w2.b();
        alpha = ff_scale;
        break;
      }
      case Kind::kAttention: {
        attention_.qkv.Forward(be, in, m, D, big, 3 * D);
        ctx.attention(index, attention_, big, att, ws);
        linear(att, attention_.out, tmp);
        delta_bias = attention_.out.b();
        break;
      }
      case Kind::kConv: {
        linear(in, pointwise_conv1_, big);
        be.BiasGlu(big, m, D, 2 * D, pointwise_conv1_.b(), att, D);
        const int K = e.cnn_module_kernel;
        LayerNormParams conv_ln;
        DepthwiseConvParams dp;
        dp.channels = D;
        dp.kernel = K;
        dp.left_pad = e.causal ? K - 1 : (K - 1) / 2;
        dp.weight = depthwise_weight_.f32();
        dp.bias = depthwise_bias_.f32();
        dp.pad_value = glu_of_bias_.empty() ? nullptr : glu_of_bias_.f32();
        if (e.cnn_module_norm == ConvNormType::kLayerNorm) {
          conv_ln = conv_layer_norm_.params();
          dp.norm = &conv_ln;
        }
        dp.activation = e.activation;
        // `in` is h (pre-LN only), already consumed by pointwise_conv1.
        ctx.depthwise(index, 0, dp, att, h);
        linear(h, pointwise_conv2_, tmp);
        delta_bias = pointwise_conv2_.b();
        break;
      }
    }
    if (pre) {
      if (s + 1 < n) {
        const LayerNormParams next = subs[s + 1].norm->params();
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &next, h);
        in = h;
      } else if (e.has_conv_module()) {
        const LayerNormParams fin = norm_final_.params();
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &fin, x);
      } else {
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, nullptr, nullptr);
      }
    } else {
      const LayerNormParams own = subs[s].norm->params();
      be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &own, x);
      in = x;
    }
  }
}

}  // namespace u2
