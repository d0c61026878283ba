#include "u2/model/encoder.h"

#include <algorithm>
#include <cmath>

namespace u2 {

StatusOr<std::unique_ptr<Encoder>> Encoder::Load(const ModelConfig& config, const WeightLoader& loader,
                                                 std::shared_ptr<const Backend> backend) {
  std::unique_ptr<Encoder> enc(new Encoder(config, backend));
  const EncoderConfig& e = config.encoder;
  const int D = e.width();  // the front's and the layers' width (Squeezeformer: encoder_dim)
  const int I = config.input_dim;
  const bool squeezeformer = e.type == EncoderType::kSqueezeformer;

  if (config.cmvn) {
    U2_ASSIGN_OR_RETURN(enc->cmvn_mean_, loader.Device("encoder.global_cmvn.mean", {I}));
    U2_ASSIGN_OR_RETURN(enc->cmvn_istd_, loader.Device("encoder.global_cmvn.istd", {I}));
  }

  // Subsampling: (kernel, stride) per conv; weights reordered (out, in, kh, kw) → (out, kh, kw, in).
  const std::vector<SubsamplingConv> convs = SubsamplingConvs(e.input_layer);
  for (size_t c = 0; c < convs.size(); ++c) {
    const auto [k, s] = convs[c];
    const int cin = c == 0 ? 1 : D;
    // Squeezeformer's DepthwiseConv2dSubsampling4 names its convs pw_conv and dw_conv; with
    // dw_stride the second is depthwise, run here as the dense conv with a diagonal weight.
    const std::string name = e.input_layer == InputLayer::kDwConv2d4
                                 ? std::string(c == 0 ? "encoder.embed.pw_conv" : "encoder.embed.dw_conv")
                                 : "encoder.embed.conv." + std::to_string(2 * c);
    std::vector<float> w;
    if (c == 1 && e.input_layer == InputLayer::kDwConv2d4 && e.dw_stride) {
      U2_ASSIGN_OR_RETURN(std::vector<float> dw, loader.Host(name + ".weight", {D, 1, k, k}));
      w.assign(static_cast<size_t>(D) * cin * k * k, 0.0f);
      for (int o = 0; o < D; ++o)
        for (int t = 0; t < k * k; ++t)
          w[(static_cast<size_t>(o) * cin + o) * k * k + t] = dw[static_cast<size_t>(o) * k * k + t];
    } else {
      U2_ASSIGN_OR_RETURN(w, loader.Host(name + ".weight", {D, cin, k, k}));
    }
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
    if (squeezeformer) {
      // WeNet scales the flattened conv output by sqrt(D) before input_proj (its bias unscaled).
      const float xscale = static_cast<float>(std::sqrt(static_cast<double>(D)));
      for (float& v : r) v *= xscale;
    }
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

  U2_ASSIGN_OR_RETURN(enc->layers_, LoadEncoderLayers(config, loader, backend));
  if (squeezeformer) {
    U2_ASSIGN_OR_RETURN(enc->preln_, loader.Norm("encoder.preln", D, 1e-5f));
    if (!e.reduce_idx.empty()) {
      U2_ASSIGN_OR_RETURN(enc->time_reduction_, SqueezeformerTimeReduction::Load(e, loader, backend));
    }
    if (e.output_size != D) {
      U2_ASSIGN_OR_RETURN(enc->final_proj_, loader.Linear("encoder.final_proj", D, e.output_size));
    }
  }
  if (e.normalize_before && e.final_norm) {
    U2_ASSIGN_OR_RETURN(enc->after_norm_, loader.Norm("encoder.after_norm", D, e.norm_eps));
  }
  U2_ASSIGN_OR_RETURN(enc->ctc_, loader.Linear("ctc.ctc_lo", e.output_size, config.vocab_size));
  return enc;
}

void Encoder::Subsample(const FeatureView& f, Workspace& ws, float* conv_out) const {
  const Backend& be = *backend_;
  const int I = config_.input_dim;
  const int D = config_.encoder.width();
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

AttentionParams Encoder::AttentionTemplate(const AttentionWeights& w) const {
  const EncoderConfig& e = config_.encoder;
  AttentionParams p;
  p.num_heads = e.attention_heads;
  p.head_dim = e.head_dim();
  p.pos_bias_u = w.pos_bias_u.empty() ? nullptr : w.pos_bias_u.f32();
  p.pos_bias_v = w.pos_bias_v.empty() ? nullptr : w.pos_bias_v.f32();
  p.rel_shift = w.rel_shift;
  return p;
}

void Encoder::Embed(std::span<const FeatureView> feats, const std::vector<int>& lengths,
                    const std::vector<int>& offsets, const std::vector<int>& positions, int m, Workspace& ws,
                    float* x) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.width();
  // Subsampling, each utterance into its rows of the packed conv output, then one GEMM for all.
  const int FD = embed_out_.in;
  float* conv_out = ws.Floats(kSlotConvOut, static_cast<size_t>(m) * FD);
  for (size_t b = 0; b < feats.size(); ++b) {
    if (lengths[b] > 0) Subsample(feats[b], ws, conv_out + static_cast<size_t>(offsets[b]) * FD);
  }
  // The positional encoding's ×sqrt(D) (Squeezeformer: folded into the weight, Load).
  const bool scaled = e.pos_enc_layer_type != PosEncType::kNoPos && e.type != EncoderType::kSqueezeformer;
  const float xscale = scaled ? static_cast<float>(std::sqrt(double(D))) : 1.0f;
  embed_out_.Apply(be, conv_out, m, FD, x, D, {embed_out_.b(), Activation::kNone, xscale});
  if (!preln_.gamma.empty()) be.LayerNorm(x, m, D, D, preln_.params(), x, D);
  if (e.pos_enc_layer_type == PosEncType::kAbsPos) {
    for (size_t b = 0; b < feats.size(); ++b) {
      if (lengths[b] == 0) continue;
      const RowSegment seg{offsets[b], lengths[b]};
      be.AddPositional(x, D, {&seg, 1}, pos_table_.f32(), positions[b]);
    }
  }
}

void Encoder::Finish(const float* x, int m, Workspace& ws, EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int E = e.width();
  const int D = e.output_size;
  const int V = config_.vocab_size;
  const int B = static_cast<int>(out->lengths.size());
  out->encoder_out = be.NewTensor({m, D});
  float* enc = out->encoder_out.mutable_f32();
  if (final_proj_.out > 0) {  // Squeezeformer with output_size != encoder_dim (no after_norm)
    final_proj_.Forward(be, x, m, E, enc, D);
  } else if (e.normalize_before && e.final_norm) {
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

Status Encoder::Forward(std::span<const FeatureView> feats, const EncodeOptions& options, Workspace& ws,
                        EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.width();
  const int B = static_cast<int>(feats.size());
  std::vector<int> lengths(B, 0);
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
    const int t = config_.NumEmbeddingFrames(f.num_frames);
    if (t > config_.MaxEncoderFrames()) {
      return InvalidArgument(where + std::to_string(f.num_frames) + " feature frames give " +
                             std::to_string(t) + " encoder frames, more than the model's " +
                             std::to_string(config_.MaxEncoderFrames()) + " positions; segment the audio");
    }
    lengths[b] = t;
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

  const TimeGrid embedded = TimeGrid::FromLengths(lengths);
  float* x = ws.Floats(kSlotX, static_cast<size_t>(embedded.rows) * D);
  Embed(feats, embedded.lengths, embedded.offsets, std::vector<int>(B, 0), embedded.rows, ws, x);

  auto capture = [&](const TimeGrid& g, std::vector<std::vector<float>>* dst_per_utt) {
    for (int b = 0; b < B; ++b) {
      (*dst_per_utt)[b] = be.DownloadRows(x + static_cast<size_t>(g.offsets[b]) * D, g.lengths[b], D, D);
    }
  };
  if (options.capture_layers) {
    out->embed.assign(B, {});
    capture(embedded, &out->embed);
    out->layers.assign(B, std::vector<std::vector<float>>(e.num_blocks));
  }

  const bool rel = e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn;
  const bool use_pos = rel && e.pos_enc_layer_type != PosEncType::kNoPos;
  LayerContext ctx;
  ctx.depthwise = [&](int /*layer*/, int /*conv*/, const DepthwiseConvParams& p, const float* in, float* y) {
    std::vector<DepthwiseSegment> segs;
    for (const RowSegment& r : ctx.grid->Segments()) segs.push_back({r.row, r.len, nullptr});
    be.DepthwiseConv(p, in, segs, y);
  };
  ctx.attention = [&](int /*layer*/, const AttentionWeights& aw, const float* qkv, float* att, Workspace& w) {
    const TimeGrid& g = *ctx.grid;
    std::vector<AttentionSegment> segs;
    for (const RowSegment& r : g.Segments()) {
      AttentionSegment s;
      s.q_row = s.kv_row = r.row;
      s.q_len = s.kv_len = r.len;
      segs.push_back(s);
    }
    AttentionParams p = AttentionTemplate(aw);
    p.q = qkv;
    p.k = qkv + D;
    p.v = qkv + 2 * D;
    p.ldq = p.ldk = p.ldv = 3 * D;
    p.out = att;
    p.ldo = D;
    p.mask = mask;
    p.chunk_size = chunk_size;
    p.left_chunks = options.num_decoding_left_chunks;
    p.mask_stride = g.stride;
    float* pos_proj = nullptr;
    if (use_pos && g.max_length > 0) {
      // Offline, every utterance's key j sits at position j·stride: one projection serves all.
      pos_proj = w.Floats(kSlotPos, static_cast<size_t>(g.max_length) * D);
      aw.linear_pos.Forward(be, pos_table_.f32(), g.max_length, g.stride * D, pos_proj, D);
      p.pos = pos_proj;
      p.ldp = D;
    }
    if (aw.group > 1) {
      for (const AttentionSegment& s : segs) {
        const float* q = qkv + static_cast<size_t>(s.q_row) * 3 * D;
        GroupedAttention(p, aw.group, q, 3 * D, s.q_len, q + D, q + 2 * D, 3 * D, s.kv_len, pos_proj,
                         att + static_cast<size_t>(s.q_row) * D, w);
      }
      return;
    }
    be.Attention(p, segs, w);
  };
  std::vector<std::vector<float>> layer_capture(B);
  const TimeGrid final_grid = RunLayers(x, embedded, ctx, ws, [&](int i, const TimeGrid& g) {
    if (!options.capture_layers) return;
    capture(g, &layer_capture);
    for (int b = 0; b < B; ++b) out->layers[b][i] = std::move(layer_capture[b]);
  });
  out->lengths = final_grid.lengths;
  out->offsets = final_grid.offsets;
  out->dim = e.output_size;
  Finish(x, final_grid.rows, ws, out);
  return Status::Ok();
}

TimeGrid Encoder::RunLayers(float* x, TimeGrid grid, LayerContext& ctx, Workspace& ws,
                            const std::function<void(int, const TimeGrid&)>& after_layer) const {
  const EncoderConfig& e = config_.encoder;
  const int D = e.width();
  // Squeezeformer: the activations saved at the reductions not yet undone, innermost last.
  std::vector<std::pair<const float*, TimeGrid>> saved;
  auto in = [](const std::vector<int>& idx, int i) {
    return std::find(idx.begin(), idx.end(), i) != idx.end();
  };
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) {
    ctx.grid = &grid;
    if (time_reduction_ && in(e.reduce_idx, i)) {
      float* keep =
          ws.Floats(kSlotSaved + static_cast<int>(saved.size()), static_cast<size_t>(grid.rows) * D);
      backend_->Copy(keep, x, static_cast<size_t>(grid.rows) * D * sizeof(float));
      saved.push_back({keep, grid});
      grid = time_reduction_->Reduce(x, ctx, ws);
      ctx.grid = &grid;
    }
    if (time_reduction_ && in(e.recover_idx, i) && !saved.empty()) {
      time_reduction_->Recover(x, grid, saved.back().first, saved.back().second, ws);
      grid = saved.back().second;
      saved.pop_back();
      ctx.grid = &grid;
    }
    layers_[i]->Forward(i, x, grid.rows, ctx, ws);
    if (layers_[i]->time_stride() > 1) grid = grid.Subsampled(layers_[i]->time_stride());
    ctx.grid = nullptr;
    after_layer(i, grid);
  }
  return grid;
}

void Encoder::InitStream(EncoderStream* st) const {
  const EncoderConfig& e = config_.encoder;
  st->offset_ = 0;
  st->dim_ = e.output_size;
  st->cache_frames_.assign(e.num_blocks, 0);
  st->capacity_.assign(e.num_blocks, 0);
  st->pending_frames_.assign(e.num_blocks, 0);
  st->att_cache_.assign(e.num_blocks, Tensor());
  st->conv_cache_.assign(e.num_blocks, {});
  for (int i = 0; i < e.num_blocks; ++i) {
    for (const Tensor& init : layers_[i]->ConvHistories()) {
      Tensor c = backend_->NewTensor(init.shape());
      backend_->Copy(c.data<void>(), init.data<void>(), init.nbytes());
      st->conv_cache_[i].push_back(c);
    }
  }
  st->encoder_frames_.clear();
}

Status Encoder::ForwardChunk(std::span<EncoderStream* const> streams, std::span<const FeatureView> chunks,
                             const StreamingOptions& options, Workspace& ws, EncoderOutput* out) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_.encoder;
  const int D = e.width();
  const int B = static_cast<int>(streams.size());
  const int max_stride = config_.StreamingChunkUnit();
  if (options.decoding_chunk_size % max_stride != 0) {
    return InvalidArgument("decoding_chunk_size " + std::to_string(options.decoding_chunk_size) +
                           " must be a multiple of " + std::to_string(max_stride) +
                           ", the time stride of this model's deepest layers, to stream");
  }
  std::vector<int> positions(B, 0), lengths(B, 0);
  for (int b = 0; b < B; ++b) {
    const FeatureView& f = chunks[b];
    const std::string where = "stream " + std::to_string(b) + ": ";
    if (f.num_frames < 0 || (f.num_frames > 0 && f.data == nullptr) || f.dim != config_.input_dim) {
      return InvalidArgument(where + "bad chunk (num_frames " + std::to_string(f.num_frames) + ", dim " +
                             std::to_string(f.dim) + ", model input_dim " +
                             std::to_string(config_.input_dim) + ")");
    }
    const int t = config_.NumEmbeddingFrames(f.num_frames);
    if (streams[b]->offset_ + t > config_.MaxEncoderFrames()) {
      return InvalidArgument(where + "the stream would reach " + std::to_string(streams[b]->offset_ + t) +
                             " encoder frames, more than the model's " +
                             std::to_string(config_.MaxEncoderFrames()) +
                             " positions; end the utterance earlier");
    }
    if (t > 0 && streams[b]->offset_ % max_stride != 0) {
      return InvalidArgument(where + "a chunk after the stream's last (shorter) chunk");
    }
    lengths[b] = t;
    positions[b] = streams[b]->offset_;
  }
  const TimeGrid embedded = TimeGrid::FromLengths(lengths);
  float* x = ws.Floats(kSlotX, static_cast<size_t>(embedded.rows) * D);
  Embed(chunks, embedded.lengths, embedded.offsets, positions, embedded.rows, ws, x);

  const bool rel = e.selfattention_layer_type == SelfAttentionType::kRelSelfAttn;
  const bool use_pos = rel && e.pos_enc_layer_type != PosEncType::kNoPos;
  LayerContext ctx;
  ctx.depthwise = [&](int layer, int conv, const DepthwiseConvParams& p, const float* in, float* y) {
    const int K = p.kernel;
    const int C = p.channels;
    const std::vector<RowSegment> rows = ctx.grid->Segments();
    std::vector<DepthwiseSegment> segs;
    for (const RowSegment& r : rows) segs.push_back({r.row, r.len, nullptr});
    if (conv < 0 || p.left_pad != K - 1 || K < 2) {  // nothing carried over: zeros at the chunk's edges
      be.DepthwiseConv(p, in, segs, y);
      return;
    }
    for (size_t k = 0; k < segs.size(); ++k)
      segs[k].history = streams[rows[k].pos]->conv_cache_[layer][conv].f32();
    be.DepthwiseConv(p, in, segs, y);
    // The next history: the last K−1 rows of [history | this chunk's input].
    float* next = ws.Floats(kSlotConvHist, static_cast<size_t>(K - 1) * C);
    for (size_t k = 0; k < segs.size(); ++k) {
      float* hist = streams[rows[k].pos]->conv_cache_[layer][conv].mutable_f32();
      const int len = segs[k].len;
      const int kept = std::max(K - 1 - len, 0);  // old history rows that stay
      be.CopyRows(next, C, hist + static_cast<size_t>(K - 1 - kept) * C, C, kept, C);
      be.CopyRows(next + static_cast<size_t>(kept) * C, C,
                  in + static_cast<size_t>(segs[k].row + len - (K - 1 - kept)) * C, C, K - 1 - kept, C);
      be.Copy(hist, next, static_cast<size_t>(K - 1) * C * sizeof(float));
    }
  };
  ctx.attention = [&](int layer, const AttentionWeights& aw, const float* qkv, float* att, Workspace& w) {
    const TimeGrid& g = *ctx.grid;
    for (int b = 0; b < B; ++b) {
      const int len = g.lengths[b];
      if (len == 0) continue;
      EncoderStream* st = streams[b];
      GrowAttentionCache(st, layer, st->cache_frames_[layer] + len);
      const int t1 = st->cache_frames_[layer];
      float* cache = st->att_cache_[layer].mutable_f32();
      // Append this chunk's K|V (columns D..3D of qkv) after the history.
      be.CopyRows(cache + static_cast<size_t>(t1) * 2 * D, 2 * D,
                  qkv + static_cast<size_t>(g.offsets[b]) * 3 * D + D, 3 * D, len, 2 * D);
      AttentionParams p = AttentionTemplate(aw);
      p.q = qkv;
      p.ldq = 3 * D;
      p.k = cache;
      p.v = cache + D;
      p.ldk = p.ldv = 2 * D;
      p.out = att;
      p.ldo = D;
      float* pos_proj = nullptr;
      if (use_pos) {
        // Keys are the frames at positions offset − stride·t1 … offset + stride·(len − 1), every
        // stride-th (docs/wenet-numerics.md §4.1).
        pos_proj = w.Floats(kSlotPos, static_cast<size_t>(t1 + len) * D);
        aw.linear_pos.Forward(be, pos_table_.f32() + static_cast<size_t>(st->offset_ - g.stride * t1) * D,
                              t1 + len, g.stride * D, pos_proj, D);
        p.pos = pos_proj;
        p.ldp = D;
      }
      if (aw.group > 1) {
        // Every query group sees every key group: the cache holds exactly the visible history.
        GroupedAttention(p, aw.group, qkv + static_cast<size_t>(g.offsets[b]) * 3 * D, 3 * D, len, cache,
                         cache + D, 2 * D, t1 + len, pos_proj, att + static_cast<size_t>(g.offsets[b]) * D,
                         w);
        continue;
      }
      AttentionSegment s;
      s.q_row = g.offsets[b];
      s.q_len = len;
      s.kv_row = 0;
      s.kv_len = t1 + len;
      be.Attention(p, {&s, 1}, w);
    }
  };
  for (int b = 0; b < B; ++b) streams[b]->pending_frames_ = streams[b]->cache_frames_;
  const TimeGrid final_grid = RunLayers(x, embedded, ctx, ws, [&](int, const TimeGrid&) {});
  out->lengths = final_grid.lengths;
  out->offsets = final_grid.offsets;
  out->dim = e.output_size;
  Finish(x, final_grid.rows, ws, out);

  // Advance the streams: position, accumulated output, and each layer's K|V cache: the rows this
  // chunk appended become history, trimmed to what the next chunk may see.
  const int required = options.RequiredCacheSize();
  for (int b = 0; b < B; ++b) {
    if (embedded.lengths[b] == 0) continue;
    EncoderStream* st = streams[b];
    const int len = out->lengths[b];
    const int out_dim = e.output_size;
    const std::vector<float> frames = be.DownloadRows(
        out->encoder_out.f32() + static_cast<size_t>(out->offsets[b]) * out_dim, len, out_dim, out_dim);
    st->encoder_frames_.insert(st->encoder_frames_.end(), frames.begin(), frames.end());
    st->offset_ += embedded.lengths[b];
    for (int i = 0; i < e.num_blocks; ++i) {
      const int total = st->pending_frames_[i];
      const int layer_required = required < 0 ? -1 : required / config_.LayerTimeStride(i);
      const int start =
          layer_required < 0 ? 0 : (layer_required == 0 ? total : std::max(total - layer_required, 0));
      if (start > 0 && total > start) {
        // Through scratch: device copies need not handle overlap.
        const size_t bytes = static_cast<size_t>(total - start) * 2 * D * sizeof(float);
        float* scratch = ws.Floats(kSlotConvOut, static_cast<size_t>(total - start) * 2 * D);
        float* c = st->att_cache_[i].mutable_f32();
        be.Copy(scratch, c + static_cast<size_t>(start) * 2 * D, bytes);
        be.Copy(c, scratch, bytes);
      }
      st->cache_frames_[i] = total - start;
    }
  }
  return Status::Ok();
}

void Encoder::GroupedAttention(AttentionParams p, int group, const float* q, int ldq, int q_len,
                               const float* k, const float* v, int ldkv, int kv_len, const float* pos,
                               float* out, Workspace& ws) const {
  const Backend& be = *backend_;
  const int D = config_.encoder.width();
  const int q_groups = (q_len + group - 1) / group;
  const int kv_groups = (kv_len + group - 1) / group;
  const size_t gd = static_cast<size_t>(group) * D;
  // Rows copied into contiguous D-wide buffers with zero rows up to a whole group: g rows side by
  // side are then one grouped row of g·D.
  std::vector<float> zeros;
  auto grouped = [&](int slot, const float* src, int ld, int rows, int groups) {
    float* dst = ws.Floats(slot, groups * gd);
    be.CopyRows(dst, D, src, ld, rows, D);
    const size_t pad = static_cast<size_t>(groups) * group - rows;
    if (pad > 0) {
      zeros.assign(pad * D, 0.0f);
      be.CopyFromHost(dst + static_cast<size_t>(rows) * D, zeros.data(), zeros.size() * sizeof(float));
    }
    return dst;
  };
  p.q = grouped(kSlotGroupQ, q, ldq, q_len, q_groups);
  p.k = grouped(kSlotGroupK, k, ldkv, kv_len, kv_groups);
  p.v = grouped(kSlotGroupV, v, ldkv, kv_len, kv_groups);
  p.pos = pos ? grouped(kSlotGroupP, pos, D, kv_len, kv_groups) : nullptr;
  p.ldq = p.ldk = p.ldv = p.ldp = static_cast<int>(gd);
  p.head_dim *= group;
  p.mask_stride *= group;
  float* grouped_out = ws.Floats(kSlotGroupOut, q_groups * gd);
  p.out = grouped_out;
  p.ldo = static_cast<int>(gd);
  AttentionSegment s;
  s.q_len = q_groups;
  s.kv_len = kv_groups;
  be.Attention(p, {&s, 1}, ws);
  be.CopyRows(out, D, grouped_out, D, q_len, D);
}

void Encoder::GrowAttentionCache(EncoderStream* st, int layer, int frames) const {
  const int D = config_.encoder.width();
  st->pending_frames_[layer] = frames;
  if (frames <= st->capacity_[layer]) return;
  const int cap = std::max(frames, st->capacity_[layer] * 2);
  Tensor grown = backend_->NewTensor({cap, 2 * D});
  if (st->cache_frames_[layer] > 0) {
    backend_->Copy(grown.data<void>(), st->att_cache_[layer].data<void>(),
                   static_cast<size_t>(st->cache_frames_[layer]) * 2 * D * sizeof(float));
  }
  st->att_cache_[layer] = grown;
  st->capacity_[layer] = cap;
}

}  // namespace u2
