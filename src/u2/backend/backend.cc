#include <cstring>
#include <new>

#include "u2/backend/cpu/cpu_backend.h"
#include "u2/backend/ops.h"
#ifdef U2_HAVE_CUDA
#include "u2/backend/cuda/cuda_backend.h"
#endif

namespace u2 {

Workspace::Workspace(const Backend& backend) : backend_(backend) {}

Workspace::~Workspace() {
  for (Buffer& b : buffers_) {
    if (b.data) backend_.Free(b.data);
  }
}

float* Workspace::Floats(int slot, size_t count) {
  Buffer& b = buffers_[slot];
  const size_t bytes = std::max<size_t>(count, 16) * sizeof(float);
  if (b.bytes < bytes) {
    if (b.data) backend_.Free(b.data);
    const size_t grown = std::max(bytes, b.bytes + b.bytes / 2);  // amortise growth
    b.data = backend_.Allocate(grown);
    // Out of (device) memory: thrown rather than returned, because kernels write through the
    // pointer at once; the batcher and stream scheduler turn it into an error of that batch.
    if (b.data == nullptr) {
      b.bytes = 0;
      throw std::bad_alloc();
    }
    b.bytes = grown;
  }
  return static_cast<float*>(b.data);
}

size_t Workspace::bytes_reserved() const {
  size_t n = 0;
  for (const Buffer& b : buffers_) n += b.bytes;
  return n;
}

Tensor Backend::NewTensor(Tensor::Shape shape, DType dtype) const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t bytes = std::max<size_t>(static_cast<size_t>(n) * DTypeSize(dtype), 64);
  void* p = Allocate(bytes);
  if (p == nullptr) throw std::bad_alloc();  // see Workspace::Floats
  // Hold the backend (when it is shared-owned) so a tensor may outlive its model.
  std::shared_ptr<const Backend> self = weak_from_this().lock();
  std::shared_ptr<void> storage(p, [self, this](void* q) { Free(q); });
  return Tensor(storage, p, std::move(shape), dtype, device());
}

Tensor Backend::Upload(std::span<const float> host, Tensor::Shape shape) const {
  Tensor t = NewTensor(std::move(shape));
  if (!host.empty()) CopyFromHost(t.data<void>(), host.data(), host.size_bytes());
  return t;
}

std::vector<float> Backend::DownloadRows(const float* src, int rows, int cols, int ld) const {
  std::vector<float> out(static_cast<size_t>(rows) * cols);
  if (ld == cols) {
    if (!out.empty()) CopyToHost(out.data(), src, out.size() * sizeof(float));
  } else {
    for (int r = 0; r < rows; ++r) {
      CopyToHost(out.data() + static_cast<size_t>(r) * cols, src + static_cast<size_t>(r) * ld,
                 cols * sizeof(float));
    }
  }
  return out;
}

void Backend::CopyRows(float* dst, int ld_dst, const float* src, int ld_src, int rows, int cols) const {
  if (ld_dst == cols && ld_src == cols) {
    Copy(dst, src, static_cast<size_t>(rows) * cols * sizeof(float));
    return;
  }
  for (int r = 0; r < rows; ++r) {
    Copy(dst + static_cast<size_t>(r) * ld_dst, src + static_cast<size_t>(r) * ld_src, cols * sizeof(float));
  }
}

void Backend::GatherRows(float* dst, int ld_dst, const float* src, int ld_src, std::span<const int> rows,
                         int cols) const {
  for (size_t i = 0; i < rows.size(); ++i) {
    Copy(dst + i * ld_dst, src + static_cast<size_t>(rows[i]) * ld_src, cols * sizeof(float));
  }
}

std::shared_ptr<const PreparedWeight> Backend::PrepareWeight(const float* w, int n, int k,
                                                             WeightQuantization /*quantization*/) const {
  return std::make_shared<const PreparedWeight>(w, n, k);
}

void Backend::GemmPrepared(int m, const float* a, int lda, const PreparedWeight& w, float beta, float* c,
                           int ldc, const GemmEpilogue& epilogue) const {
  Gemm(false, true, m, w.n(), w.k(), 1.0f, a, lda, w.weight(), w.k(), beta, c, ldc);
  if (!epilogue.empty()) {
    BiasActivation(c, m, w.n(), ldc, epilogue.bias, epilogue.activation, epilogue.scale);
  }
}

const char* PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kFp16:
      return "fp16";
    case Precision::kBf16:
      return "bf16";
    case Precision::kInt8:
      return "int8";
  }
  return "?";
}

StatusOr<Precision> ParsePrecision(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "fp16") return Precision::kFp16;
  if (name == "bf16") return Precision::kBf16;
  if (name == "int8") return Precision::kInt8;
  return InvalidArgument("unknown precision '" + std::string(name) + "' (expected fp32, fp16, bf16 or int8)");
}

Status BackendOptions::Validate() const {
  if (num_threads < 1 || num_threads > 256) {
    return InvalidArgument("num_threads must be in [1, 256], got " + std::to_string(num_threads));
  }
  if (device_index < 0 || device_index > 255) {
    return InvalidArgument("device_index must be in [0, 255], got " + std::to_string(device_index));
  }
  if (device_index != 0 && device != DeviceType::kCuda) {
    return InvalidArgument("a device index (" + std::to_string(device_index) + ") needs the CUDA backend");
  }
  if ((precision == Precision::kFp16 || precision == Precision::kBf16) && device != DeviceType::kCuda) {
    return InvalidArgument(std::string("precision ") + PrecisionName(precision) +
                           " needs the CUDA backend (the CPU computes in fp32 or int8)");
  }
  if (precision == Precision::kInt8 && device != DeviceType::kCpu) {
    return InvalidArgument("precision int8 runs on the CPU backend only (on the GPU use fp16 or bf16)");
  }
  return Status::Ok();
}

std::string BackendOptions::ToString() const {
  std::string s = std::string("BackendOptions{device=") + DeviceTypeName(device);
  if (device == DeviceType::kCuda) s.append(":").append(std::to_string(device_index));
  s += ", num_threads=" + std::to_string(num_threads) + ", precision=" + PrecisionName(precision) + "}";
  return s;
}

StatusOr<std::shared_ptr<const Backend>> CreateBackend(const BackendOptions& options) {
  U2_RETURN_IF_ERROR(options.Validate());
  switch (options.device) {
    case DeviceType::kCpu:
      return std::shared_ptr<const Backend>(CreateCpuBackend(options.num_threads, options.precision));
    case DeviceType::kCuda: {
#ifdef U2_HAVE_CUDA
      U2_ASSIGN_OR_RETURN(std::unique_ptr<Backend> cuda, CreateCudaBackendFromOptions(options));
      return std::shared_ptr<const Backend>(std::move(cuda));
#else
      return Unimplemented("the CUDA backend is not built into this binary");
#endif
    }
  }
  return InvalidArgument("unknown device");
}

}  // namespace u2
