// The model's configuration, read from model.json (docs/model-format.md) and validated: every
// error names the offending key and value.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/util/status.h"

namespace u2 {

struct FrontendConfig {
  int sample_rate = 16000;
  int num_mel_bins = 80;
  float frame_length_ms = 25.0f;
  float frame_shift_ms = 10.0f;
};

// WeNet's U2 encoder classes: `conformer`, `transformer`, `branchformer` (wenet/branchformer:
// attention and cgMLP branches side by side, merged) and `e_branchformer` (wenet/e_branchformer:
// macaron feed-forwards around the two branches, merged through a depthwise conv).
// `squeezeformer` (wenet/squeezeformer: post-LN blocks, time reduction and recovery inside the stack)
// and `efficientConformer` (wenet/efficient_conformer: stride blocks and grouped attention).
enum class EncoderType {
  kConformer,
  kTransformer,
  kBranchformer,
  kEBranchformer,
  kSqueezeformer,
  kEfficientConformer
};
// Squeezeformer's time reduction: a depthwise conv of kernel 5, stride 2 and 3 frames of zero
// padding each side (conv1d), or of kernel 1 (stream, causal), then a pointwise conv.
enum class TimeReductionType { kConv1d, kStream };
// How a Branchformer layer merges its branches: merge_proj(cat[attn, cgmlp]) or
// merge_proj((1 − w)·attn + w·cgmlp) with a fixed per-layer w (cgmlp_weight).
enum class MergeMethod { kConcat, kFixedAverage };
// kDwConv2d4: Squeezeformer's DepthwiseConv2dSubsampling4 (conv2d's frames, its own weights).
enum class InputLayer { kConv2d2, kConv2d, kConv2d6, kConv2d8, kDwConv2d4 };
enum class PosEncType { kRelPos, kAbsPos, kNoPos };
enum class SelfAttentionType { kRelSelfAttn, kSelfAttn };
enum class ConvNormType { kBatchNorm, kLayerNorm };
enum class DecoderType { kNone, kTransformer, kBiTransformer };

struct EncoderConfig {
  EncoderType type = EncoderType::kConformer;
  int output_size = 256;
  int attention_heads = 4;
  int linear_units = 2048;
  int num_blocks = 12;
  InputLayer input_layer = InputLayer::kConv2d;
  PosEncType pos_enc_layer_type = PosEncType::kRelPos;
  SelfAttentionType selfattention_layer_type = SelfAttentionType::kRelSelfAttn;
  bool normalize_before = true;
  bool final_norm = true;
  bool macaron_style = true;   // conformer only
  bool use_cnn_module = true;  // conformer only
  int cnn_module_kernel = 15;
  bool causal = false;
  ConvNormType cnn_module_norm = ConvNormType::kBatchNorm;
  Activation activation = Activation::kSilu;  // "swish" | "relu"
  float norm_eps = 1e-5f;
  float conv_norm_eps = 1e-5f;
  bool use_dynamic_chunk = false;
  int static_chunk_size = 0;
  // Branchformer and E-Branchformer. The cgMLP: channel_proj1 (D → cgmlp_linear_units, GELU),
  // split in halves, the gate half LayerNorm → depthwise conv (cgmlp_conv_kernel) → optional
  // linear → gate_activation (kNone = "identity"), times the other half, channel_proj2 back to D.
  int cgmlp_linear_units = 2048;
  int cgmlp_conv_kernel = 31;
  bool use_linear_after_conv = false;
  Activation gate_activation = Activation::kNone;
  bool use_attn = true;   // branchformer: the attention branch exists
  bool use_cgmlp = true;  // branchformer: the cgMLP branch exists
  MergeMethod merge_method = MergeMethod::kConcat;
  std::vector<float> cgmlp_weight;  // per block, for kFixedAverage (empty: 0.5 everywhere)
  bool use_ffn = true;              // e_branchformer: feed-forward (macaron_style: two of them)
  int merge_conv_kernel = 3;        // e_branchformer: the merge's depthwise conv
  // Squeezeformer. The blocks are encoder_dim wide; final_proj maps them to output_size.
  int encoder_dim = 0;           // 0: output_size
  std::vector<int> reduce_idx;   // blocks before which time is halved
  std::vector<int> recover_idx;  // blocks before which the latest reduction is undone
  TimeReductionType time_reduction = TimeReductionType::kConv1d;
  bool do_rel_shift = false;    // Transformer-XL shift of the positional scores
  bool dw_stride = false;       // the front's second conv is depthwise
  bool adaptive_scale = false;  // ada_scale/ada_bias before attention, FFNs, conv module
  // Efficient Conformer.
  std::vector<int> stride_layer_idx;  // stride blocks
  std::vector<int> stride;            // their time strides
  std::vector<int> group_layer_idx;   // blocks with grouped attention
  int group_size = 1;
  std::vector<int> cnn_module_kernels;  // per block (empty: cnn_module_kernel everywhere)

  bool is_conformer() const {
    return type == EncoderType::kConformer || type == EncoderType::kEfficientConformer;
  }
  // Width of the blocks (Squeezeformer's encoder_dim; output_size for the others).
  int width() const { return encoder_dim > 0 ? encoder_dim : output_size; }
  int ConvKernel(int block) const {
    return block >= 0 && block < static_cast<int>(cnn_module_kernels.size()) ? cnn_module_kernels[block]
                                                                             : cnn_module_kernel;
  }
  // Efficient Conformer: the time stride of block i (1 unless it is a stride block) and its
  // attention's group size (1 unless grouped).
  int BlockStride(int block) const;
  int BlockGroupSize(int block) const;
  bool is_branchformer_family() const {
    return type == EncoderType::kBranchformer || type == EncoderType::kEBranchformer;
  }
  bool has_conv_module() const { return is_conformer() && use_cnn_module; }
  bool has_macaron() const { return is_conformer() && macaron_style; }
  // Whether any layer has a depthwise convolution over time (conv module, cgMLP, merge conv).
  bool has_depthwise_conv() const {
    return has_conv_module() || type == EncoderType::kEBranchformer ||
           (type == EncoderType::kBranchformer && use_cgmlp);
  }
  // Streaming (forward_chunk) gives exactly the chunk-masked full forward: a dynamic-chunk model
  // whose convolutions over time, if any, are causal (their left context is cached).
  bool StreamsExactly() const { return use_dynamic_chunk && (!has_depthwise_conv() || causal); }
  // The fixed_ave weight of the cgMLP branch in block i.
  float CgmlpWeight(int i) const {
    return i >= 0 && i < static_cast<int>(cgmlp_weight.size()) ? cgmlp_weight[i] : 0.5f;
  }
  int head_dim() const { return width() / attention_heads; }
};

struct DecoderConfig {
  DecoderType type = DecoderType::kNone;
  int attention_heads = 4;
  int linear_units = 2048;
  int num_blocks = 6;
  int r_num_blocks = 0;
  bool normalize_before = true;
  float norm_eps = 1e-5f;
  Activation activation = Activation::kRelu;
};

// Defaults the recognizer/server start from (overridable per run or request).
struct DecodingDefaults {
  float ctc_weight = 0.5f;
  float reverse_weight = 0.0f;
  int beam_size = 10;
  int decoding_chunk_size = -1;
  int num_decoding_left_chunks = -1;
  // Shallow fusion, when an LM is used with the model (decode/word_lm.h).
  float lm_weight = 0.5f;
  float word_bonus = 0.0f;
};

struct ModelConfig {
  static constexpr int kFormatVersion = 1;
  static constexpr int kDefaultMaxPositions = 5000;  // rows of WeNet's sinusoid table (max_len)

  int format_version = kFormatVersion;
  int input_dim = 80;
  int vocab_size = 0;
  int blank_id = 0;
  int unk_id = 1;
  int sos_id = 0;
  int eos_id = 0;
  bool cmvn = true;
  // Rows of encoder.embed.pos_enc.pe: the longest encoder output (and decoder hypothesis) the
  // model can take. WeNet's table has 5000 (200 s at 40 ms); converters may store fewer.
  int max_positions = kDefaultMaxPositions;
  FrontendConfig frontend;
  EncoderConfig encoder;
  DecoderConfig decoder;
  DecodingDefaults decoding;

  // Parses and validates; errors read like "model.json: encoder.input_layer: unsupported value
  // \"linear\" (expected one of conv2d2, conv2d, conv2d6, conv2d8)".
  static StatusOr<ModelConfig> FromJson(const nlohmann::json& j);
  static StatusOr<ModelConfig> FromJsonText(const std::string& text);
  static StatusOr<ModelConfig> FromFile(const std::string& path);
  Status Validate() const;
  std::string ToString() const;

  bool HasDecoder() const { return decoder.type != DecoderType::kNone; }
  bool HasRightDecoder() const {
    return decoder.type == DecoderType::kBiTransformer && decoder.r_num_blocks > 0;
  }
  // Subsampling rate R and right context RC of the input layer (spec table: conv2d2 2/2, conv2d
  // 4/6, conv2d6 6/10, conv2d8 8/14), both derived from SubsamplingConvs().
  int SubsamplingRate() const;
  int RightContext() const;
  // Frames the subsampling front makes of `num_frames` feature frames (0 when too short): the
  // encoder positions its layers start from.
  int NumEmbeddingFrames(int num_frames) const;
  // Encoder output frames (what the CTC head and the decoders see): the embedding frames after
  // every time stride inside the stack, ceil(embedding / OutputTimeStride()).
  int NumEncoderFrames(int num_frames) const;
  // Embedding frames per output frame (1 unless the stack subsamples time and does not recover).
  int OutputTimeStride() const { return LayerTimeStride(encoder.num_blocks); }
  // Embedding frames per frame of layer i's input (i = num_blocks: of the output).
  int LayerTimeStride(int layer) const;
  // Streaming chunks (in embedding frames) must be a multiple of this for chunk-by-chunk decoding
  // to be defined: every time stride and every attention group must start at a chunk boundary.
  int StreamingChunkUnit() const;
  // Milliseconds per encoder output frame.
  int OutputFrameShiftMs() const;
  // The longest input the encoder accepts, in encoder frames (the positional table's length).
  int MaxEncoderFrames() const { return max_positions; }
  // Frequency bins left after subsampling (F′), which fixes the subsampling linear's input size.
  int SubsampledFeatureDim() const;
};

const char* EncoderTypeName(EncoderType t);
const char* MergeMethodName(MergeMethod m);
const char* InputLayerName(InputLayer t);

// One 2-D convolution (ReLU after it) of an input layer's subsampling stack; it strides the same
// way over time and over frequency.
struct SubsamplingConv {
  int kernel;
  int stride;
};
// The input layer's convolutions in order, as WeNet's Conv2dSubsamplingN builds them. Everything
// else about subsampling (rate, right context, output lengths, weight shapes) follows from these.
std::vector<SubsamplingConv> SubsamplingConvs(InputLayer t);
// The checkpoint name of the linear layer after the convolutions (WeNet names it differently for
// conv2d2/conv2d and for conv2d6/conv2d8).
const char* SubsamplingLinearName(InputLayer t);
const char* PosEncTypeName(PosEncType t);
const char* SelfAttentionTypeName(SelfAttentionType t);
const char* ConvNormTypeName(ConvNormType t);
const char* DecoderTypeName(DecoderType t);
const char* ActivationName(Activation a);

}  // namespace u2
