// The Conformer convolution module (WeNet ConvolutionModule), shared by the Conformer, Efficient
// Conformer and Squeezeformer layers:
//
//   pointwise_conv1 (D → 2D) → GLU → depthwise conv (K) → norm (BatchNorm folded into the conv, or
//   LayerNorm) → activation → pointwise_conv2 (D → D)
//
// Causal modules pad on the left with what pointwise_conv1 makes of zero input, GLU(bias)
// (docs/wenet-numerics.md §3.7); a stream carries the last K−1 GLU outputs instead. Squeezeformer's
// adaptive scale (ada_scale ⊙ x + ada_bias before pointwise_conv1) is folded into
// pointwise_conv1 at load; the padding stays GLU(bias) of the unfolded bias, as in WeNet, where
// the zeros are added after the scaling.
#pragma once

#include <string>
#include <vector>

#include "u2/model/encoder_layer.h"

namespace u2 {

struct ConvModuleWeights {
  LinearWeights pointwise_conv1, pointwise_conv2;
  Tensor depthwise_weight, depthwise_bias;  // (K, D) with BatchNorm folded in; (D)
  Tensor glu_of_bias;                       // causal: the left padding's value, or empty (zeros)
  NormWeights layer_norm;                   // cnn_module_norm = layer_norm
  bool has_layer_norm = false;
  int kernel = 0;
  bool causal = false;
  Activation activation = Activation::kNone;
  int history = -1;  // its entry in the layer's ConvHistories(), -1 when it has none

  // `prefix` names the module ("encoder.encoders.0.conv_module"); `kernel` its depthwise width;
  // `input_affine` (optional) the adaptive scale before it. Appends a causal module's initial
  // stream history to `histories`.
  static StatusOr<ConvModuleWeights> Load(const EncoderConfig& e, const WeightLoader& loader,
                                          const std::string& prefix, int kernel,
                                          const InputAffine* input_affine, std::vector<Tensor>* histories);
  // y (m × D) = activation(norm(depthwise(GLU(pointwise_conv1(in))))) for the layer's frames;
  // pointwise_conv2 is left to the caller (a stride layer subsamples first). Uses kSlotBig and
  // kSlotAtt.
  void Depthwise(const Backend& be, int layer, const float* in, int m, int dim, const LayerContext& ctx,
                 Workspace& ws, float* y) const;
};

}  // namespace u2
