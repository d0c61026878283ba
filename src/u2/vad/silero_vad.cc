#include "u2/vad/silero_vad.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "u2/util/safetensors.h"

namespace u2 {
namespace {

constexpr int kPadded = SileroVad::kContext + SileroVad::kWindow + 64;  // 640: reflect-padded input
constexpr int kStftTaps = 256, kStftHop = 128, kStftFrames = 4, kBins = 129;
constexpr int kConvIn[4] = {129, 128, 64, 64}, kConvOut[4] = {128, 64, 64, 128},
              kConvStride[4] = {1, 2, 2, 1};

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

StatusOr<std::unique_ptr<SileroVad>> SileroVad::Load(const std::string& dir,
                                                     std::shared_ptr<const Backend> backend) {
  std::ifstream config_file(dir + "/vad.json");
  if (!config_file)
    return NotFound("no VAD model at " + dir + " (vad.json; tools/convert_silero_vad.py makes it)");
  nlohmann::json config = nlohmann::json::parse(config_file, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object())
    return InvalidArgument(dir + "/vad.json: not a JSON object");
  if (config.value("type", "") != "silero_vad" || config.value("sample_rate", 0) != kSampleRate ||
      config.value("window", 0) != kWindow || config.value("context", 0) != kContext) {
    return InvalidArgument(dir + "/vad.json: expected a 16 kHz silero_vad model with 512-sample windows");
  }
  U2_ASSIGN_OR_RETURN(auto weights, SafeTensorsFile::Open(dir + "/vad.safetensors"));
  auto read = [&](const std::string& name, size_t count) -> StatusOr<std::vector<float>> {
    U2_ASSIGN_OR_RETURN(std::vector<float> v, weights->ReadFloat32(name));
    if (v.size() != count) {
      return InvalidArgument(dir + "/vad.safetensors: " + name + " has " + std::to_string(v.size()) +
                             " values, expected " + std::to_string(count));
    }
    for (float x : v) {
      if (!std::isfinite(x)) return InvalidArgument(dir + "/vad.safetensors: " + name + " is not finite");
    }
    return v;
  };
  std::unique_ptr<SileroVad> vad(new SileroVad());
  if (!backend) {
    BackendOptions options;
    U2_ASSIGN_OR_RETURN(backend, CreateBackend(options));
  }
  vad->backend_ = std::move(backend);
  U2_ASSIGN_OR_RETURN(vad->basis_, read("model.stft.forward_basis_buffer", 258 * kStftTaps));
  for (int i = 0; i < 4; ++i) {
    const std::string base = "model.encoder." + std::to_string(i) + ".reparam_conv.";
    U2_ASSIGN_OR_RETURN(std::vector<float> w, read(base + "weight", size_t(kConvOut[i]) * kConvIn[i] * 3));
    U2_ASSIGN_OR_RETURN(vad->conv_b_[i], read(base + "bias", kConvOut[i]));
    // (out, in, tap) -> (out, tap·in + in): the im2col rows hold the three taps one after another.
    vad->conv_w_[i].resize(w.size());
    for (int o = 0; o < kConvOut[i]; ++o)
      for (int c = 0; c < kConvIn[i]; ++c)
        for (int k = 0; k < 3; ++k)
          vad->conv_w_[i][(size_t(o) * 3 + k) * kConvIn[i] + c] = w[(size_t(o) * kConvIn[i] + c) * 3 + k];
  }
  U2_ASSIGN_OR_RETURN(vad->w_ih_, read("model.decoder.rnn.weight_ih", 4 * kHidden * kHidden));
  U2_ASSIGN_OR_RETURN(vad->w_hh_, read("model.decoder.rnn.weight_hh", 4 * kHidden * kHidden));
  U2_ASSIGN_OR_RETURN(std::vector<float> b_ih, read("model.decoder.rnn.bias_ih", 4 * kHidden));
  U2_ASSIGN_OR_RETURN(std::vector<float> b_hh, read("model.decoder.rnn.bias_hh", 4 * kHidden));
  vad->b_gates_.resize(4 * kHidden);
  for (int g = 0; g < 4 * kHidden; ++g) vad->b_gates_[g] = b_ih[g] + b_hh[g];
  U2_ASSIGN_OR_RETURN(vad->out_w_, read("model.decoder.decoder.2.weight", kHidden));
  U2_ASSIGN_OR_RETURN(std::vector<float> out_b, read("model.decoder.decoder.2.bias", 1));
  vad->out_b_ = out_b[0];
  return vad;
}

std::vector<float> SileroVad::Process(State& state, std::span<const float> samples) const {
  const int n = static_cast<int>(samples.size() / kWindow);
  if (n == 0) return {};
  const Backend& be = *backend_;
  // 1. Each window's 640 padded samples as 4 STFT frames of 256: rows (window, frame).
  std::vector<float> frames(size_t(n) * kStftFrames * kStftTaps);
  std::vector<float> x(kPadded);
  for (int w = 0; w < n; ++w) {
    const float* fresh = samples.data() + size_t(w) * kWindow;
    const float* previous = w == 0 ? state.context.data() : fresh - kContext;
    std::copy(previous, previous + kContext, x.begin());
    std::copy(fresh, fresh + kWindow, x.begin() + kContext);
    // Reflect padding on the right: x[575 + j] = x[575 - j].
    for (int j = 1; j <= 64; ++j) x[kContext + kWindow - 1 + j] = x[kContext + kWindow - 1 - j];
    for (int f = 0; f < kStftFrames; ++f)
      std::copy(x.begin() + f * kStftHop, x.begin() + f * kStftHop + kStftTaps,
                frames.begin() + (size_t(w) * kStftFrames + f) * kStftTaps);
  }
  // 2. STFT: (rows x 256) · basisᵀ -> (rows x 258), then the magnitude of the 129 bins.
  const int rows = n * kStftFrames;
  std::vector<float> spec(size_t(rows) * 258);
  be.Gemm(false, true, rows, 258, kStftTaps, 1.0f, frames.data(), kStftTaps, basis_.data(), kStftTaps, 0.0f,
          spec.data(), 258);
  std::vector<float> act(size_t(rows) * kBins);
  for (int r = 0; r < rows; ++r) {
    const float* s = spec.data() + size_t(r) * 258;
    for (int b = 0; b < kBins; ++b)
      act[size_t(r) * kBins + b] = std::sqrt(s[b] * s[b] + s[kBins + b] * s[kBins + b]);
  }
  // 3. The four convolutions over each window's frames (kernel 3, zero padding 1), as im2col GEMMs.
  int length = kStftFrames;
  for (int i = 0; i < 4; ++i) {
    const int in = kConvIn[i], out = kConvOut[i], stride = kConvStride[i];
    const int out_length = (length + 2 - 3) / stride + 1;
    std::vector<float> cols(size_t(n) * out_length * 3 * in, 0.0f);
    for (int w = 0; w < n; ++w)
      for (int t = 0; t < out_length; ++t)
        for (int k = 0; k < 3; ++k) {
          const int src = t * stride - 1 + k;
          if (src < 0 || src >= length) continue;
          std::copy_n(act.data() + (size_t(w) * length + src) * in, in,
                      cols.data() + ((size_t(w) * out_length + t) * 3 + k) * in);
        }
    std::vector<float> y(size_t(n) * out_length * out);
    be.Gemm(false, true, n * out_length, out, 3 * in, 1.0f, cols.data(), 3 * in, conv_w_[i].data(), 3 * in,
            0.0f, y.data(), out);
    be.BiasActivation(y.data(), n * out_length, out, out, conv_b_[i].data(), Activation::kRelu, 1.0f);
    act = std::move(y);
    length = out_length;
  }
  // 4. The LSTM's input contributions for every window at once, then the recurrence.
  std::vector<float> gates_x(size_t(n) * 4 * kHidden);
  be.Gemm(false, true, n, 4 * kHidden, kHidden, 1.0f, act.data(), kHidden, w_ih_.data(), kHidden, 0.0f,
          gates_x.data(), 4 * kHidden);
  std::vector<float> probs(n);
  std::vector<float> gates(4 * kHidden);
  for (int w = 0; w < n; ++w) {
    for (int g = 0; g < 4 * kHidden; ++g) {
      const float* row = w_hh_.data() + size_t(g) * kHidden;
      float sum = gates_x[size_t(w) * 4 * kHidden + g] + b_gates_[g];
      for (int j = 0; j < kHidden; ++j) sum += row[j] * state.h[j];
      gates[g] = sum;
    }
    float logit = out_b_;
    for (int j = 0; j < kHidden; ++j) {
      const float i_gate = Sigmoid(gates[j]), f_gate = Sigmoid(gates[kHidden + j]);
      const float g_gate = std::tanh(gates[2 * kHidden + j]), o_gate = Sigmoid(gates[3 * kHidden + j]);
      state.c[j] = f_gate * state.c[j] + i_gate * g_gate;
      state.h[j] = o_gate * std::tanh(state.c[j]);
      logit += out_w_[j] * std::max(state.h[j], 0.0f);
    }
    probs[w] = Sigmoid(logit);
  }
  const float* last = samples.data() + size_t(n) * kWindow - kContext;
  std::copy(last, last + kContext, state.context.begin());
  return probs;
}

}  // namespace u2
