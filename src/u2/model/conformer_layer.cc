#include "u2/model/conformer_layer.h"

#include <algorithm>
#include <cmath>

#include "u2/model/conv_module.h"

namespace u2 {

StatusOr<std::unique_ptr<ConformerLayer>> ConformerLayer::Load(const EncoderConfig& e, int block,
                                                               const WeightLoader& loader,
                                                               const std::string& p,
                                                               std::shared_ptr<const Backend> backend) {
  std::unique_ptr<ConformerLayer> w(new ConformerLayer(e, std::move(backend)));
  w->kernel_ = e.ConvKernel(block);
  w->stride_ = e.BlockStride(block);
  const int D = e.width();
  const int Fe = e.linear_units;
  const float eps = e.norm_eps;
  if (e.is_conformer()) {
    if (e.macaron_style) {
      U2_ASSIGN_OR_RETURN(w->norm_ff_macaron_, loader.Norm(p + "norm_ff_macaron", D, eps));
      U2_ASSIGN_OR_RETURN(w->ff_macaron_,
                          FeedForwardWeights::Load(loader, p + "feed_forward_macaron", D, Fe));
    }
    U2_ASSIGN_OR_RETURN(w->norm_mha_, loader.Norm(p + "norm_mha", D, eps));
    U2_ASSIGN_OR_RETURN(w->norm_ff_, loader.Norm(p + "norm_ff", D, eps));
    if (e.use_cnn_module) {
      U2_ASSIGN_OR_RETURN(w->norm_conv_, loader.Norm(p + "norm_conv", D, eps));
      U2_ASSIGN_OR_RETURN(w->norm_final_, loader.Norm(p + "norm_final", D, eps));
    }
  } else {
    U2_ASSIGN_OR_RETURN(w->norm_mha_, loader.Norm(p + "norm1", D, eps));
    U2_ASSIGN_OR_RETURN(w->norm_ff_, loader.Norm(p + "norm2", D, eps));
  }
  U2_ASSIGN_OR_RETURN(w->ff_, FeedForwardWeights::Load(loader, p + "feed_forward", D, Fe));
  U2_ASSIGN_OR_RETURN(w->attention_,
                      AttentionWeights::Load(e, loader, p + "self_attn", e.BlockGroupSize(block)));
  if (!e.has_conv_module()) return w;

  U2_ASSIGN_OR_RETURN(w->conv_, ConvModuleWeights::Load(e, loader, p + "conv_module", w->kernel_, nullptr,
                                                        &w->conv_histories_));
  return w;
}

void ConformerLayer::Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const {
  const Backend& be = *backend_;
  const EncoderConfig& e = config_;
  const int D = e.width();
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
  if (e.has_macaron()) subs[n++] = {Kind::kFfnMacaron, &norm_ff_macaron_};
  subs[n++] = {Kind::kAttention, &norm_mha_};
  if (e.has_conv_module()) subs[n++] = {Kind::kConv, &norm_conv_};
  subs[n++] = {Kind::kFfn, &norm_ff_};
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
        const FeedForwardWeights& ff = subs[s].kind == Kind::kFfnMacaron ? ff_macaron_ : ff_;
        ff.w1.Forward(be, in, m, ff.w1.in, big, Fe, e.activation);
        linear(big, ff.w2, tmp);
        delta_bias = ff.w2.b();
        alpha = ff_scale;
        break;
      }
      case Kind::kAttention: {
        attention_.qkv.Forward(be, in, m, D, big, 3 * D);
        ctx.attention(index, attention_, big, att, ws);
        linear(att, attention_.out, tmp);
        delta_bias = attention_.out.b();
        break;
      }
      case Kind::kConv: {
        // `in` is h (pre-LN only): consumed by pointwise_conv1 before h is overwritten.
        conv_.Depthwise(be, index, in, m, D, ctx, ws, h);
        if (stride_ > 1) {
          // A stride block: the conv's frames s·j, and the residual from here on is the s-frame
          // average of x; the rest of the layer runs on the subsampled frames.
          const TimeGrid out_grid = ctx.grid->Subsampled(stride_);
          std::vector<int> picked, out_rows;
          const std::vector<RowSegment> segs = ctx.grid->Segments();
          for (const RowSegment& r : segs) {
            for (int j = 0; j < out_grid.lengths[r.pos]; ++j) picked.push_back(r.row + j * stride_);
            out_rows.push_back(out_grid.offsets[r.pos]);
          }
          be.GatherRows(big, D, h, D, picked, D);
          be.AveragePoolRows(x, D, segs, out_rows, stride_, att);
          m = out_grid.rows;
          be.Copy(x, att, static_cast<size_t>(m) * D * sizeof(float));
          linear(big, conv_.pointwise_conv2, tmp);
        } else {
          linear(h, conv_.pointwise_conv2, tmp);
        }
        delta_bias = conv_.pointwise_conv2.b();
        break;
      }
    }
    if (pre) {
      if (s + 1 < n) {
        const LayerNormParams next = subs[s + 1].norm->params();
        be.AddResidual(x, tmp, D, delta_bias, alpha, m, D, &next, h);
        in = h;
      } else if (e.has_conv_module()) {
        const LayerNormParams fin = norm_final_.params();
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

}  // namespace u2
