#include "fuzz_support.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>

#include "u2/server/audio_inputs.h"
#include "u2/server/request_parameters.h"

namespace u2::fuzz {
namespace {

// models/demo/units.txt.
constexpr std::string_view kDemoUnits =
    "<blank> 0\n<unk> 1\n<sos/eos> 2\n' 3\n\xe2\x96\x81 4\na 5\nb 6\nc 7\nd 8\ne 9\nf 10\ng 11\nh 12\n"
    "i 13\nj 14\nk 15\nl 16\nm 17\nn 18\no 19\np 20\nq 21\nr 22\ns 23\nt 24\nu 25\nv 26\nw 27\nx 28\n"
    "y 29\nz 30\n";

// models/demo/model.json (a streaming conformer with a bidirectional decoder).
constexpr const char* kDemoModelJson = R"({
  "format": "u2serve-model", "format_version": 1, "input_dim": 80, "vocab_size": 31,
  "blank_id": 0, "unk_id": 1, "sos_id": 2, "eos_id": 2, "cmvn": true, "max_positions": 5000,
  "frontend": {"sample_rate": 16000, "num_mel_bins": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0},
  "encoder": {"type": "conformer", "output_size": 144, "attention_heads": 4, "linear_units": 576,
              "num_blocks": 6, "input_layer": "conv2d", "pos_enc_layer_type": "rel_pos",
              "selfattention_layer_type": "rel_selfattn", "normalize_before": true, "final_norm": true,
              "macaron_style": true, "use_cnn_module": true, "cnn_module_kernel": 8, "causal": true,
              "cnn_module_norm": "layer_norm", "activation_type": "swish", "norm_eps": 1e-05,
              "conv_norm_eps": 1e-05, "use_dynamic_chunk": true, "static_chunk_size": 0},
  "decoder": {"type": "bitransformer", "attention_heads": 4, "linear_units": 576, "num_blocks": 2,
              "r_num_blocks": 1, "normalize_before": true, "norm_eps": 1e-05, "activation_type": "relu"},
  "decoding": {"ctc_weight": 0.3, "reverse_weight": 0.0, "beam_size": 20, "decoding_chunk_size": 16,
               "num_decoding_left_chunks": -1, "lm_weight": 0.3, "word_bonus": 1.0}
})";

// Aborting on a broken built-in table beats fuzzing with a wrong one.
template <typename T>
T ValueOrDie(StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    spdlog::critical("fuzz support: {}: {}", what, v.status().message());
    std::abort();
  }
  return std::move(v).value();
}

}  // namespace

void Init() { spdlog::set_level(spdlog::level::off); }

const SymbolTable& DemoSymbols() {
  static const SymbolTable symbols = ValueOrDie(SymbolTable::FromText(kDemoUnits, "demo units"), "units");
  return symbols;
}

const ModelConfig& DemoModelConfig() {
  static const ModelConfig config = ValueOrDie(ModelConfig::FromJsonText(kDemoModelJson), "model.json");
  return config;
}

void CheckOfflineRequest(const server::InferRequest& request) {
  (void)server::CheckRequestedOutputs(request, "demo");
  if (server::CheckTritonParameters(request.parameters).ok()) {
    // A fresh compiler per input: its cache would make runs depend on earlier inputs.
    const HotwordCompiler hotwords(DemoSymbols(), HotwordsConfig{});
    DecodingOptions options;
    if (server::ApplyRequestParameters(request.parameters, &options, &hotwords).ok()) {
      (void)options.Validate(DemoModelConfig());
      (void)options.ToString();
    }
  }
  // The server's own limits: a batch of 8, 60 s of 16 kHz audio per row.
  auto audio = server::DecodeAudioInputs(request, "demo", 8, int64_t{60} * server::kWireSampleRate);
  (void)audio;
  (void)server::RequestDeadline(request.parameters, request.received, 0);
  CheckStreamParameters(request.parameters);
}

void CheckStreamParameters(const server::ParameterMap& parameters) {
  const HotwordCompiler hotwords(DemoSymbols(), HotwordsConfig{});
  StreamOptions options;
  if (server::ApplyRequestParameters(parameters, &options, &hotwords).ok()) {
    (void)options.Validate(DemoModelConfig());
    (void)options.ToString();
  }
}

}  // namespace u2::fuzz
