#include "u2/model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace u2 {

StatusOr<SafeTensorView> WeightLoader::Checked(const std::string& name, const Tensor::Shape& shape) const {
  if (!file_->Contains(name)) return NotFound("model.safetensors: missing tensor " + name);
  U2_ASSIGN_OR_RETURN(SafeTensorView view, file_->Get(name));
  if (view.shape != shape) {
    return InvalidArgument("model.safetensors: tensor " + name + " has shape " + ShapeToString(view.shape) +
                           ", but model.json implies " + ShapeToString(shape));
  }
  if (view.dtype != SafeTensorDType::kF32 && view.dtype != SafeTensorDType::kF16 &&
      view.dtype != SafeTensorDType::kBF16) {
    return InvalidArgument("model.safetensors: tensor " + name + " has dtype " +
                           SafeTensorDTypeName(view.dtype) + ", expected F32 or F16");
  }
  return view;
}

StatusOr<std::vector<float>> WeightLoader::Host(const std::string& name, const Tensor::Shape& shape) const {
  U2_RETURN_IF_ERROR(Checked(name, shape).status());
  return file_->ReadFloat32(name);
}

StatusOr<Tensor> WeightLoader::Device(const std::string& name, const Tensor::Shape& shape) const {
  U2_ASSIGN_OR_RETURN(SafeTensorView view, Checked(name, shape));
  const bool aligned = reinterpret_cast<uintptr_t>(view.bytes.data()) % alignof(float) == 0;
  if (backend_->device() == DeviceType::kCpu && view.dtype == SafeTensorDType::kF32 && aligned) {
    // Zero copy: the tensor keeps the mapping alive.
    void* data = const_cast<std::byte*>(view.bytes.data());
    return Tensor(std::shared_ptr<const void>(file_, file_.get()), data, shape, DType::kF32,
                  DeviceType::kCpu);
  }
  U2_ASSIGN_OR_RETURN(std::vector<float> host, file_->ReadFloat32(name));
  return backend_->Upload(host, shape);
}

StatusOr<Tensor> WeightLoader::OptionalDevice(const std::string& name, const Tensor::Shape& shape) const {
  if (!Has(name)) return Tensor();
  return Device(name, shape);
}

namespace {

// W[r, c] = q[r, c]·scale[r]: an int8 weight as float, for a backend that does not compute in int8.
std::vector<float> Dequantized(const WeightLoader::HostMatrix& m, int in) {
  std::vector<float> w(m.q.size());
  for (size_t e = 0; e < w.size(); ++e) w[e] = m.q[e] * m.scales[e / in];
  return w;
}

}  // namespace

StatusOr<WeightLoader::HostMatrix> WeightLoader::HostLinearWeight(const std::string& name,
                                                                  const Tensor::Shape& shape, int out,
                                                                  int in) const {
  HostMatrix m;
  if (!file_->Contains(name)) return NotFound("model.safetensors: missing tensor " + name);
  U2_ASSIGN_OR_RETURN(SafeTensorView view, file_->Get(name));
  if (view.dtype != SafeTensorDType::kI8) {
    U2_ASSIGN_OR_RETURN(m.values, Host(name, shape));
    return m;
  }
  if (view.shape != shape) {
    return InvalidArgument("model.safetensors: tensor " + name + " has shape " + ShapeToString(view.shape) +
                           ", but model.json implies " + ShapeToString(shape));
  }
  const std::string scale_name = name + "_scale";
  U2_ASSIGN_OR_RETURN(m.scales, Host(scale_name, {out}));
  for (float s : m.scales) {
    if (!std::isfinite(s) || s < 0.0f) {
      return InvalidArgument("model.safetensors: " + scale_name +
                             " holds a scale that is negative or not finite");
    }
  }
  m.q.resize(static_cast<size_t>(out) * in);
  std::memcpy(m.q.data(), view.bytes.data(), m.q.size());
  for (int8_t v : m.q) {
    if (v == -128)
      return InvalidArgument("model.safetensors: " + name + " holds -128 (int8 weights are in [-127, 127])");
  }
  return m;
}

Status WeightLoader::LoadLinearWeight(const std::string& name, const Tensor::Shape& shape,
                                      LinearWeights* l) const {
  U2_ASSIGN_OR_RETURN(HostMatrix m, HostLinearWeight(name, shape, l->out, l->in));
  if (m.q.empty()) {
    U2_ASSIGN_OR_RETURN(Tensor t, Device(name, shape));
    l->weight = t.Reshape({l->out, l->in});
    l->Prepare(*backend_);
    return Status::Ok();
  }
  if (l->quantization == WeightQuantization::kAllowed) {
    l->prepared = backend_->PrepareInt8Weight(m.q.data(), m.scales.data(), l->out, l->in);
    if (l->prepared) return Status::Ok();
  }
  l->weight = backend_->Upload(Dequantized(m, l->in), {l->out, l->in});
  l->Prepare(*backend_);
  return Status::Ok();
}

StatusOr<LinearWeights> WeightLoader::Linear(const std::string& prefix, int in, int out,
                                             bool bias_required) const {
  LinearWeights l;
  l.in = in;
  l.out = out;
  U2_RETURN_IF_ERROR(LoadLinearWeight(prefix + ".weight", {out, in}, &l));
  if (bias_required || Has(prefix + ".bias")) {
    U2_ASSIGN_OR_RETURN(l.bias, Device(prefix + ".bias", {out}));
  }
  return l;
}

StatusOr<LinearWeights> WeightLoader::StackedLinear(const std::vector<std::string>& prefixes, int in,
                                                    int out_each) const {
  const int n = static_cast<int>(prefixes.size());
  std::vector<HostMatrix> parts;
  bool all_int8 = true;
  for (const std::string& prefix : prefixes) {
    U2_ASSIGN_OR_RETURN(HostMatrix m, HostLinearWeight(prefix + ".weight", {out_each, in}, out_each, in));
    all_int8 = all_int8 && !m.q.empty();
    parts.push_back(std::move(m));
  }
  std::vector<float> b(static_cast<size_t>(n) * out_each, 0.0f);
  bool any_bias = false;
  for (int i = 0; i < n; ++i) {
    if (Has(prefixes[i] + ".bias")) {
      U2_ASSIGN_OR_RETURN(std::vector<float> bi, Host(prefixes[i] + ".bias", {out_each}));
      std::memcpy(b.data() + static_cast<size_t>(i) * out_each, bi.data(), bi.size() * sizeof(float));
      any_bias = true;
    }
  }
  LinearWeights l;
  l.in = in;
  l.out = n * out_each;
  if (any_bias) l.bias = backend_->Upload(b, {l.out});
  const size_t part = static_cast<size_t>(out_each) * in;
  if (all_int8) {
    // Scales are per row, so stacking the rows stacks the scales.
    std::vector<int8_t> q(n * part);
    std::vector<float> scales;
    for (int i = 0; i < n; ++i) {
      std::memcpy(q.data() + i * part, parts[i].q.data(), part);
      scales.insert(scales.end(), parts[i].scales.begin(), parts[i].scales.end());
    }
    l.prepared = backend_->PrepareInt8Weight(q.data(), scales.data(), l.out, in);
    if (l.prepared) return l;
  }
  std::vector<float> w(n * part);
  for (int i = 0; i < n; ++i) {
    float* dst = w.data() + i * part;
    const std::vector<float> values = parts[i].q.empty() ? parts[i].values : Dequantized(parts[i], in);
    std::memcpy(dst, values.data(), part * sizeof(float));
  }
  l.weight = backend_->Upload(w, {l.out, in});
  l.Prepare(*backend_);
  return l;
}

StatusOr<NormWeights> WeightLoader::Norm(const std::string& prefix, int dim, float eps) const {
  NormWeights n;
  n.eps = eps;
  U2_ASSIGN_OR_RETURN(n.gamma, Device(prefix + ".weight", {dim}));
  U2_ASSIGN_OR_RETURN(n.beta, Device(prefix + ".bias", {dim}));
  return n;
}

StatusOr<LinearWeights> WeightLoader::FoldedLinear(const std::vector<std::string>& prefixes,
                                                   const Tensor::Shape& shape_each, int in, int out_each,
                                                   const InputAffine& affine) const {
  if (affine.scale.size() != static_cast<size_t>(in) || affine.shift.size() != static_cast<size_t>(in)) {
    return InvalidArgument("model.safetensors: the input scale of " + prefixes.front() + " does not have " +
                           std::to_string(in) + " values");
  }
  const int n = static_cast<int>(prefixes.size());
  std::vector<float> w(static_cast<size_t>(n) * out_each * in), b(static_cast<size_t>(n) * out_each, 0.0f);
  bool any_bias = false;
  for (int i = 0; i < n; ++i) {
    U2_ASSIGN_OR_RETURN(HostMatrix m, HostLinearWeight(prefixes[i] + ".weight", shape_each, out_each, in));
    const std::vector<float> values = m.q.empty() ? std::move(m.values) : Dequantized(m, in);
    std::vector<float> bias(out_each, 0.0f);
    if (Has(prefixes[i] + ".bias")) {
      U2_ASSIGN_OR_RETURN(bias, Host(prefixes[i] + ".bias", {out_each}));
      any_bias = true;
    }
    for (int r = 0; r < out_each; ++r) {
      const float* row = values.data() + static_cast<size_t>(r) * in;
      float* dst = w.data() + (static_cast<size_t>(i) * out_each + r) * in;
      double acc = bias[r];
      for (int c = 0; c < in; ++c) {
        acc += static_cast<double>(row[c]) * affine.shift[c];
        dst[c] = row[c] * affine.scale[c];
      }
      b[static_cast<size_t>(i) * out_each + r] = static_cast<float>(acc);
    }
  }
  LinearWeights l;
  l.in = in;
  l.out = n * out_each;
  l.weight = backend_->Upload(w, {l.out, in});
  l.Prepare(*backend_);
  const bool shifted =
      std::any_of(affine.shift.begin(), affine.shift.end(), [](float v) { return v != 0.0f; });
  if (any_bias || shifted) l.bias = backend_->Upload(b, {l.out});
  return l;
}

StatusOr<InputAffine> WeightLoader::AdaptiveScale(const std::string& prefix, int dim) const {
  InputAffine a;
  U2_ASSIGN_OR_RETURN(a.scale, Host(prefix + ".ada_scale", {1, 1, dim}));
  U2_ASSIGN_OR_RETURN(a.shift, Host(prefix + ".ada_bias", {1, 1, dim}));
  return a;
}

StatusOr<std::vector<float>> WeightLoader::HostDepthwiseWeight(const std::string& name, int channels,
                                                               int kernel) const {
  U2_ASSIGN_OR_RETURN(std::vector<float> w, Host(name, {channels, 1, kernel}));
  std::vector<float> kc(w.size());
  for (int c = 0; c < channels; ++c)
    for (int k = 0; k < kernel; ++k)
      kc[static_cast<size_t>(k) * channels + c] = w[static_cast<size_t>(c) * kernel + k];
  return kc;
}

Status WeightLoader::DepthwiseConv(const std::string& prefix, int channels, int kernel, Tensor* weight,
                                   Tensor* bias) const {
  U2_ASSIGN_OR_RETURN(std::vector<float> kc, HostDepthwiseWeight(prefix + ".weight", channels, kernel));
  *weight = backend_->Upload(kc, {kernel, channels});
  std::vector<float> b(channels, 0.0f);
  if (Has(prefix + ".bias")) {
    U2_ASSIGN_OR_RETURN(b, Host(prefix + ".bias", {channels}));
  }
  *bias = backend_->Upload(b, {channels});
  return Status::Ok();
}

}  // namespace u2
