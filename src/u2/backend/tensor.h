// A device tensor: shape, element type, device, and storage that is either owned (shared by all
// views of it) or borrowed (e.g. a float32 weight inside the mmap'd model.safetensors, kept alive
// by a handle on the mapping).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace u2 {

enum class DType : uint8_t { kF32, kF16, kI32 };
enum class DeviceType : uint8_t { kCpu, kCuda };

const char* DTypeName(DType dtype);
size_t DTypeSize(DType dtype);
const char* DeviceTypeName(DeviceType device);

class Tensor {
 public:
  using Shape = std::vector<int64_t>;

  Tensor() = default;
  // A tensor over `data`, whose lifetime is tied to `storage` (which may own it or just keep the
  // real owner alive, e.g. a mapped file).
  Tensor(std::shared_ptr<const void> storage, void* data, Shape shape, DType dtype, DeviceType device);

  // Owning host tensors.
  static Tensor HostZeros(Shape shape, DType dtype = DType::kF32);
  static Tensor HostFromFloats(std::vector<float> values, Shape shape);

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + rank() : i]; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  DType dtype() const { return dtype_; }
  DeviceType device() const { return device_; }
  bool empty() const { return data_ == nullptr; }

  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }
  const float* f32() const { return static_cast<const float*>(data_); }
  float* mutable_f32() const { return static_cast<float*>(data_); }

  // Rows [begin, begin+count) along dim 0, sharing storage.
  Tensor Slice(int64_t begin, int64_t count) const;
  // Same storage, new shape with the same number of elements (caller checks).
  Tensor Reshape(Shape shape) const;
  std::string ShapeString() const;
  // Host copy of a float32 host tensor's values (tests, captures).
  std::vector<float> ToFloatVector() const;

 private:
  std::shared_ptr<const void> storage_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::kF32;
  DeviceType device_ = DeviceType::kCpu;
};

std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace u2
