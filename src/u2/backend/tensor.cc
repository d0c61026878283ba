#include "u2/backend/tensor.h"

#include <cstring>

namespace u2 {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kI32:
      return "int32";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kI32:
      return 4;
  }
  return 0;
}

const char* DeviceTypeName(DeviceType device) { return device == DeviceType::kCpu ? "cpu" : "cuda"; }

Tensor::Tensor(std::shared_ptr<const void> storage, void* data, Shape shape, DType dtype, DeviceType device)
    : storage_(std::move(storage)), data_(data), shape_(std::move(shape)), dtype_(dtype), device_(device) {}

Tensor Tensor::HostZeros(Shape shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t bytes = static_cast<size_t>(n) * DTypeSize(dtype);
  // 64-byte aligned so vector loops and BLAS see aligned rows.
  void* p = ::operator new[](bytes == 0 ? 64 : bytes, std::align_val_t(64));
  std::memset(p, 0, bytes);
  std::shared_ptr<void> storage(p, [](void* q) { ::operator delete[](q, std::align_val_t(64)); });
  return Tensor(storage, p, std::move(shape), dtype, DeviceType::kCpu);
}

Tensor Tensor::HostFromFloats(std::vector<float> values, Shape shape) {
  Tensor t = HostZeros(std::move(shape), DType::kF32);
  if (!values.empty()) std::memcpy(t.data_, values.data(), std::min(values.size() * 4, t.nbytes()));
  return t;
}

int64_t Tensor::numel() const {
  if (data_ == nullptr) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::Slice(int64_t begin, int64_t count) const {
  int64_t row = 1;
  for (int i = 1; i < rank(); ++i) row *= shape_[i];
  Shape s = shape_;
  s[0] = count;
  char* p = static_cast<char*>(data_) + static_cast<size_t>(begin * row) * DTypeSize(dtype_);
  return Tensor(storage_, p, std::move(s), dtype_, device_);
}

Tensor Tensor::Reshape(Shape shape) const {
  return Tensor(storage_, data_, std::move(shape), dtype_, device_);
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

std::string Tensor::ShapeString() const { return ShapeToString(shape_); }

std::vector<float> Tensor::ToFloatVector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  if (!out.empty()) std::memcpy(out.data(), data_, out.size() * sizeof(float));
  return out;
}

}  // namespace u2
