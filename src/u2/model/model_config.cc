#include "u2/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <utility>
#include <vector>

namespace u2 {
namespace {

using nlohmann::json;

Status KeyError(const std::string& key, const std::string& what) {
  return InvalidArgument("model.json: " + key + ": " + what);
}

std::string Shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Reads one member of an object; `required` members that are missing are an error, optional ones
// keep the caller's default.
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  const json* Find(const char* key, bool required, Status* status) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) {
      if (required) *status = KeyError(prefix_ + key, "missing required key");
      return nullptr;
    }
    return &*it;
  }

  Status Int(const char* key, bool required, int* out) const {
    Status st;
    const json* v = Find(key, required, &st);
    if (!v) return st;
    if (!v->is_number_integer()) return KeyError(prefix_ + key, "must be an integer, got " + Shown(*v));
    const int64_t x = v->get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) return KeyError(prefix_ + key, "out of range: " + Shown(*v));
    *out = static_cast<int>(x);
    return Status::Ok();
  }

  Status Float(const char* key, bool required, float* out) const {
    Status st;
    const json* v = Find(key, required, &st);
    if (!v) return st;
    if (!v->is_number()) return KeyError(prefix_ + key, "must be a number, got " + Shown(*v));
    *out = v->get<float>();
    return Status::Ok();
  }

  Status Bool(const char* key, bool required, bool* out) const {
    Status st;
    const json* v = Find(key, required, &st);
    if (!v) return st;
    if (!v->is_boolean()) return KeyError(prefix_ + key, "must be true or false, got " + Shown(*v));
    *out = v->get<bool>();
    return Status::Ok();
  }

  Status String(const char* key, bool required, std::string* out, bool* present = nullptr) const {
    Status st;
    const json* v = Find(key, required, &st);
    if (present) *present = v != nullptr;
    if (!v) return st;
    if (!v->is_string()) return KeyError(prefix_ + key, "must be a string, got " + Shown(*v));
    *out = v->get<std::string>();
    return Status::Ok();
  }

  template <typename E>
  Status Enum(const char* key, bool required, const std::vector<std::pair<const char*, E>>& values, E* out,
              bool* present = nullptr) const {
    std::string s;
    bool here = false;
    U2_RETURN_IF_ERROR(String(key, required, &s, &here));
    if (present) *present = here;
    if (!here) return Status::Ok();
    std::string expected;
    for (const auto& [name, value] : values) {
      if (s == name) {
        *out = value;
        return Status::Ok();
      }
      expected += (expected.empty() ? "" : ", ") + std::string(name);
    }
    return KeyError(prefix_ + key, "unsupported value \"" + s + "\" (expected one of " + expected + ")");
  }

 private:
  const json& obj_;
  std::string prefix_;
};

const std::vector<std::pair<const char*, Activation>> kActivations = {{"swish", Activation::kSilu},
                                                                      {"relu", Activation::kRelu}};
// WeNet's cgMLP gate: "identity" or one of its activation classes.
const std::vector<std::pair<const char*, Activation>> kGateActivations = {{"identity", Activation::kNone},
                                                                          {"gelu", Activation::kGelu},
                                                                          {"swish", Activation::kSilu},
                                                                          {"relu", Activation::kRelu}};

}  // namespace

const char* EncoderTypeName(EncoderType t) {
  switch (t) {
    case EncoderType::kConformer:
      return "conformer";
    case EncoderType::kTransformer:
      return "transformer";
    case EncoderType::kBranchformer:
      return "branchformer";
    case EncoderType::kEBranchformer:
      return "e_branchformer";
    case EncoderType::kSqueezeformer:
      return "squeezeformer";
    case EncoderType::kEfficientConformer:
      return "efficientConformer";
  }
  return "?";
}
const char* MergeMethodName(MergeMethod m) { return m == MergeMethod::kConcat ? "concat" : "fixed_ave"; }
const char* InputLayerName(InputLayer t) {
  switch (t) {
    case InputLayer::kConv2d2:
      return "conv2d2";
    case InputLayer::kConv2d:
      return "conv2d";
    case InputLayer::kConv2d6:
      return "conv2d6";
    case InputLayer::kConv2d8:
      return "conv2d8";
    case InputLayer::kDwConv2d4:
      return "dw_conv2d4";
  }
  return "?";
}
std::vector<SubsamplingConv> SubsamplingConvs(InputLayer t) {
  switch (t) {
    case InputLayer::kConv2d2:
      return {{3, 2}};
    case InputLayer::kConv2d:
    case InputLayer::kDwConv2d4:
      return {{3, 2}, {3, 2}};
    case InputLayer::kConv2d6:
      return {{3, 2}, {5, 3}};
    case InputLayer::kConv2d8:
      return {{3, 2}, {3, 2}, {3, 2}};
  }
  return {};
}
const char* SubsamplingLinearName(InputLayer t) {
  if (t == InputLayer::kDwConv2d4) return "encoder.embed.input_proj.0";
  return t == InputLayer::kConv2d2 || t == InputLayer::kConv2d ? "encoder.embed.out.0"
                                                               : "encoder.embed.linear";
}
const char* PosEncTypeName(PosEncType t) {
  switch (t) {
    case PosEncType::kRelPos:
      return "rel_pos";
    case PosEncType::kAbsPos:
      return "abs_pos";
    case PosEncType::kNoPos:
      return "no_pos";
  }
  return "?";
}
const char* SelfAttentionTypeName(SelfAttentionType t) {
  return t == SelfAttentionType::kRelSelfAttn ? "rel_selfattn" : "selfattn";
}
const char* ConvNormTypeName(ConvNormType t) {
  return t == ConvNormType::kBatchNorm ? "batch_norm" : "layer_norm";
}
const char* DecoderTypeName(DecoderType t) {
  switch (t) {
    case DecoderType::kNone:
      return "none";
    case DecoderType::kTransformer:
      return "transformer";
    case DecoderType::kBiTransformer:
      return "bitransformer";
  }
  return "?";
}
const char* ActivationName(Activation a) {
  switch (a) {
    case Activation::kNone:
      return "none";
    case Activation::kRelu:
      return "relu";
    case Activation::kSilu:
      return "swish";
    case Activation::kGelu:
      return "gelu";
  }
  return "?";
}

StatusOr<ModelConfig> ModelConfig::FromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("model.json: the top level must be an object, got " + Shown(j));
  ModelConfig c;
  ObjectReader top(j, "");
  std::string format;
  U2_RETURN_IF_ERROR(top.String("format", true, &format));
  if (format != "u2serve-model") {
    return KeyError("format", "unsupported value \"" + format + "\" (expected \"u2serve-model\")");
  }
  U2_RETURN_IF_ERROR(top.Int("format_version", true, &c.format_version));
  U2_RETURN_IF_ERROR(top.Int("input_dim", true, &c.input_dim));
  U2_RETURN_IF_ERROR(top.Int("vocab_size", true, &c.vocab_size));
  U2_RETURN_IF_ERROR(top.Int("blank_id", true, &c.blank_id));
  U2_RETURN_IF_ERROR(top.Int("unk_id", false, &c.unk_id));
  U2_RETURN_IF_ERROR(top.Int("sos_id", true, &c.sos_id));
  U2_RETURN_IF_ERROR(top.Int("eos_id", true, &c.eos_id));
  U2_RETURN_IF_ERROR(top.Bool("cmvn", true, &c.cmvn));
  U2_RETURN_IF_ERROR(top.Int("max_positions", false, &c.max_positions));

  if (auto it = j.find("frontend"); it != j.end()) {
    if (!it->is_object()) return KeyError("frontend", "must be an object, got " + Shown(*it));
    ObjectReader f(*it, "frontend.");
    U2_RETURN_IF_ERROR(f.Int("sample_rate", false, &c.frontend.sample_rate));
    U2_RETURN_IF_ERROR(f.Int("num_mel_bins", false, &c.frontend.num_mel_bins));
    U2_RETURN_IF_ERROR(f.Float("frame_length_ms", false, &c.frontend.frame_length_ms));
    U2_RETURN_IF_ERROR(f.Float("frame_shift_ms", false, &c.frontend.frame_shift_ms));
  } else {
    c.frontend.num_mel_bins = c.input_dim;
  }

  auto enc_it = j.find("encoder");
  if (enc_it == j.end()) return KeyError("encoder", "missing required key");
  if (!enc_it->is_object()) return KeyError("encoder", "must be an object, got " + Shown(*enc_it));
  {
    EncoderConfig& e = c.encoder;
    ObjectReader r(*enc_it, "encoder.");
    U2_RETURN_IF_ERROR(r.Enum<EncoderType>("type", true,
                                           {{"conformer", EncoderType::kConformer},
                                            {"transformer", EncoderType::kTransformer},
                                            {"branchformer", EncoderType::kBranchformer},
                                            {"e_branchformer", EncoderType::kEBranchformer},
                                            {"squeezeformer", EncoderType::kSqueezeformer},
                                            {"efficientConformer", EncoderType::kEfficientConformer}},
                                           &e.type));
    U2_RETURN_IF_ERROR(r.Int("output_size", true, &e.output_size));
    U2_RETURN_IF_ERROR(r.Int("attention_heads", true, &e.attention_heads));
    U2_RETURN_IF_ERROR(r.Int("linear_units", true, &e.linear_units));
    U2_RETURN_IF_ERROR(r.Int("num_blocks", true, &e.num_blocks));
    U2_RETURN_IF_ERROR(r.Enum<InputLayer>("input_layer", true,
                                          {{"conv2d2", InputLayer::kConv2d2},
                                           {"conv2d", InputLayer::kConv2d},
                                           {"conv2d6", InputLayer::kConv2d6},
                                           {"conv2d8", InputLayer::kConv2d8},
                                           {"dw_conv2d4", InputLayer::kDwConv2d4}},
                                          &e.input_layer));
    U2_RETURN_IF_ERROR(r.Enum<PosEncType>(
        "pos_enc_layer_type", true,
        {{"rel_pos", PosEncType::kRelPos}, {"abs_pos", PosEncType::kAbsPos}, {"no_pos", PosEncType::kNoPos}},
        &e.pos_enc_layer_type));
    // Default attention follows the positional encoding (WeNet's 2022-06..2023-11 rule).
    e.selfattention_layer_type = e.pos_enc_layer_type == PosEncType::kRelPos ? SelfAttentionType::kRelSelfAttn
                                                                             : SelfAttentionType::kSelfAttn;
    U2_RETURN_IF_ERROR(r.Enum<SelfAttentionType>(
        "selfattention_layer_type", false,
        {{"rel_selfattn", SelfAttentionType::kRelSelfAttn}, {"selfattn", SelfAttentionType::kSelfAttn}},
        &e.selfattention_layer_type));
    U2_RETURN_IF_ERROR(r.Bool("normalize_before", false, &e.normalize_before));
    U2_RETURN_IF_ERROR(r.Bool("final_norm", false, &e.final_norm));
    if (e.type == EncoderType::kTransformer) {
      e.macaron_style = false;
      e.use_cnn_module = false;
    }
    U2_RETURN_IF_ERROR(r.Bool("macaron_style", false, &e.macaron_style));
    U2_RETURN_IF_ERROR(r.Bool("use_cnn_module", false, &e.use_cnn_module));
    U2_RETURN_IF_ERROR(r.Int("cnn_module_kernel", false, &e.cnn_module_kernel));
    U2_RETURN_IF_ERROR(r.Bool("causal", false, &e.causal));
    U2_RETURN_IF_ERROR(r.Enum<ConvNormType>(
        "cnn_module_norm", false,
        {{"batch_norm", ConvNormType::kBatchNorm}, {"layer_norm", ConvNormType::kLayerNorm}},
        &e.cnn_module_norm));
    if (e.type == EncoderType::kTransformer) e.activation = Activation::kRelu;
    U2_RETURN_IF_ERROR(r.Enum<Activation>("activation_type", false, kActivations, &e.activation));
    U2_RETURN_IF_ERROR(r.Float("norm_eps", false, &e.norm_eps));
    U2_RETURN_IF_ERROR(r.Float("conv_norm_eps", false, &e.conv_norm_eps));
    U2_RETURN_IF_ERROR(r.Bool("use_dynamic_chunk", false, &e.use_dynamic_chunk));
    U2_RETURN_IF_ERROR(r.Int("static_chunk_size", false, &e.static_chunk_size));
    if (e.is_branchformer_family()) {
      U2_RETURN_IF_ERROR(r.Int("cgmlp_linear_units", true, &e.cgmlp_linear_units));
      U2_RETURN_IF_ERROR(r.Int("cgmlp_conv_kernel", true, &e.cgmlp_conv_kernel));
      U2_RETURN_IF_ERROR(r.Bool("use_linear_after_conv", false, &e.use_linear_after_conv));
      U2_RETURN_IF_ERROR(r.Enum<Activation>("gate_activation", false, kGateActivations, &e.gate_activation));
    }
    if (e.type == EncoderType::kBranchformer) {
      U2_RETURN_IF_ERROR(r.Bool("use_attn", false, &e.use_attn));
      U2_RETURN_IF_ERROR(r.Bool("use_cgmlp", false, &e.use_cgmlp));
      U2_RETURN_IF_ERROR(r.Enum<MergeMethod>(
          "merge_method", false,
          {{"concat", MergeMethod::kConcat}, {"fixed_ave", MergeMethod::kFixedAverage}}, &e.merge_method));
      if (auto w = enc_it->find("cgmlp_weight"); w != enc_it->end() && !w->is_null()) {
        // WeNet takes one number for every block or a list with one per block.
        const json list = w->is_array() ? *w : json::array({*w});
        for (const json& v : list) {
          if (!v.is_number()) {
            return KeyError("encoder.cgmlp_weight",
                            "must be a number or a list of numbers, got " + Shown(*w));
          }
          e.cgmlp_weight.push_back(v.get<float>());
        }
        if (!w->is_array()) e.cgmlp_weight.assign(std::max(e.num_blocks, 0), e.cgmlp_weight[0]);
      }
    }
    if (e.type == EncoderType::kEBranchformer) {
      U2_RETURN_IF_ERROR(r.Bool("use_ffn", false, &e.use_ffn));
      U2_RETURN_IF_ERROR(r.Int("merge_conv_kernel", true, &e.merge_conv_kernel));
    }
    auto int_list = [&](const char* key, std::vector<int>* out) -> Status {
      auto it = enc_it->find(key);
      if (it == enc_it->end() || it->is_null())
        return KeyError(std::string("encoder.") + key, "missing required key");
      const json list = it->is_array() ? *it : json::array({*it});  // WeNet also takes one int
      out->clear();
      for (const json& v : list) {
        if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX) {
          return KeyError(std::string("encoder.") + key,
                          "must be an integer or a list of integers, got " + Shown(*it));
        }
        out->push_back(v.get<int>());
      }
      return Status::Ok();
    };
    if (e.type == EncoderType::kSqueezeformer) {
      U2_RETURN_IF_ERROR(r.Int("encoder_dim", true, &e.encoder_dim));
      U2_RETURN_IF_ERROR(int_list("reduce_idx", &e.reduce_idx));
      U2_RETURN_IF_ERROR(int_list("recover_idx", &e.recover_idx));
      U2_RETURN_IF_ERROR(r.Enum<TimeReductionType>(
          "time_reduction_layer_type", true,
          {{"conv1d", TimeReductionType::kConv1d}, {"stream", TimeReductionType::kStream}},
          &e.time_reduction));
      U2_RETURN_IF_ERROR(r.Bool("do_rel_shift", true, &e.do_rel_shift));
      U2_RETURN_IF_ERROR(r.Bool("dw_stride", true, &e.dw_stride));
      U2_RETURN_IF_ERROR(r.Bool("adaptive_scale", true, &e.adaptive_scale));
      bool concat_after = false;
      U2_RETURN_IF_ERROR(r.Bool("concat_after", false, &concat_after));
      if (concat_after) return KeyError("encoder.concat_after", "true is not supported");
    }
    if (e.type == EncoderType::kEfficientConformer) {
      U2_RETURN_IF_ERROR(int_list("stride_layer_idx", &e.stride_layer_idx));
      U2_RETURN_IF_ERROR(int_list("stride", &e.stride));
      U2_RETURN_IF_ERROR(int_list("group_layer_idx", &e.group_layer_idx));
      U2_RETURN_IF_ERROR(r.Int("group_size", true, &e.group_size));
      U2_RETURN_IF_ERROR(int_list("cnn_module_kernels", &e.cnn_module_kernels));
    }
  }

  if (auto it = j.find("decoder"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return KeyError("decoder", "must be an object, got " + Shown(*it));
    DecoderConfig& d = c.decoder;
    ObjectReader r(*it, "decoder.");
    U2_RETURN_IF_ERROR(r.Enum<DecoderType>(
        "type", true,
        {{"transformer", DecoderType::kTransformer}, {"bitransformer", DecoderType::kBiTransformer}},
        &d.type));
    U2_RETURN_IF_ERROR(r.Int("attention_heads", true, &d.attention_heads));
    U2_RETURN_IF_ERROR(r.Int("linear_units", true, &d.linear_units));
    U2_RETURN_IF_ERROR(r.Int("num_blocks", true, &d.num_blocks));
    U2_RETURN_IF_ERROR(r.Int("r_num_blocks", d.type == DecoderType::kBiTransformer, &d.r_num_blocks));
    U2_RETURN_IF_ERROR(r.Bool("normalize_before", false, &d.normalize_before));
    U2_RETURN_IF_ERROR(r.Float("norm_eps", false, &d.norm_eps));
    U2_RETURN_IF_ERROR(r.Enum<Activation>("activation_type", false, kActivations, &d.activation));
  }

  if (auto it = j.find("decoding"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return KeyError("decoding", "must be an object, got " + Shown(*it));
    DecodingDefaults& d = c.decoding;
    ObjectReader r(*it, "decoding.");
    U2_RETURN_IF_ERROR(r.Float("ctc_weight", false, &d.ctc_weight));
    U2_RETURN_IF_ERROR(r.Float("reverse_weight", false, &d.reverse_weight));
    U2_RETURN_IF_ERROR(r.Int("beam_size", false, &d.beam_size));
    U2_RETURN_IF_ERROR(r.Int("decoding_chunk_size", false, &d.decoding_chunk_size));
    U2_RETURN_IF_ERROR(r.Int("num_decoding_left_chunks", false, &d.num_decoding_left_chunks));
    U2_RETURN_IF_ERROR(r.Float("lm_weight", false, &d.lm_weight));
    U2_RETURN_IF_ERROR(r.Float("word_bonus", false, &d.word_bonus));
  }
  U2_RETURN_IF_ERROR(c.Validate());
  return c;
}

StatusOr<ModelConfig> ModelConfig::FromJsonText(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("model.json: not valid JSON");
  return FromJson(j);
}

StatusOr<ModelConfig> ModelConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = FromJsonText(ss.str());
  if (!c.ok()) return c.status().WithContext(path);
  return c;
}

Status ModelConfig::Validate() const {
  auto range = [](const std::string& key, int v, int lo, int hi) -> Status {
    if (v < lo || v > hi) {
      return KeyError(key, "value " + std::to_string(v) + " out of range [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]");
    }
    return Status::Ok();
  };
  auto eps_ok = [](const std::string& key, float v) -> Status {
    if (!(v > 0.0f) || !std::isfinite(v))
      return KeyError(key, "must be a positive number, got " + std::to_string(v));
    return Status::Ok();
  };
  if (format_version != kFormatVersion) {
    return KeyError("format_version", "unsupported value " + std::to_string(format_version) +
                                          " (this build reads " + std::to_string(kFormatVersion) + ")");
  }
  U2_RETURN_IF_ERROR(range("input_dim", input_dim, 8, 1024));
  U2_RETURN_IF_ERROR(range("vocab_size", vocab_size, 2, 1 << 22));
  U2_RETURN_IF_ERROR(range("max_positions", max_positions, 16, 1 << 20));
  U2_RETURN_IF_ERROR(range("blank_id", blank_id, 0, vocab_size - 1));
  U2_RETURN_IF_ERROR(range("sos_id", sos_id, 0, vocab_size - 1));
  U2_RETURN_IF_ERROR(range("eos_id", eos_id, 0, vocab_size - 1));
  U2_RETURN_IF_ERROR(range("frontend.sample_rate", frontend.sample_rate, 1000, 192000));
  if (frontend.num_mel_bins != input_dim) {
    return KeyError("frontend.num_mel_bins", "value " + std::to_string(frontend.num_mel_bins) +
                                                 " differs from input_dim " + std::to_string(input_dim));
  }
  if (!(frontend.frame_shift_ms > 0) || !(frontend.frame_length_ms >= frontend.frame_shift_ms)) {
    return KeyError("frontend", "need 0 < frame_shift_ms <= frame_length_ms");
  }
  const EncoderConfig& e = encoder;
  U2_RETURN_IF_ERROR(range("encoder.output_size", e.output_size, 1, 8192));
  U2_RETURN_IF_ERROR(range("encoder.attention_heads", e.attention_heads, 1, 128));
  if (e.output_size % e.attention_heads != 0) {
    return KeyError("encoder.attention_heads", "value " + std::to_string(e.attention_heads) +
                                                   " does not divide output_size " +
                                                   std::to_string(e.output_size));
  }
  U2_RETURN_IF_ERROR(range("encoder.linear_units", e.linear_units, 1, 65536));
  U2_RETURN_IF_ERROR(range("encoder.num_blocks", e.num_blocks, 0, 256));
  U2_RETURN_IF_ERROR(eps_ok("encoder.norm_eps", e.norm_eps));
  U2_RETURN_IF_ERROR(eps_ok("encoder.conv_norm_eps", e.conv_norm_eps));
  U2_RETURN_IF_ERROR(range("encoder.static_chunk_size", e.static_chunk_size, 0, 1 << 20));
  if (SubsampledFeatureDim() < 1) {
    return KeyError("input_dim", "value " + std::to_string(input_dim) + " is too small for input_layer " +
                                     InputLayerName(e.input_layer));
  }
  if (e.has_conv_module()) {
    U2_RETURN_IF_ERROR(range("encoder.cnn_module_kernel", e.cnn_module_kernel, 1, 1023));
    if (!e.causal && e.cnn_module_kernel % 2 == 0) {
      return KeyError("encoder.cnn_module_kernel", "value " + std::to_string(e.cnn_module_kernel) +
                                                       " must be odd for a non-causal convolution");
    }
    if (!e.normalize_before) {
      return KeyError("encoder.normalize_before", "false with a convolution module is not supported");
    }
  }
  if (e.type == EncoderType::kSqueezeformer) {
    U2_RETURN_IF_ERROR(range("encoder.encoder_dim", e.encoder_dim, 1, 8192));
    if (e.encoder_dim % e.attention_heads != 0) {
      return KeyError("encoder.attention_heads", "value " + std::to_string(e.attention_heads) +
                                                     " does not divide encoder_dim " +
                                                     std::to_string(e.encoder_dim));
    }
    if (e.input_layer != InputLayer::kDwConv2d4) {
      return KeyError("encoder.input_layer", std::string("must be dw_conv2d4 for squeezeformer, got ") +
                                                 InputLayerName(e.input_layer));
    }
    if (e.normalize_before)
      return KeyError("encoder.normalize_before", "true is not supported for squeezeformer");
    if (!e.recover_idx.empty() && e.recover_idx.size() != e.reduce_idx.size()) {
      return KeyError("encoder.recover_idx", "needs one entry per reduce_idx entry (or none)");
    }
    // Reductions and recoveries nest like parentheses, in block order (a reduction first when a
    // block has both).
    std::vector<std::pair<int, int>> events;
    for (int i : e.reduce_idx) events.push_back({2 * i, 1});
    for (int i : e.recover_idx) events.push_back({2 * i + 1, -1});
    std::sort(events.begin(), events.end());
    int depth = 0;
    for (const auto& [key, delta] : events) {
      const int block = key / 2;
      if (block < 0 || block >= e.num_blocks) {
        return KeyError(
            delta > 0 ? "encoder.reduce_idx" : "encoder.recover_idx",
            "block " + std::to_string(block) + " out of range [0, " + std::to_string(e.num_blocks) + ")");
      }
      depth += delta;
      if (depth < 0) return KeyError("encoder.recover_idx", "a recovery before its reduction");
    }
    for (size_t k = 1; k < e.reduce_idx.size(); ++k) {
      if (e.reduce_idx[k] <= e.reduce_idx[k - 1]) return KeyError("encoder.reduce_idx", "must be ascending");
    }
  }
  if (e.type == EncoderType::kEfficientConformer) {
    if (e.stride.size() != e.stride_layer_idx.size()) {
      return KeyError("encoder.stride", "needs one stride per stride_layer_idx entry");
    }
    for (size_t k = 0; k < e.stride_layer_idx.size(); ++k) {
      U2_RETURN_IF_ERROR(range("encoder.stride_layer_idx", e.stride_layer_idx[k], 0, e.num_blocks - 1));
      U2_RETURN_IF_ERROR(range("encoder.stride", e.stride[k], 1, 64));
      if (k > 0 && e.stride_layer_idx[k] <= e.stride_layer_idx[k - 1]) {
        return KeyError("encoder.stride_layer_idx", "must be ascending");
      }
    }
    for (int g : e.group_layer_idx)
      U2_RETURN_IF_ERROR(range("encoder.group_layer_idx", g, 0, e.num_blocks - 1));
    U2_RETURN_IF_ERROR(range("encoder.group_size", e.group_size, 1, 64));
    if (static_cast<int>(e.cnn_module_kernels.size()) != e.num_blocks) {
      return KeyError("encoder.cnn_module_kernels", "needs one kernel per block");
    }
    if (!e.stride_layer_idx.empty() && !e.use_cnn_module) {
      return KeyError("encoder.use_cnn_module", "false with stride blocks is not supported");
    }
    for (int k : e.cnn_module_kernels) {
      U2_RETURN_IF_ERROR(range("encoder.cnn_module_kernels", k, 1, 1023));
      if (!e.causal && k % 2 == 0) {
        return KeyError("encoder.cnn_module_kernels",
                        "value " + std::to_string(k) + " must be odd for a non-causal convolution");
      }
    }
  }
  if (e.is_branchformer_family()) {
    const std::string kind = EncoderTypeName(e.type);
    if (!e.normalize_before) return KeyError("encoder.normalize_before", "must be true for " + kind);
    U2_RETURN_IF_ERROR(range("encoder.cgmlp_linear_units", e.cgmlp_linear_units, 2, 65536));
    if (e.cgmlp_linear_units % 2 != 0) {
      return KeyError("encoder.cgmlp_linear_units", "value " + std::to_string(e.cgmlp_linear_units) +
                                                        " must be even (the cgMLP splits it in halves)");
    }
    auto kernel_ok = [&](const std::string& key, int k) -> Status {
      U2_RETURN_IF_ERROR(range(key, k, 1, 1023));
      if (!e.causal && k % 2 == 0) {
        return KeyError(key, "value " + std::to_string(k) + " must be odd for a non-causal convolution");
      }
      return Status::Ok();
    };
    if (e.type == EncoderType::kEBranchformer || e.use_cgmlp)
      U2_RETURN_IF_ERROR(kernel_ok("encoder.cgmlp_conv_kernel", e.cgmlp_conv_kernel));
    if (e.type == EncoderType::kEBranchformer)
      U2_RETURN_IF_ERROR(kernel_ok("encoder.merge_conv_kernel", e.merge_conv_kernel));
    if (e.type == EncoderType::kBranchformer) {
      if (!e.use_attn && !e.use_cgmlp) {
        return KeyError("encoder.use_attn", "false together with use_cgmlp false leaves no branch");
      }
      if (!e.cgmlp_weight.empty() && static_cast<int>(e.cgmlp_weight.size()) != e.num_blocks) {
        return KeyError("encoder.cgmlp_weight", "has " + std::to_string(e.cgmlp_weight.size()) +
                                                    " values for " + std::to_string(e.num_blocks) +
                                                    " blocks");
      }
      for (float w : e.cgmlp_weight) {
        if (!(w >= 0.0f && w <= 1.0f)) {
          return KeyError("encoder.cgmlp_weight", "values must be in [0, 1], got " + std::to_string(w));
        }
      }
    }
  }
  if (e.type == EncoderType::kTransformer && e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn &&
      e.pos_enc_layer_type != PosEncType::kRelPos) {
    // Allowed by WeNet (pos_emb = zeros or abs table), nothing special to do.
  }
  if (HasDecoder()) {
    const DecoderConfig& d = decoder;
    U2_RETURN_IF_ERROR(range("decoder.attention_heads", d.attention_heads, 1, 128));
    if (e.output_size % d.attention_heads != 0) {
      return KeyError("decoder.attention_heads", "value " + std::to_string(d.attention_heads) +
                                                     " does not divide encoder.output_size " +
                                                     std::to_string(e.output_size));
    }
    U2_RETURN_IF_ERROR(range("decoder.linear_units", d.linear_units, 1, 65536));
    U2_RETURN_IF_ERROR(range("decoder.num_blocks", d.num_blocks, 0, 256));
    U2_RETURN_IF_ERROR(range("decoder.r_num_blocks", d.r_num_blocks, 0, 256));
    U2_RETURN_IF_ERROR(eps_ok("decoder.norm_eps", d.norm_eps));
    if (d.type == DecoderType::kTransformer && d.r_num_blocks != 0) {
      return KeyError("decoder.r_num_blocks",
                      "must be 0 for a transformer decoder, got " + std::to_string(d.r_num_blocks));
    }
  }
  if (!std::isfinite(decoding.ctc_weight) || decoding.ctc_weight < 0) {
    return KeyError("decoding.ctc_weight",
                    "must be finite and >= 0, got " + std::to_string(decoding.ctc_weight));
  }
  if (!std::isfinite(decoding.reverse_weight) || decoding.reverse_weight < 0 || decoding.reverse_weight > 1) {
    return KeyError("decoding.reverse_weight",
                    "must be in [0, 1], got " + std::to_string(decoding.reverse_weight));
  }
  U2_RETURN_IF_ERROR(range("decoding.beam_size", decoding.beam_size, 1, 1000));
  if (!std::isfinite(decoding.lm_weight) || decoding.lm_weight < 0 || decoding.lm_weight > 10) {
    return KeyError("decoding.lm_weight", "must be in [0, 10], got " + std::to_string(decoding.lm_weight));
  }
  if (!std::isfinite(decoding.word_bonus) || std::fabs(decoding.word_bonus) > 20) {
    return KeyError("decoding.word_bonus",
                    "must be in [-20, 20], got " + std::to_string(decoding.word_bonus));
  }
  if (decoding.decoding_chunk_size == 0 || decoding.decoding_chunk_size < -1) {
    return KeyError("decoding.decoding_chunk_size",
                    "must be -1 (full context) or > 0, got " + std::to_string(decoding.decoding_chunk_size));
  }
  if (decoding.num_decoding_left_chunks < -1) {
    return KeyError("decoding.num_decoding_left_chunks",
                    "must be >= -1, got " + std::to_string(decoding.num_decoding_left_chunks));
  }
  return Status::Ok();
}

namespace {
// Length after one unpadded convolution (0 when the input is shorter than the kernel).
int ConvOutputLength(int n, const SubsamplingConv& c) {
  return n < c.kernel ? 0 : (n - c.kernel) / c.stride + 1;
}
}  // namespace

int ModelConfig::SubsamplingRate() const {
  int rate = 1;
  for (const SubsamplingConv& c : SubsamplingConvs(encoder.input_layer)) rate *= c.stride;
  return rate;
}

int ModelConfig::RightContext() const {
  // Each convolution looks (kernel - 1) of its own input frames ahead, and one of those frames is
  // worth the product of the strides before it in feature frames (WeNet's right_context).
  int context = 0, rate = 1;
  for (const SubsamplingConv& c : SubsamplingConvs(encoder.input_layer)) {
    context += (c.kernel - 1) * rate;
    rate *= c.stride;
  }
  return context;
}

int ModelConfig::NumEmbeddingFrames(int t) const {
  for (const SubsamplingConv& c : SubsamplingConvs(encoder.input_layer)) t = ConvOutputLength(t, c);
  return t;
}

int ModelConfig::NumEncoderFrames(int t) const {
  const int stride = OutputTimeStride();
  return (NumEmbeddingFrames(t) + stride - 1) / stride;
}

int EncoderConfig::BlockStride(int block) const {
  if (type != EncoderType::kEfficientConformer) return 1;
  for (size_t k = 0; k < stride_layer_idx.size() && k < stride.size(); ++k) {
    if (stride_layer_idx[k] == block) return stride[k];
  }
  return 1;
}

int EncoderConfig::BlockGroupSize(int block) const {
  if (type != EncoderType::kEfficientConformer) return 1;
  return std::find(group_layer_idx.begin(), group_layer_idx.end(), block) != group_layer_idx.end()
             ? group_size
             : 1;
}

int ModelConfig::LayerTimeStride(int layer) const {
  const EncoderConfig& e = encoder;
  if (e.type == EncoderType::kEfficientConformer) {
    int s = 1;
    for (int i = 0; i < layer && i < e.num_blocks; ++i) s *= e.BlockStride(i);
    return s;
  }
  if (e.type == EncoderType::kSqueezeformer) {
    // Reductions before blocks <= layer minus the recoveries before them (the output: all).
    int depth = 0;
    for (int i : e.reduce_idx) depth += i <= layer ? 1 : 0;
    for (int i : e.recover_idx) depth -= i <= layer ? 1 : 0;
    return 1 << std::clamp(depth, 0, 16);
  }
  return 1;
}

int ModelConfig::StreamingChunkUnit() const {
  const EncoderConfig& e = encoder;
  int unit = 1;
  for (int i = 0; i <= e.num_blocks; ++i) unit = std::lcm(unit, LayerTimeStride(i));
  for (int i = 0; i < e.num_blocks; ++i) unit = std::lcm(unit, LayerTimeStride(i) * e.BlockGroupSize(i));
  return unit;
}

int ModelConfig::OutputFrameShiftMs() const {
  return static_cast<int>(std::lround(frontend.frame_shift_ms)) * SubsamplingRate() * OutputTimeStride();
}

int ModelConfig::SubsampledFeatureDim() const {
  int f = input_dim;
  for (const SubsamplingConv& c : SubsamplingConvs(encoder.input_layer)) f = ConvOutputLength(f, c);
  return f;
}

std::string ModelConfig::ToString() const {
  std::ostringstream os;
  const EncoderConfig& e = encoder;
  os << "ModelConfig{input_dim=" << input_dim << ", vocab_size=" << vocab_size
     << ", blank/unk/sos/eos=" << blank_id << "/" << unk_id << "/" << sos_id << "/" << eos_id
     << ", cmvn=" << (cmvn ? "yes" : "no") << "\n  frontend{" << frontend.sample_rate << " Hz, "
     << frontend.num_mel_bins << " mel, " << frontend.frame_length_ms << "/" << frontend.frame_shift_ms
     << " ms}\n  encoder{" << EncoderTypeName(e.type) << ", D=" << e.output_size
     << ", H=" << e.attention_heads << ", ffn=" << e.linear_units << ", blocks=" << e.num_blocks
     << ", input_layer=" << InputLayerName(e.input_layer) << ", pos=" << PosEncTypeName(e.pos_enc_layer_type)
     << ", attn=" << SelfAttentionTypeName(e.selfattention_layer_type)
     << ", normalize_before=" << e.normalize_before << ", final_norm=" << e.final_norm;
  if (e.is_conformer()) {
    os << ", macaron=" << e.macaron_style << ", cnn=" << e.use_cnn_module << " (K=" << e.cnn_module_kernel
       << (e.causal ? " causal" : "") << ", " << ConvNormTypeName(e.cnn_module_norm) << ")";
  }
  if (e.is_branchformer_family()) {
    os << ", cgmlp{units=" << e.cgmlp_linear_units << ", K=" << e.cgmlp_conv_kernel
       << (e.causal ? " causal" : "") << ", linear_after_conv=" << e.use_linear_after_conv << ", gate="
       << (e.gate_activation == Activation::kNone ? "identity" : ActivationName(e.gate_activation)) << "}";
    if (e.type == EncoderType::kBranchformer) {
      os << ", attn=" << e.use_attn << ", cgmlp=" << e.use_cgmlp
         << ", merge=" << MergeMethodName(e.merge_method);
    } else {
      os << ", ffn=" << e.use_ffn << ", macaron=" << e.macaron_style
         << ", merge_conv=" << e.merge_conv_kernel;
    }
  }
  os << ", act=" << ActivationName(e.activation) << ", eps=" << e.norm_eps << "/" << e.conv_norm_eps
     << ", dynamic_chunk=" << e.use_dynamic_chunk << ", static_chunk=" << e.static_chunk_size
     << "}\n  decoder{" << DecoderTypeName(decoder.type);
  if (HasDecoder()) {
    os << ", H=" << decoder.attention_heads << ", ffn=" << decoder.linear_units
       << ", blocks=" << decoder.num_blocks << "+" << decoder.r_num_blocks
       << ", act=" << ActivationName(decoder.activation) << ", eps=" << decoder.norm_eps;
  }
  os << "}\n  decoding{ctc_weight=" << decoding.ctc_weight << ", reverse_weight=" << decoding.reverse_weight
     << ", beam=" << decoding.beam_size << ", chunk=" << decoding.decoding_chunk_size
     << ", left_chunks=" << decoding.num_decoding_left_chunks << "}}";
  return os.str();
}

}  // namespace u2
