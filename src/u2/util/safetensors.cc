#include "u2/util/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace u2 {
namespace {

StatusOr<SafeTensorDType> ParseDType(const std::string& s) {
  if (s == "F32") return SafeTensorDType::kF32;
  if (s == "F16") return SafeTensorDType::kF16;
  if (s == "BF16") return SafeTensorDType::kBF16;
  if (s == "F64") return SafeTensorDType::kF64;
  if (s == "I64") return SafeTensorDType::kI64;
  if (s == "I32") return SafeTensorDType::kI32;
  if (s == "I16") return SafeTensorDType::kI16;
  if (s == "I8") return SafeTensorDType::kI8;
  if (s == "U8") return SafeTensorDType::kU8;
  if (s == "BOOL") return SafeTensorDType::kBool;
  return InvalidArgument("unsupported safetensors dtype '" + s + "'");
}

template <typename T>
T LoadLE(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86-64 and aarch64 are little-endian
  return v;
}

}  // namespace

const char* SafeTensorDTypeName(SafeTensorDType d) {
  switch (d) {
    case SafeTensorDType::kF32:
      return "F32";
    case SafeTensorDType::kF16:
      return "F16";
    case SafeTensorDType::kBF16:
      return "BF16";
    case SafeTensorDType::kF64:
      return "F64";
    case SafeTensorDType::kI64:
      return "I64";
    case SafeTensorDType::kI32:
      return "I32";
    case SafeTensorDType::kI16:
      return "I16";
    case SafeTensorDType::kI8:
      return "I8";
    case SafeTensorDType::kU8:
      return "U8";
    case SafeTensorDType::kBool:
      return "BOOL";
  }
  return "?";
}

size_t SafeTensorDTypeSize(SafeTensorDType d) {
  switch (d) {
    case SafeTensorDType::kF64:
    case SafeTensorDType::kI64:
      return 8;
    case SafeTensorDType::kF32:
    case SafeTensorDType::kI32:
      return 4;
    case SafeTensorDType::kF16:
    case SafeTensorDType::kBF16:
    case SafeTensorDType::kI16:
      return 2;
    case SafeTensorDType::kI8:
    case SafeTensorDType::kU8:
    case SafeTensorDType::kBool:
      return 1;
  }
  return 0;
}

int64_t SafeTensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal half: renormalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

uint16_t FloatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {                                               // result is subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((absx >> 23) - 112) << 10 | ((absx >> 13) & 0x3ffu);
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

StatusOr<std::shared_ptr<SafeTensorsFile>> SafeTensorsFile::Open(const std::string& path) {
  std::shared_ptr<SafeTensorsFile> file(new SafeTensorsFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Internal("cannot stat " + path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return DataLoss(path + ": too short for a safetensors file (" + std::to_string(size) + " bytes)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Internal("cannot mmap " + path + ": " + std::strerror(errno));
  file->mapping_ = map;
  file->mapping_size_ = size;

  const auto* base = static_cast<const std::byte*>(map);
  const uint64_t header_len = LoadLE<uint64_t>(base);
  if (header_len > size - 8) {
    return DataLoss(path + ": header length " + std::to_string(header_len) + " exceeds file size");
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return DataLoss(path + ": header is not a JSON object");
  }
  const std::byte* data = base + 8 + header_len;
  const size_t data_size = size - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object()) {
        for (auto m = it->begin(); m != it->end(); ++m) {
          if (m->is_string()) file->metadata_[m.key()] = m->get<std::string>();
        }
      }
      continue;
    }
    const auto& entry = it.value();
    const std::string where = path + ": tensor '" + it.key() + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets") || !entry["dtype"].is_string() || !entry["shape"].is_array() ||
        !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
      return DataLoss(where + ": malformed header entry");
    }
    SafeTensorView view;
    view.name = it.key();
    auto dtype = ParseDType(entry["dtype"].get<std::string>());
    if (!dtype.ok()) return dtype.status().WithContext(where);
    view.dtype = *dtype;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return DataLoss(where + ": bad shape");
      view.shape.push_back(d.get<int64_t>());
    }
    const auto& off = entry["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return DataLoss(where + ": bad data_offsets");
    }
    const uint64_t begin = off[0].get<uint64_t>();
    const uint64_t end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return DataLoss(where + ": data range [" + std::to_string(begin) + ", " + std::to_string(end) +
                      ") lies outside the file (truncated?)");
    }
    const uint64_t expected = static_cast<uint64_t>(view.NumElements()) * SafeTensorDTypeSize(view.dtype);
    if (end - begin != expected) {
      return DataLoss(where + ": holds " + std::to_string(end - begin) + " bytes, shape needs " +
                      std::to_string(expected));
    }
    view.bytes = std::span<const std::byte>(data + begin, end - begin);
    file->tensors_.emplace(view.name, std::move(view));
  }
  return file;
}

SafeTensorsFile::~SafeTensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

StatusOr<SafeTensorView> SafeTensorsFile::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return NotFound(path_ + ": no tensor named '" + name + "'");
  return it->second;
}

std::vector<std::string> SafeTensorsFile::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) names.push_back(name);
  return names;
}

StatusOr<std::vector<float>> SafeTensorsFile::ReadFloat32(const std::string& name) const {
  U2_ASSIGN_OR_RETURN(SafeTensorView view, Get(name));
  const int64_t n = view.NumElements();
  std::vector<float> out(static_cast<size_t>(n));
  const std::byte* p = view.bytes.data();
  switch (view.dtype) {
    case SafeTensorDType::kF32:
      if (n > 0) std::memcpy(out.data(), p, static_cast<size_t>(n) * 4);
      break;
    case SafeTensorDType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(LoadLE<uint16_t>(p + 2 * i));
      break;
    case SafeTensorDType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        out[i] = std::bit_cast<float>(static_cast<uint32_t>(LoadLE<uint16_t>(p + 2 * i)) << 16);
      }
      break;
    case SafeTensorDType::kF64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<double>(p + 8 * i));
      break;
    default:
      return InvalidArgument(path_ + ": tensor '" + name + "' has dtype " + SafeTensorDTypeName(view.dtype) +
                             ", expected a float type");
  }
  return out;
}

StatusOr<std::vector<int32_t>> SafeTensorsFile::ReadInt32(const std::string& name) const {
  U2_ASSIGN_OR_RETURN(SafeTensorView view, Get(name));
  const int64_t n = view.NumElements();
  std::vector<int32_t> out(static_cast<size_t>(n));
  const std::byte* p = view.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = 0;
    switch (view.dtype) {
      case SafeTensorDType::kI64:
        v = LoadLE<int64_t>(p + 8 * i);
        break;
      case SafeTensorDType::kI32:
        v = LoadLE<int32_t>(p + 4 * i);
        break;
      case SafeTensorDType::kI16:
        v = LoadLE<int16_t>(p + 2 * i);
        break;
      case SafeTensorDType::kI8:
        v = LoadLE<int8_t>(p + i);
        break;
      case SafeTensorDType::kU8:
      case SafeTensorDType::kBool:
        v = LoadLE<uint8_t>(p + i);
        break;
      default:
        return InvalidArgument(path_ + ": tensor '" + name + "' has dtype " +
                               SafeTensorDTypeName(view.dtype) + ", expected an integer type");
    }
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
      return InvalidArgument(path_ + ": tensor '" + name + "' value out of int32 range");
    }
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

}  // namespace u2
