// Weight loading from model.safetensors: shape checks against the configuration (errors name the
// tensor and both shapes), float16 → float32 at load, zero-copy views of aligned float32 tensors on
// the CPU, and the parameter structs the model's layers use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/util/safetensors.h"

namespace u2 {

// y = x·Wᵀ + b with W (out, in); b may be empty (WeNet's bias flags).
struct LinearWeights {
  Tensor weight;
  Tensor bias;
  int in = 0;
  int out = 0;
  // W made ready once for the backend's GEMM (Backend::PrepareWeight; WeightLoader does it). With
  // an int8 weight on a backend computing in int8, `prepared` alone holds W and `weight` is empty.
  std::shared_ptr<const PreparedWeight> prepared;
  // kNever for products that must stay fp32 even at int8 precision (the subsampling's).
  WeightQuantization quantization = WeightQuantization::kAllowed;
  const float* b() const { return bias.empty() ? nullptr : bias.f32(); }

  void Prepare(const Backend& backend) {
    prepared = backend.PrepareWeight(weight.f32(), out, in, quantization);
  }
  // y (m × out, ldy) = x (m × in, ldx)·Wᵀ, then the epilogue (default none: no bias added).
  void Apply(const Backend& backend, const float* x, int m, int ldx, float* y, int ldy,
             const GemmEpilogue& epilogue = {}) const {
    if (prepared) {
      backend.GemmPrepared(m, x, ldx, *prepared, 0.0f, y, ldy, epilogue);
      return;
    }
    backend.Gemm(false, true, m, out, in, 1.0f, x, ldx, weight.f32(), in, 0.0f, y, ldy);
    if (!epilogue.empty())
      backend.BiasActivation(y, m, out, ldy, epilogue.bias, epilogue.activation, epilogue.scale);
  }
  // y = act(x·Wᵀ + b): the whole Linear.
  void Forward(const Backend& backend, const float* x, int m, int ldx, float* y, int ldy,
               Activation act = Activation::kNone) const {
    Apply(backend, x, m, ldx, y, ldy, {b(), act, 1.0f});
  }
};

struct NormWeights {
  Tensor gamma;
  Tensor beta;
  float eps = 1e-5f;
  LayerNormParams params() const { return {gamma.f32(), beta.empty() ? nullptr : beta.f32(), eps}; }
};

// A per-input-channel scale and shift applied before a Linear (Squeezeformer's ada_scale /
// ada_bias): y = W·(scale ⊙ x + shift) + b.
struct InputAffine {
  std::vector<float> scale, shift;
};

class WeightLoader {
 public:
  WeightLoader(std::shared_ptr<SafeTensorsFile> file, std::shared_ptr<const Backend> backend)
      : file_(std::move(file)), backend_(std::move(backend)) {}

  bool Has(const std::string& name) const { return file_->Contains(name); }
  // The tensor as float32 on the host, after checking its shape.
  StatusOr<std::vector<float>> Host(const std::string& name, const Tensor::Shape& shape) const;
  // The tensor on the backend's device (a view into the mapping when possible).
  StatusOr<Tensor> Device(const std::string& name, const Tensor::Shape& shape) const;
  // Optional tensor: empty Tensor when absent.
  StatusOr<Tensor> OptionalDevice(const std::string& name, const Tensor::Shape& shape) const;
  Tensor Upload(const std::vector<float>& host, const Tensor::Shape& shape) const {
    return backend_->Upload(host, shape);
  }

  StatusOr<LinearWeights> Linear(const std::string& prefix, int in, int out,
                                 bool bias_required = false) const;
  // The weight matrix `name` of a Linear (l->out × l->in, stored with `shape`: e.g. (out, in, 1)
  // for a 1×1 Conv1d) into l->weight and l->prepared. A float tensor is used as it is. An int8 one
  // (convert.py --quantize int8: I8 `name` and F32 `name`_scale, one scale per row) is packed as
  // it is by a backend computing in int8 and dequantized to float for the others.
  Status LoadLinearWeight(const std::string& name, const Tensor::Shape& shape, LinearWeights* l) const;
  // Several Linears with the same input, stacked along the output (e.g. Wq|Wk|Wv); a missing bias
  // counts as zeros unless all are missing.
  StatusOr<LinearWeights> StackedLinear(const std::vector<std::string>& prefixes, int in, int out_each) const;
  StatusOr<NormWeights> Norm(const std::string& prefix, int dim, float eps) const;
  // Linears `prefixes` (weights of shape `shape_each`, out_each × in as a matrix; biases optional)
  // stacked along the output and with `affine` folded in: W' = W·diag(scale), b' = b + W·shift.
  // int8-stored weights are dequantized first (a backend computing in int8 quantizes W' again).
  StatusOr<LinearWeights> FoldedLinear(const std::vector<std::string>& prefixes,
                                       const Tensor::Shape& shape_each, int in, int out_each,
                                       const InputAffine& affine) const;
  // A depthwise Conv1d weight `name` (channels, 1, kernel) as the (kernel, channels) matrix
  // DepthwiseConvParams takes, on the host.
  StatusOr<std::vector<float>> HostDepthwiseWeight(const std::string& name, int channels, int kernel) const;
  // The same on the device, and the conv's bias (zeros when the checkpoint has none).
  Status DepthwiseConv(const std::string& prefix, int channels, int kernel, Tensor* weight,
                       Tensor* bias) const;
  // The affine stored as `prefix`.ada_scale / .ada_bias (shape (1, 1, dim)).
  StatusOr<InputAffine> AdaptiveScale(const std::string& prefix, int dim) const;

  // A Linear's weight on the host: float rows, or int8 rows with their scales (`q` non-empty).
  struct HostMatrix {
    std::vector<float> values;
    std::vector<int8_t> q;
    std::vector<float> scales;
  };
  StatusOr<HostMatrix> HostLinearWeight(const std::string& name, const Tensor::Shape& shape, int out,
                                        int in) const;

 private:
  StatusOr<SafeTensorView> Checked(const std::string& name, const Tensor::Shape& shape) const;
  std::shared_ptr<SafeTensorsFile> file_;
  std::shared_ptr<const Backend> backend_;
};

}  // namespace u2
