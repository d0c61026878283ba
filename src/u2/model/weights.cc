#include "u2/model/weights.h"

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

StatusOr<LinearWeights> WeightLoader::Linear(const std::string& prefix, int in, int out,
                                             bool bias_required) const {
  LinearWeights l;
  l.in = in;
  l.out = out;
  U2_ASSIGN_OR_RETURN(l.weight, Device(prefix + ".weight", {out, in}));
  if (bias_required || Has(prefix + ".bias")) {
    U2_ASSIGN_OR_RETURN(l.bias, Device(prefix + ".bias", {out}));
  }
  l.Prepare(*backend_);
  return l;
}

StatusOr<LinearWeights> WeightLoader::StackedLinear(const std::vector<std::string>& prefixes, int in,
                                                    int out_each) const {
  const int n = static_cast<int>(prefixes.size());
  std::vector<float> w(static_cast<size_t>(n) * out_each * in);
  std::vector<float> b(static_cast<size_t>(n) * out_each, 0.0f);
  bool any_bias = false;
  for (int i = 0; i < n; ++i) {
    U2_ASSIGN_OR_RETURN(std::vector<float> wi, Host(prefixes[i] + ".weight", {out_each, in}));
    std::memcpy(w.data() + static_cast<size_t>(i) * out_each * in, wi.data(), wi.size() * sizeof(float));
    if (Has(prefixes[i] + ".bias")) {
      U2_ASSIGN_OR_RETURN(std::vector<float> bi, Host(prefixes[i] + ".bias", {out_each}));
      std::memcpy(b.data() + static_cast<size_t>(i) * out_each, bi.data(), bi.size() * sizeof(float));
      any_bias = true;
    }
  }
  LinearWeights l;
  l.in = in;
  l.out = n * out_each;
  l.weight = backend_->Upload(w, {l.out, in});
  if (any_bias) l.bias = backend_->Upload(b, {l.out});
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

}  // namespace u2
