#include "u2/model/conv_module.h"

#include <algorithm>
#include <cmath>

namespace u2 {

StatusOr<ConvModuleWeights> ConvModuleWeights::Load(const EncoderConfig& e, const WeightLoader& loader,
                                                    const std::string& prefix, int kernel,
                                                    const InputAffine* input_affine,
                                                    std::vector<Tensor>* histories) {
  const int D = e.width();
  const int K = kernel;
  const std::string c = prefix + ".";
  ConvModuleWeights w;
  w.kernel = K;
  w.causal = e.causal;
  w.activation = e.activation;
  std::vector<float> b1;
  if (loader.Has(c + "pointwise_conv1.bias")) {
    U2_ASSIGN_OR_RETURN(b1, loader.Host(c + "pointwise_conv1.bias", {2 * D}));
  }
  if (input_affine) {
    U2_ASSIGN_OR_RETURN(w.pointwise_conv1,
                        loader.FoldedLinear({c + "pointwise_conv1"}, {2 * D, D, 1}, D, 2 * D, *input_affine));
  } else {
    w.pointwise_conv1.in = D;
    w.pointwise_conv1.out = 2 * D;
    U2_RETURN_IF_ERROR(
        loader.LoadLinearWeight(c + "pointwise_conv1.weight", {2 * D, D, 1}, &w.pointwise_conv1));
    if (!b1.empty()) w.pointwise_conv1.bias = loader.Upload(b1, {2 * D});
  }
  w.pointwise_conv2.in = D;
  w.pointwise_conv2.out = D;
  U2_RETURN_IF_ERROR(loader.LoadLinearWeight(c + "pointwise_conv2.weight", {D, D, 1}, &w.pointwise_conv2));
  U2_ASSIGN_OR_RETURN(w.pointwise_conv2.bias, loader.OptionalDevice(c + "pointwise_conv2.bias", {D}));

  U2_ASSIGN_OR_RETURN(std::vector<float> wt, loader.HostDepthwiseWeight(c + "depthwise_conv.weight", D, K));
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
    U2_ASSIGN_OR_RETURN(w.layer_norm, loader.Norm(c + "norm", D, e.conv_norm_eps));
    w.has_layer_norm = true;
    shift = db;
  }
  for (int k = 0; k < K; ++k)
    for (int ch = 0; ch < D; ++ch) wt[static_cast<size_t>(k) * D + ch] *= scale[ch];
  w.depthwise_weight = loader.Upload(wt, {K, D});
  w.depthwise_bias = loader.Upload(shift, {D});
  std::vector<float> glu(D, 0.0f);
  if (!b1.empty()) {
    for (int ch = 0; ch < D; ++ch) glu[ch] = b1[ch] / (1.0f + std::exp(-b1[D + ch]));
  }
  if (e.causal && !b1.empty()) w.glu_of_bias = loader.Upload(glu, {D});
  if (e.causal && K > 1) {
    std::vector<float> hist(static_cast<size_t>(K - 1) * D);
    for (int k = 0; k < K - 1; ++k)
      std::copy(glu.begin(), glu.end(), hist.begin() + static_cast<size_t>(k) * D);
    histories->push_back(loader.Upload(hist, {K - 1, D}));
    w.history = static_cast<int>(histories->size()) - 1;
  }
  return w;
}

void ConvModuleWeights::Depthwise(const Backend& be, int layer, const float* in, int m, int dim,
                                  const LayerContext& ctx, Workspace& ws, float* y) const {
  const int D = dim;
  float* big = ws.Floats(kSlotBig, static_cast<size_t>(m) * 2 * D);
  float* glu = ws.Floats(kSlotAtt, static_cast<size_t>(m) * D);
  pointwise_conv1.Apply(be, in, m, D, big, 2 * D);
  be.BiasGlu(big, m, D, 2 * D, pointwise_conv1.b(), glu, D);
  LayerNormParams ln;
  DepthwiseConvParams dp;
  dp.channels = D;
  dp.kernel = kernel;
  dp.left_pad = causal ? kernel - 1 : (kernel - 1) / 2;
  dp.weight = depthwise_weight.f32();
  dp.bias = depthwise_bias.f32();
  dp.pad_value = glu_of_bias.empty() ? nullptr : glu_of_bias.f32();
  if (has_layer_norm) {
    ln = layer_norm.params();
    dp.norm = &ln;
  }
  dp.activation = activation;
  ctx.depthwise(layer, history, dp, glu, y);
}

}  // namespace u2
