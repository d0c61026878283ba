// Read-only access to a .safetensors file through mmap: the weights are not copied until a
// caller asks for them (e.g. converted to float32 or uploaded to a device).
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section the offsets point into.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

enum class SafeTensorDType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

const char* SafeTensorDTypeName(SafeTensorDType dtype);
size_t SafeTensorDTypeSize(SafeTensorDType dtype);

struct SafeTensorView {
  std::string name;
  SafeTensorDType dtype = SafeTensorDType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;  // points into the mapping; valid while the file is open

  int64_t NumElements() const;
};

class SafeTensorsFile {
 public:
  // Maps the file and validates the header: every tensor's byte range lies inside the data
  // section and matches dtype x shape. A truncated or corrupt file is a DataLoss error.
  static StatusOr<std::shared_ptr<SafeTensorsFile>> Open(const std::string& path);
  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool Contains(const std::string& name) const { return tensors_.count(name) != 0; }
  StatusOr<SafeTensorView> Get(const std::string& name) const;
  std::vector<std::string> Names() const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies a floating-point tensor (F32, F16, BF16 or F64) out as float32.
  StatusOr<std::vector<float>> ReadFloat32(const std::string& name) const;
  // Copies an integer tensor (I64, I32, I16, I8, U8, Bool) out as int32 (range-checked).
  StatusOr<std::vector<int32_t>> ReadInt32(const std::string& name) const;

 private:
  SafeTensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, SafeTensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// IEEE half -> float, exact.
float HalfToFloat(uint16_t h);
// float -> IEEE half, round to nearest even.
uint16_t FloatToHalf(float f);

}  // namespace u2
