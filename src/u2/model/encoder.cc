#include "u2/model/encoder.h"

#include <algorithm>
#include <cmath>

namespace u2 {
namespace {

// Workspace slots used by the encoder.
enum Slot : int {
  kSlotFeat = 0,  // one utterance's features (T × I)
  kSlotConvA,     // subsampling intermediates
  kSlotConvB,
  kSlotConvOut,   // packed subsampling output (M × F′·D)
  kSlotX,         // the layer state (M × D)
  kSlotH,         // normalised sublayer input (M × D)
  kSlotBig,       // QKV (M × 3D) / FFN hidden (M × Fe) / pointwise_conv1 (M × 2D)
  kSlotAtt,       // attention output / GLU output (M × D)
  kSlotTmp,       // sublayer output before the residual add (M × D)
  kSlotPos,       // projected positions (Tmax × D)
  kSlotLogits,    // CTC logits (M × V)
  kSlotConvHist,  // streaming: the new conv history being assembled
};

}  // namespace

StatusOr<std::unique_ptr<ConformerEncoder>> ConformerEncoder::Load(const ModelConfig& config,
                                                                   const WeightLoader& loader,
                                                                   std::shared_ptr<const Backend> backend) {
  std::unique_ptr<ConformerEncoder> enc(new ConformerEncoder(config, backend));
  const EncoderConfig& e = config.encoder;
  const int D = e.output_size;
  const int I = config.input_dim;
  const int H = e.attention_heads;
  const int dk = e.head_dim();
  const int Fe = e.linear_units;

  if (config.cmvn) {
    U2_ASSIGN_OR_RETURN(enc->cmvn_mean_, loader.Device("encoder.global_cmvn.mean", {I}));
    U2_ASSIGN_OR_RETURN(enc->cmvn_istd_, loader.Device("encoder.global_cmvn.istd", {I}));
  }

  // Subsampling: (kernel, stride) per conv; weights reordered (out, in, kh, kw) → (out, kh, kw, in).
  const std::vector<SubsamplingConv> convs = SubsamplingConvs(e.input_layer);
  for (size_t c = 0; c < convs.size(); ++c) {
    const auto [k, s] = convs[c];
    const int cin = c == 0 ? 1 : D;
    const std::string name = "encoder.embed.conv." + std::to_string(2 * c);
    U2_ASSIGN_OR_RETURN(std::vector<float> w, loader.Host(name + ".weight", {D, cin, k, k}));
    std::vector<float> r(w.size());
    for (int o = 0; o < D; ++o)
      for (int i = 0; i < cin; ++i)
        for (int a = 0; a < k; ++a)
          for (int b = 0; b < k; ++b)
            r[((static_cast<size_t>(o) * k + a) * k + b) * cin + i] =
                w[((static_cast<size_t>(o) * cin + i) * k + a) * k + b];
    enc->conv_weights_.push_back(loader.Upload(r, {D, k, k, cin}));
    // At int8 precision the first conv (one input channel, 9 taps on the raw fbank: little compute,
    // the most sensitive input) stays fp32; the later ones (9·D inputs per output, a quarter of a
    // conformer's multiply-adds) and the output linear run in int8 like the other layers.
    enc->conv_prepared_.push_back(
        backend->PrepareWeight(enc->conv_weights_.back().f32(), D, k * k * cin,
                               c == 0 ? WeightQuantization::kNever : WeightQuantization::kAllowed));
    U2_ASSIGN_OR_RETURN(Tensor bias, loader.Device(name + ".bias", {D}));
    enc->conv_biases_.push_back(bias);
    Conv2dParams p;
    p.in_channels = cin;
    p.out_channels = D;
    p.kernel = k;
    p.stride = s;
    p.weight = enc->conv_weights_.back().f32();
    p.prepared_weight = enc->conv_prepared_.back().get();
    p.bias = enc->conv_biases_.back().f32();
    p.activation = Activation::kRelu;
    enc->convs_.push_back(p);
  }
  {
    const int F = config.SubsampledFeatureDim();
    const std::string name = SubsamplingLinearName(e.input_layer);
    U2_ASSIGN_OR_RETURN(std::vector<float> w, loader.Host(name + ".weight", {D, D * F}));
    std::vector<float> r(w.size());
    for (int o = 0; o < D; ++o)
      for (int c = 0; c < D; ++c)
        for (int f = 0; f < F; ++f)
          r[static_cast<size_t>(o) * D * F + static_cast<size_t>(f) * D + c] =
              w[static_cast<size_t>(o) * D * F + static_cast<size_t>(c) * F + f];
    enc->embed_out_.in = D * F;
    enc->embed_out_.out = D;
    enc->embed_out_.weight = loader.Upload(r, {D, D * F});
    enc->embed_out_.Prepare(*backend);
    U2_ASSIGN_OR_RETURN(enc->embed_out_.bias, loader.Device(name + ".bias", {D}));
  }
  {
    U2_ASSIGN_OR_RETURN(Tensor pe, loader.Device("encoder.embed.pos_enc.pe", {1, config.max_positions, D}));
    enc->pos_table_ = pe.Reshape({config.max_positions, D});
  }

  const bool rel = e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn;
  for (int i = 0; i < e.num_blocks; ++i) {
    const std::string p = "encoder.encoders." + std::to_string(i) + ".";
    EncoderLayerWeights w;
    const float eps = e.norm_eps;
    if (e.is_conformer()) {
      if (e.macaron_style) {
        U2_ASSIGN_OR_RETURN(w.norm_ff_macaron, loader.Norm(p + "norm_ff_macaron", D, eps));
        U2_ASSIGN_OR_RETURN(w.ff_macaron_w1, loader.Linear(p + "feed_forward_macaron.w_1", D, Fe));
        U2_ASSIGN_OR_RETURN(w.ff_macaron_w2, loader.Linear(p + "feed_forward_macaron.w_2", Fe, D));
      }
      U2_ASSIGN_OR_RETURN(w.norm_mha, loader.Norm(p + "norm_mha", D, eps));
      U2_ASSIGN_OR_RETURN(w.norm_ff, loader.Norm(p + "norm_ff", D, eps));
      if (e.use_cnn_module) {
        U2_ASSIGN_OR_RETURN(w.norm_conv, loader.Norm(p + "norm_conv", D, eps));
        U2_ASSIGN_OR_RETURN(w.norm_final, loader.Norm(p + "norm_final", D, eps));
      }
    } else {
      U2_ASSIGN_OR_RETURN(w.norm_mha, loader.Norm(p + "norm1", D, eps));
      U2_ASSIGN_OR_RETURN(w.norm_ff, loader.Norm(p + "norm2", D, eps));
    }
    U2_ASSIGN_OR_RETURN(w.ff_w1, loader.Linear(p + "feed_forward.w_1", D, Fe));
    U2_ASSIGN_OR_RETURN(w.ff_w2, loader.Linear(p + "feed_forward.w_2", Fe, D));
    U2_ASSIGN_OR_RETURN(
        w.qkv, loader.StackedLinear(
                   {p + "self_attn.linear_q", p + "self_attn.linear_k", p + "self_attn.linear_v"}, D, D));
    U2_ASSIGN_OR_RETURN(w.attn_out, loader.Linear(p + "self_attn.linear_out", D, D));
    if (rel) {
      U2_ASSIGN_OR_RETURN(w.linear_pos, loader.Linear(p + "self_attn.linear_pos", D, D));
      U2_ASSIGN_OR_RETURN(w.pos_bias_u, loader.Device(p + "self_attn.pos_bias_u", {H, dk}));
      U2_ASSIGN_OR_RETURN(w.pos_bias_v, loader.Device(p + "self_attn.pos_bias_v", {H, dk}));
    }
    if (e.has_conv_module()) {
      const int K = e.cnn_module_kernel;
      const std::string c = p + "conv_module.";
      w.pointwise_conv1.in = D;
      w.pointwise_conv1.out = 2 * D;
      U2_RETURN_IF_ERROR(
          loader.LoadLinearWeight(c + "pointwise_conv1.weight", {2 * D, D, 1}, &w.pointwise_conv1));
      std::vector<float> b1;
      if (loader.Has(c + "pointwise_conv1.bias")) {
        U2_ASSIGN_OR_RETURN(b1, loader.Host(c + "pointwise_conv1.bias", {2 * D}));
        w.pointwise_conv1.bias = loader.Upload(b1, {2 * D});
      }
      w.pointwise_conv2.in = D;
      w.pointwise_conv2.out = D;
      U2_RETURN_IF_ERROR(
          loader.LoadLinearWeight(c + "pointwise_conv2.weight", {D, D, 1}, &w.pointwise_conv2));
      U2_ASSIGN_OR_RETURN(w.pointwise_conv2.bias, loader.OptionalDevice(c + "pointwise_conv2.bias", {D}));

      U2_ASSIGN_OR_RETURN(std::vector<float> dw, loader.Host(c + "depthwise_conv.weight", {D, 1, K}));
      std::vector<float> db(D, 0.0f);
      if (loader.Has(c + "depthwise_conv.bias")) {
        U2_ASSIGN_OR_RETURN(db, loader.Host(c + "depthwise_conv.bias", {D}));
      }
      std::vector<float> scale(D, 1.0f), shift(D, 0.0f);
      if (e.cnn_module_norm == ConvNormType::kBatchNorm) {
        // Eval BatchNorm is per-channel affine: fold it into the depthwise conv.
        U2_ASSIGN_OR_RETURN(std::vector<float> g, loader.Host(c + "norm.weight", {D}));
        U2_ASSIGN_OR_RETURN(std::vector<float> b, loader.Host(c + "norm.bias", {D}));
        U2_ASSIGN_OR_RETURN(std::vector<float> mean, loader.Host(c + "norm.running_mean", {D}));
        U2_ASSIGN_OR_RETURN(std::vector<float> var, loader.Host(c + "norm.running_var", {D}));
        for (int ch = 0; ch < D; ++ch) {
          const double s =
              static_cast<double>(g[ch]) / std::sqrt(static_cast<double>(var[ch]) + e.conv_norm_eps);
          scale[ch] = static_cast<float>(s);
          shift[ch] = static_cast<float>((static_cast<double>(db[ch]) - mean[ch]) * s + b[ch]);
        }
      } else {
        U2_ASSIGN_OR_RETURN(w.conv_layer_norm, loader.Norm(c + "norm", D, e.conv_norm_eps));
        shift = db;
      }
      std::vector<float> wt(static_cast<size_t>(K) * D);
      for (int ch = 0; ch < D; ++ch)
        for (int k = 0; k < K; ++k)
          wt[static_cast<size_t>(k) * D + ch] = dw[static_cast<size_t>(ch) * K + k] * scale[ch];
      w.depthwise_weight = loader.Upload(wt, {K, D});
      w.depthwise_bias = loader.Upload(shift, {D});
      if (e.causal && !b1.empty()) {
        std::vector<float> glu(D);
        for (int ch = 0; ch < D; ++ch) glu[ch] = b1[ch] / (1.0f + std::exp(-b1[D + ch]));
        w.glu_of_bias = loader.Upload(glu, {D});
      }
      if (e.causal && K > 1) {
        std::vector<float> hist(static_cast<size_t>(K - 1) * D, 0.0f);
        if (!b1.empty()) {
          for (int k = 0; k < K - 1; ++k)
            for (int ch = 0; ch < D; ++ch)
              hist[static_cast<size_t>(k) * D + ch] = b1[ch] / (1.0f + std::exp(-b1[D + ch]));
        }
        w.initial_conv_history = loader.Upload(hist, {K - 1, D});
      }
    }
    enc->layers_.push_back(std::move(w));
  }
  if (e.normalize_before && e.final_norm) {
    U2_ASSIGN_OR_RETURN(enc->after_norm_, loader.Norm("encoder.after_norm", D, e.norm_eps));
  }
  U2_ASSIGN_OR_RETURN(enc->ctc_, loader.Linear("ctc.ctc_lo", D, config.vocab_size));
  return enc;
}

void ConformerEncoder::Subsample(const FeatureView& f, Workspace& ws, float* conv_out) const {
  const Backend& be = *backend_;
  const int I = config_.input_dim;
  const int D = config_.encoder.output_size;
  float* x = ws.Floats(kSlotFeat, static_cast<size_t>(f.num_frames) * I);
  be.CopyFromHost(x, f.data, static_cast<size_t>(f.num_frames) * I * sizeof(float));
  if (config_.cmvn) be.Cmvn(x, f.num_frames, I, cmvn_mean_.f32(), cmvn_istd_.f32(), x);
  const float* src = x;
  int h = f.num_frames, w = I;
  for (size_t c = 0; c < convs_.size(); ++c) {
    const Conv2dParams& p = convs_[c];
    const int ho = (h - p.kernel) / p.stride + 1;
    const int wo = (w - p.kernel) / p.stride + 1;
    float* dst = c + 1 == convs_.size()
                     ? conv_out
                     : ws.Floats(c % 2 == 0 ? kSlotConvA : kSlotConvB, static_cast<size_t>(ho) * wo * D);
    be.Conv2d(p, src, h, w, dst, ws);
    src = dst;
    h = ho;
    w = wo;
  }
}

AttentionParams ConformerEncoder::AttentionTemplate(const EncoderLayerWeights& w) const {
  const EncoderConfig& e = config_.encoder;
  AttentionParams p;
  p.num_heads = e.attention_heads;
  p.head_dim = e.head_dim();
  p.pos_bias_u = w.pos_bias_u.empty() ? nullptr : w.pos_bias_u.f32();
  p.pos_bias_v = w.pos_bias_v.empty() ? nullptr : w.pos_bias_v.f32();
  return p;
}

void ConformerEncoder::Layer(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const EncoderLayerWeights& w = layers_[index];
  const int D = e.output_size;
  const int Fe = e.linear_units;
  float* h = ws.Floats(kSlotH, static_cast<size_t>(m) * D);
  float* big = ws.Floats(kSlotBig, static_cast<size_t>(m) * std::max(3 * D, Fe));
  float* att = ws.Floats(kSlotAtt, static_cast<size_t>(m) * D);
  float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(m) * D);
  auto linear = [&](const float* in, const LinearWeights& l, float* y) {
    l.Apply(be, in, m, l.in, y, l.out);
  };

  enum class Kind { kFfnMacaron, kAttention, kConv, kFfn };
  struct Sublayer {
    Kind kind;
    const NormWeights* norm;
  };
  Sublayer subs[4];
  int n = 0;
  if (e.has_macaron()) subs[n++] = {Kind::kFfnMacaron, &w.norm_ff_macaron};
  subs[n++] = {Kind::kAttention, &w.norm_mha};
  if (e.has_conv_module()) subs[n++] = {Kind::kConv, &w.norm_conv};
  subs[n++] = {Kind::kFfn, &w.norm_ff};
  const float ff_scale = e.has_macaron() ? 0.5f : 1.0f;
  const bool pre = e.normalize_before;

  const float* in = x;
  if (pre) {
    be.LayerNorm(x, m, D, D, subs[0].norm->params(), h, D);
    in = h;
  }
  for (int s = 0; s < n; ++s) {
    const float* delta_bias = nullptr;
    float alpha = 1.0f;
    switch (subs[s].kind) {
      case Kind::kFfnMacaron:
      case Kind::kFfn: {
        const bool mac = subs[s].kind == Kind::kFfnMacaron;
        const LinearWeights& w1 = mac ? w.ff_macaron_w1 : w.ff_w1;
        const LinearWeights& w2 = mac ? w.ff_macaron_w2 : w.ff_w2;
        w1.Forward(be, in, m, w1.in, big, Fe, e.activation);
        linear(big, w2, tmp);
        delta_bias = w2.b();
        alpha = ff_scale;
        break;
      }
      case Kind::kAttention: {
        w.qkv.Forward(be, in, m, D, big, 3 * D);
        ctx.attention(index, big, att, ws);
        linear(att, w.attn_out, tmp);
        delta_bias = w.attn_out.b();
        break;
      }
      case Kind::kConv: {
        linear(in, w.pointwise_conv1, big);
        be.BiasGlu(big, m, D, 2 * D, w.pointwise_conv1.b(), att, D);
        const int K = e.cnn_module_kernel;
        LayerNormParams conv_ln;
        DepthwiseConvParams dp;
        dp.channels = D;
        dp.kernel = K;
        dp.left_pad = e.causal ? K - 1 : (K - 1) / 2;
        dp.weight = w.depthwise_weight.f32();
        dp.bias = w.depthwise_bias.f32();
        dp.pad_value = w.glu_of_bias.empty() ? nullptr : w.glu_of_bias.f32();
        if (e.cnn_module_norm == ConvNormType::kLayerNorm) {
          conv_ln = w.conv_layer_norm.params();
          dp.norm = &conv_ln;
        }
        dp.activation = e.activation;
        // `in` is h (pre-LN only), already consumed by pointwise_conv1.
        be.DepthwiseConv(dp, att, ctx.conv_segments, h);
        if (ctx.after_conv) ctx.after_conv(index, att);
        linear(h, w.pointwise_conv2, tmp);
        delta_bias = w.pointwise_conv2.b();
        break;
      }
    }
    if (pre) {
      if (s + 1 < n) {
        const LayerNormParams next = subs[s + 1].norm->params();
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &next, h);
        in = h;
      } else if (e.has_conv_module()) {
        const LayerNormParams fin = w.norm_final.params();
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &fin, x);
      } else {
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, nullptr, nullptr);
      }
    } else {
      const LayerNormParams own = subs[s].norm->params();
      be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &own, x);
      in = x;
    }
  }
}

void ConformerEncoder::Embed(std::span<const FeatureView> feats, const std::vector<int>& lengths,
                             const std::vector<int>& offsets, const std::vector<int>& positions, int m,
                             Workspace& ws, float* x) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.output_size;
  // Subsampling, each utterance into its rows of the packed conv output, then one GEMM for all.
  const int FD = embed_out_.in;
  float* conv_out = ws.Floats(kSlotConvOut, static_cast<size_t>(m) * FD);
  for (size_t b = 0; b < feats.size(); ++b) {
    if (lengths[b] > 0) Subsample(feats[b], ws, conv_out + static_cast<size_t>(offsets[b]) * FD);
  }
  const float xscale =
      e.pos_enc_layer_type == PosEncType::kNoPos ? 1.0f : static_cast<float>(std::sqrt(double(D)));
  embed_out_.Apply(be, conv_out, m, FD, x, D, {embed_out_.b(), Activation::kNone, xscale});
  if (e.pos_enc_layer_type == PosEncType::kAbsPos) {
    for (size_t b = 0; b < feats.size(); ++b) {
      if (lengths[b] == 0) continue;
      const RowSegment seg{offsets[b], lengths[b]};
      be.AddPositional(x, D, {&seg, 1}, pos_table_.f32(), positions[b]);
    }
  }
}

void ConformerEncoder::Finish(const float* x, int m, Workspace& ws, EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.output_size;
  const int V = config_.vocab_size;
  const int B = static_cast<int>(out->lengths.size());
  out->encoder_out = be.NewTensor({m, D});
  float* enc = out->encoder_out.mutable_f32();
  if (e.normalize_before && e.final_norm) {
    be.LayerNorm(x, m, D, D, after_norm_.params(), enc, D);
  } else {
    be.Copy(enc, x, static_cast<size_t>(m) * D * sizeof(float));
  }
  float* logits = ws.Floats(kSlotLogits, static_cast<size_t>(m) * V);
  ctc_.Forward(be, enc, m, D, logits, V);
  be.LogSoftmax(logits, m, V, V);
  out->ctc_log_probs.assign(B, {});
  for (int b = 0; b < B; ++b) {
    out->ctc_log_probs[b] =
        be.DownloadRows(logits + static_cast<size_t>(out->offsets[b]) * V, out->lengths[b], V, V);
  }
}

Status ConformerEncoder::Forward(std::span<const FeatureView> feats, const EncodeOptions& options,
                                 Workspace& ws, EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.output_size;
  const int B = static_cast<int>(feats.size());
  out->lengths.assign(B, 0);
  out->offsets.assign(B, 0);
  out->dim = D;
  int m = 0, t_max = 0;
  for (int b = 0; b < B; ++b) {
    const FeatureView& f = feats[b];
    const std::string where = "utterance " + std::to_string(b) + ": ";
    if (f.num_frames < 0)
      return InvalidArgument(where + "negative num_frames " + std::to_string(f.num_frames));
    if (f.dim != config_.input_dim) {
      return InvalidArgument(where + "feature dim " + std::to_string(f.dim) + " != model input_dim " +
                             std::to_string(config_.input_dim));
    }
    if (f.num_frames > 0 && f.data == nullptr) return InvalidArgument(where + "null feature data");
    const int t = config_.NumEncoderFrames(f.num_frames);
    if (t > config_.MaxEncoderFrames()) {
      return InvalidArgument(where + std::to_string(f.num_frames) + " feature frames give " +
                             std::to_string(t) + " encoder frames, more than the model's " +
                             std::to_string(config_.MaxEncoderFrames()) + " positions; segment the audio");
    }
    out->lengths[b] = t;
    out->offsets[b] = m;
    m += t;
    t_max = std::max(t_max, t);
  }

  // Attention mask, chosen as WeNet's add_optional_chunk_mask does.
  AttentionMask mask = AttentionMask::kNone;
  int chunk_size = 0;
  if (e.use_dynamic_chunk && options.decoding_chunk_size > 0) {
    mask = AttentionMask::kChunk;
    chunk_size = options.decoding_chunk_size;
  } else if (!e.use_dynamic_chunk && e.static_chunk_size > 0) {
    mask = AttentionMask::kChunk;
    chunk_size = e.static_chunk_size;
  }
  std::vector<AttentionSegment> attn_segs;
  std::vector<DepthwiseSegment> conv_segs;
  for (int b = 0; b < B; ++b) {
    if (out->lengths[b] == 0) continue;
    AttentionSegment s;
    s.q_row = s.kv_row = out->offsets[b];
    s.q_len = s.kv_len = out->lengths[b];
    attn_segs.push_back(s);
    conv_segs.push_back({out->offsets[b], out->lengths[b], nullptr});
  }

  float* x = ws.Floats(kSlotX, static_cast<size_t>(m) * D);
  Embed(feats, out->lengths, out->offsets, std::vector<int>(B, 0), m, ws, x);

  auto capture = [&](std::vector<std::vector<float>>* dst_per_utt) {
    for (int b = 0; b < B; ++b) {
      (*dst_per_utt)[b] =
          be.DownloadRows(x + static_cast<size_t>(out->offsets[b]) * D, out->lengths[b], D, D);
    }
  };
  if (options.capture_layers) {
    out->embed.assign(B, {});
    capture(&out->embed);
    out->layers.assign(B, std::vector<std::vector<float>>(e.num_blocks));
  }

  const bool rel = e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn;
  const bool use_pos = rel && e.pos_enc_layer_type != PosEncType::kNoPos;
  LayerContext ctx;
  ctx.conv_segments = conv_segs;
  ctx.attention = [&](int layer, const float* qkv, float* att, Workspace& w) {
    AttentionParams p = AttentionTemplate(layers_[layer]);
    p.q = qkv;
    p.k = qkv + D;
    p.v = qkv + 2 * D;
    p.ldq = p.ldk = p.ldv = 3 * D;
    p.out = att;
    p.ldo = D;
    p.mask = mask;
    p.chunk_size = chunk_size;
    p.left_chunks = options.num_decoding_left_chunks;
    if (use_pos && t_max > 0) {
      // Offline, every utterance's key j sits at position j: one projection serves all.
      float* pos_proj = w.Floats(kSlotPos, static_cast<size_t>(t_max) * D);
      const LinearWeights& lp = layers_[layer].linear_pos;
      lp.Forward(be, pos_table_.f32(), t_max, D, pos_proj, D);
      p.pos = pos_proj;
      p.ldp = D;
    }
    be.Attention(p, attn_segs, w);
  };
  std::vector<std::vector<float>> layer_capture(B);
  for (int i = 0; i < e.num_blocks; ++i) {
    Layer(i, x, m, ctx, ws);
    if (options.capture_layers) {
      capture(&layer_capture);
      for (int b = 0; b < B; ++b) out->layers[b][i] = std::move(layer_capture[b]);
    }
  }
  Finish(x, m, ws, out);
  return Status::Ok();
}

void ConformerEncoder::InitStream(EncoderStream* st) const {
  const EncoderConfig& e = config_.encoder;
  st->offset_ = 0;
  st->cache_frames_ = 0;
  st->capacity_ = 0;
  st->att_cache_.assign(e.num_blocks, Tensor());
  st->cnn_cache_.clear();
  if (e.has_conv_module() && e.causal && e.cnn_module_kernel > 1) {
    for (int i = 0; i < e.num_blocks; ++i) {
      const Tensor& init = layers_[i].initial_conv_history;
      Tensor c = backend_->NewTensor(init.shape());
      backend_->Copy(c.data<void>(), init.data<void>(), init.nbytes());
      st->cnn_cache_.push_back(c);
    }
  }
  st->encoder_frames_.clear();
}

Status ConformerEncoder::ForwardChunk(std::span<EncoderStream* const> streams,
                                      std::span<const FeatureView> chunks, const StreamingOptions& options,
                                      Workspace& ws, EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.output_size;
  const int B = static_cast<int>(streams.size());
  out->lengths.assign(B, 0);
  out->offsets.assign(B, 0);
  out->dim = D;
  std::vector<int> positions(B, 0);
  int m = 0;
  for (int b = 0; b < B; ++b) {
    const FeatureView& f = chunks[b];
    const std::string where = "stream " + std::to_string(b) + ": ";
    if (f.num_frames < 0 || (f.num_frames > 0 && f.data == nullptr) || f.dim != config_.input_dim) {
      return InvalidArgument(where + "bad chunk (num_frames " + std::to_string(f.num_frames) + ", dim " +
                             std::to_string(f.dim) + ", model input_dim " +
                             std::to_string(config_.input_dim) + ")");
    }
    const int t = config_.NumEncoderFrames(f.num_frames);
    if (streams[b]->offset_ + t > config_.MaxEncoderFrames()) {
      return InvalidArgument(where + "the stream would reach " + std::to_string(streams[b]->offset_ + t) +
                             " encoder frames, more than the model's " +
                             std::to_string(config_.MaxEncoderFrames()) +
                             " positions; end the utterance earlier");
    }
    out->lengths[b] = t;
    out->offsets[b] = m;
    positions[b] = streams[b]->offset_;
    m += t;
  }
  // Grow each stream's K|V cache to hold history + this chunk.
  for (int b = 0; b < B; ++b) {
    EncoderStream* st = streams[b];
    const int need = st->cache_frames_ + out->lengths[b];
    if (out->lengths[b] == 0 || need <= st->capacity_) continue;
    const int cap = std::max(need, st->capacity_ * 2);
    for (int i = 0; i < e.num_blocks; ++i) {
      Tensor grown = be.NewTensor({cap, 2 * D});
      if (st->cache_frames_ > 0) {
        be.Copy(grown.data<void>(), st->att_cache_[i].data<void>(),
                static_cast<size_t>(st->cache_frames_) * 2 * D * sizeof(float));
      }
      st->att_cache_[i] = grown;
    }
    st->capacity_ = cap;
  }

  float* x = ws.Floats(kSlotX, static_cast<size_t>(m) * D);
  Embed(chunks, out->lengths, out->offsets, positions, m, ws, x);

  const bool rel = e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn;
  const bool use_pos = rel && e.pos_enc_layer_type != PosEncType::kNoPos;
  const bool conv_cache = !streams.empty() && !streams[0]->cnn_cache_.empty();
  std::vector<DepthwiseSegment> conv_segs;
  std::vector<int> conv_owner;
  for (int b = 0; b < B; ++b) {
    if (out->lengths[b] == 0) continue;
    conv_segs.push_back({out->offsets[b], out->lengths[b], nullptr});
    conv_owner.push_back(b);
  }
  LayerContext ctx;
  ctx.conv_segments = conv_segs;
  ctx.attention = [&](int layer, const float* qkv, float* att, Workspace& w) {
    for (int b = 0; b < B; ++b) {
      const int len = out->lengths[b];
      if (len == 0) continue;
      EncoderStream* st = streams[b];
      const int t1 = st->cache_frames_;
      float* cache = st->att_cache_[layer].mutable_f32();
      // Append this chunk's K|V (columns D..3D of qkv) after the history.
      be.CopyRows(cache + static_cast<size_t>(t1) * 2 * D, 2 * D,
                  qkv + static_cast<size_t>(out->offsets[b]) * 3 * D + D, 3 * D, len, 2 * D);
      AttentionParams p = AttentionTemplate(layers_[layer]);
      p.q = qkv;
      p.ldq = 3 * D;
      p.k = cache;
      p.v = cache + D;
      p.ldk = p.ldv = 2 * D;
      p.out = att;
      p.ldo = D;
      if (use_pos) {
        // Keys are at absolute positions offset − t1 … offset + len − 1 (docs/wenet-numerics.md §4.1).
        float* pos_proj = w.Floats(kSlotPos, static_cast<size_t>(t1 + len) * D);
        const LinearWeights& lp = layers_[layer].linear_pos;
        lp.Forward(be, pos_table_.f32() + static_cast<size_t>(st->offset_ - t1) * D, t1 + len, D, pos_proj,
                   D);
        p.pos = pos_proj;
        p.ldp = D;
      }
      AttentionSegment s;
      s.q_row = out->offsets[b];
      s.q_len = len;
      s.kv_row = 0;
      s.kv_len = t1 + len;
      be.Attention(p, {&s, 1}, w);
    }
  };
  if (conv_cache) {
    const int K = e.cnn_module_kernel;
    for (size_t k = 0; k < conv_segs.size(); ++k) conv_segs[k].history = nullptr;  // set per layer below
    // K by value: the hook runs in Layer(), after this block (and K's scope) has ended.
    ctx.after_conv = [&, K](int layer, const float* glu) {
      // New history = the last K−1 frames of [old history | this chunk's GLU output].
      for (size_t k = 0; k < conv_segs.size(); ++k) {
        EncoderStream* st = streams[conv_owner[k]];
        const int len = conv_segs[k].len;
        float* hist = st->cnn_cache_[layer].mutable_f32();
        float* next = ws.Floats(kSlotConvHist, static_cast<size_t>(K - 1) * D);
        for (int j = 0; j < K - 1; ++j) {
          const int src = j + len;  // index into [history (K−1 rows) | chunk (len rows)]
          const float* row = src < K - 1 ? hist + static_cast<size_t>(src) * D
                                         : glu + static_cast<size_t>(conv_segs[k].row + src - (K - 1)) * D;
          be.Copy(next + static_cast<size_t>(j) * D, row, D * sizeof(float));
        }
        be.Copy(hist, next, static_cast<size_t>(K - 1) * D * sizeof(float));
      }
    };
  }
  for (int i = 0; i < e.num_blocks; ++i) {
    if (conv_cache) {
      for (size_t k = 0; k < conv_segs.size(); ++k)
        conv_segs[k].history = streams[conv_owner[k]]->cnn_cache_[i].f32();
    }
    Layer(i, x, m, ctx, ws);
  }
  Finish(x, m, ws, out);

  // Advance the streams: offset, accumulated output, and the K|V cache trimmed to the kept history.
  const int required = options.RequiredCacheSize();
  for (int b = 0; b < B; ++b) {
    const int len = out->lengths[b];
    if (len == 0) continue;
    EncoderStream* st = streams[b];
    const std::vector<float> frames =
        be.DownloadRows(out->encoder_out.f32() + static_cast<size_t>(out->offsets[b]) * D, len, D, D);
    st->encoder_frames_.insert(st->encoder_frames_.end(), frames.begin(), frames.end());
    st->offset_ += len;
    const int total = st->cache_frames_ + len;
    const int start = required < 0 ? 0 : (required == 0 ? total : std::max(total - required, 0));
    if (start > 0 && total > start) {
      // Through scratch: device copies need not handle overlap.
      const size_t bytes = static_cast<size_t>(total - start) * 2 * D * sizeof(float);
      float* scratch = ws.Floats(kSlotConvOut, static_cast<size_t>(total - start) * 2 * D);
      for (int i = 0; i < e.num_blocks; ++i) {
        float* c = st->att_cache_[i].mutable_f32();
        be.Copy(scratch, c + static_cast<size_t>(start) * 2 * D, bytes);
        be.Copy(c, scratch, bytes);
      }
    }
    st->cache_frames_ = total - start;
  }
  return Status::Ok();
}

}  // namespace u2
