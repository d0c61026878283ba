#include "u2/model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unordered_map>

namespace u2 {
namespace {

enum Slot : int {
  kSlotMemKV = 16,  // memory K|V of every layer (M_enc × L·2D)
  kSlotX,           // (R × D) decoder state
  kSlotH,
  kSlotBig,  // self QKV (R × 3D) / FFN hidden (R × Fd)
  kSlotAtt,
  kSlotTmp,
  kSlotLogits,  // (R × V)
  kSlotPathKV,  // self-attention K|V along each sequence's path (Σ len × 2D)
};

}  // namespace

DecoderRowPlan PlanDecoderRows(std::span<const DecoderSequence> seqs) {
  DecoderRowPlan plan;
  // Trie of prefixes: (parent row, token) -> row; a sequence's first position hangs off a root
  // per utterance (parent -1 - utterance), so different utterances never share.
  std::unordered_map<uint64_t, int> child;
  auto key = [](int parent, int token) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) | static_cast<uint32_t>(token);
  };
  plan.path_start.push_back(0);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const DecoderSequence& s = seqs[i];
    int parent = -1 - s.utterance;
    RowSegment run{0, 0, 0};
    for (size_t t = 0; t < s.inputs.size(); ++t) {
      const auto [it, inserted] = child.try_emplace(key(parent, s.inputs[t]), plan.num_rows());
      if (inserted) {
        if (run.len == 0) run = {plan.num_rows(), 0, static_cast<int>(t)};
        plan.tokens.push_back(s.inputs[t]);
        ++run.len;
      }
      parent = it->second;
      plan.path_rows.push_back(parent);
    }
    if (run.len > 0) {
      plan.runs.push_back(run);
      plan.run_sequence.push_back(static_cast<int>(i));
    }
    plan.path_start.push_back(static_cast<int>(plan.path_rows.size()));
  }
  return plan;
}

StatusOr<std::unique_ptr<TransformerDecoder>> TransformerDecoder::Load(
    const ModelConfig& config, const WeightLoader& loader, const std::string& prefix, int num_blocks,
    Tensor pos_table, std::shared_ptr<const Backend> backend) {
  std::unique_ptr<TransformerDecoder> dec(new TransformerDecoder(config, backend));
  const DecoderConfig& d = config.decoder;
  const int D = config.encoder.output_size;
  const int V = config.vocab_size;
  const int Fd = d.linear_units;
  dec->pos_table_ = std::move(pos_table);
  U2_ASSIGN_OR_RETURN(dec->embed_, loader.Device(prefix + "embed.0.weight", {V, D}));
  std::vector<std::string> kv_names;
  for (int j = 0; j < num_blocks; ++j) {
    const std::string p = prefix + "decoders." + std::to_string(j) + ".";
    DecoderLayerWeights w;
    U2_ASSIGN_OR_RETURN(w.norm1, loader.Norm(p + "norm1", D, d.norm_eps));
    U2_ASSIGN_OR_RETURN(w.norm2, loader.Norm(p + "norm2", D, d.norm_eps));
    U2_ASSIGN_OR_RETURN(w.norm3, loader.Norm(p + "norm3", D, d.norm_eps));
    U2_ASSIGN_OR_RETURN(w.self_qkv, loader.StackedLinear({p + "self_attn.linear_q", p + "self_attn.linear_k",
                                                          p + "self_attn.linear_v"},
                                                         D, D));
    U2_ASSIGN_OR_RETURN(w.self_out, loader.Linear(p + "self_attn.linear_out", D, D));
    U2_ASSIGN_OR_RETURN(w.src_q, loader.Linear(p + "src_attn.linear_q", D, D));
    U2_ASSIGN_OR_RETURN(w.src_out, loader.Linear(p + "src_attn.linear_out", D, D));
    U2_ASSIGN_OR_RETURN(w.ff_w1, loader.Linear(p + "feed_forward.w_1", D, Fd));
    U2_ASSIGN_OR_RETURN(w.ff_w2, loader.Linear(p + "feed_forward.w_2", Fd, D));
    kv_names.push_back(p + "src_attn.linear_k");
    kv_names.push_back(p + "src_attn.linear_v");
    dec->layers_.push_back(std::move(w));
  }
  if (num_blocks > 0) {
    U2_ASSIGN_OR_RETURN(dec->src_kv_all_, loader.StackedLinear(kv_names, D, D));
  }
  if (d.normalize_before) {
    U2_ASSIGN_OR_RETURN(dec->after_norm_, loader.Norm(prefix + "after_norm", D, d.norm_eps));
  }
  U2_ASSIGN_OR_RETURN(dec->output_, loader.Linear(prefix + "output_layer", D, V));
  return dec;
}

Status TransformerDecoder::Score(const EncoderOutput& enc, std::span<const DecoderSequence> seqs,
                                 Workspace& ws, std::vector<float>* scores) const {
  const Backend& be = *backend_;
  const DecoderConfig& d = config_.decoder;
  const int D = config_.encoder.output_size;
  const int V = config_.vocab_size;
  const int Fd = d.linear_units;
  const int L = static_cast<int>(layers_.size());
  const int m_enc = enc.encoder_out.empty() ? 0 : static_cast<int>(enc.encoder_out.dim(0));

  // R rows = each distinct prefix once; P = the positions of all sequences (P >= R).
  const DecoderRowPlan plan = PlanDecoderRows(seqs);
  const int R = plan.num_rows();
  const int P = static_cast<int>(plan.path_rows.size());
  std::vector<int> targets;
  targets.reserve(P);
  for (const DecoderSequence& s : seqs) targets.insert(targets.end(), s.targets.begin(), s.targets.end());
  scores->assign(seqs.size(), 0.0f);
  if (R == 0) return Status::Ok();

  // Memory keys/values for all layers at once.
  const int kv_ld = 2 * D * L;
  float* mem_kv = nullptr;
  if (L > 0 && m_enc > 0) {
    mem_kv = ws.Floats(kSlotMemKV, static_cast<size_t>(m_enc) * kv_ld);
    src_kv_all_.Forward(be, enc.encoder_out.f32(), m_enc, D, mem_kv, kv_ld);
  }

  float* x = ws.Floats(kSlotX, static_cast<size_t>(R) * D);
  float* h = ws.Floats(kSlotH, static_cast<size_t>(R) * D);
  float* big = ws.Floats(kSlotBig, static_cast<size_t>(R) * std::max(3 * D, Fd));
  float* att = ws.Floats(kSlotAtt, static_cast<size_t>(R) * D);
  float* tmp = ws.Floats(kSlotTmp, static_cast<size_t>(R) * D);
  float* path_kv = L > 0 ? ws.Floats(kSlotPathKV, static_cast<size_t>(P) * 2 * D) : nullptr;
  be.EmbedTokens(embed_.f32(), D, plan.tokens, plan.runs, static_cast<float>(std::sqrt(double(D))),
                 pos_table_.f32(), x);

  // A run's queries sit at positions pos.. of its sequence and see that sequence's path up to
  // themselves (causal); cross-attention sees the utterance's encoder frames.
  std::vector<AttentionSegment> self_segs, src_segs;
  for (size_t k = 0; k < plan.runs.size(); ++k) {
    const RowSegment& run = plan.runs[k];
    const int i = plan.run_sequence[k];
    AttentionSegment s;
    s.q_row = run.row;
    s.q_len = run.len;
    s.q_pos = run.pos;
    s.kv_row = plan.path_start[i];
    s.kv_len = plan.path_start[i + 1] - plan.path_start[i];
    self_segs.push_back(s);
    AttentionSegment c;
    c.q_row = run.row;
    c.q_len = run.len;
    c.kv_row = enc.offsets[seqs[i].utterance];
    c.kv_len = enc.lengths[seqs[i].utterance];
    src_segs.push_back(c);
  }
  auto linear = [&](const float* in, const LinearWeights& l, float* y, Activation act) {
    l.Forward(be, in, R, l.in, y, l.out, act);
  };
  const int H = d.attention_heads;
  const bool pre = d.normalize_before;
  const float* in = x;
  if (pre && L > 0) {
    be.LayerNorm(x, R, D, D, layers_[0].norm1.params(), h, D);
    in = h;
  }
  for (int j = 0; j < L; ++j) {
    const DecoderLayerWeights& w = layers_[j];
    // Residual add, then the next LayerNorm (pre-LN) or this sublayer's own (post-LN).
    auto residual = [&](const float* bias, const NormWeights& own, const NormWeights* next) {
      if (pre) {
        const LayerNormParams np = next ? next->params() : LayerNormParams{};
        be.AddResidual(x, tmp, D, bias, 1.0f, R, D, next ? &np : nullptr, h);
        in = h;
      } else {
        const LayerNormParams op = own.params();
        be.AddResidual(x, tmp, D, bias, 1.0f, R, D, &op, x);
        in = x;
      }
    };
    // Self-attention (causal) over each sequence's path, its K|V rows gathered from the prefix rows.
    linear(in, w.self_qkv, big, Activation::kNone);
    be.GatherRows(path_kv, 2 * D, big + D, 3 * D, plan.path_rows, 2 * D);
    AttentionParams p;
    p.num_heads = H;
    p.head_dim = D / H;
    p.q = big;
    p.ldq = 3 * D;
    p.k = path_kv;
    p.v = path_kv + D;
    p.ldk = p.ldv = 2 * D;
    p.out = att;
    p.ldo = D;
    p.mask = AttentionMask::kCausal;
    be.Attention(p, self_segs, ws);
    w.self_out.Apply(be, att, R, D, tmp, D);
    residual(w.self_out.b(), w.norm1, &w.norm2);
    // Cross-attention over the utterance's encoder frames.
    linear(in, w.src_q, big, Activation::kNone);
    AttentionParams c;
    c.num_heads = H;
    c.head_dim = D / H;
    c.q = big;
    c.ldq = D;
    c.k = mem_kv ? mem_kv + 2 * D * j : nullptr;
    c.v = mem_kv ? mem_kv + 2 * D * j + D : nullptr;
    c.ldk = c.ldv = kv_ld;
    c.out = att;
    c.ldo = D;
    c.mask = AttentionMask::kNone;
    be.Attention(c, src_segs, ws);
    w.src_out.Apply(be, att, R, D, tmp, D);
    residual(w.src_out.b(), w.norm2, &w.norm3);
    // Feed-forward.
    linear(in, w.ff_w1, big, d.activation);
    w.ff_w2.Apply(be, big, R, Fd, tmp, D);
    residual(w.ff_w2.b(), w.norm3, j + 1 < L ? &layers_[j + 1].norm1 : (pre ? &after_norm_ : nullptr));
  }
  if (pre && L == 0) {
    be.LayerNorm(x, R, D, D, after_norm_.params(), h, D);
    in = h;
  }
  float* logits = ws.Floats(kSlotLogits, static_cast<size_t>(R) * V);
  linear(in, output_, logits, Activation::kNone);
  std::vector<float> logp(P);
  be.TokenLogProbs(logits, R, V, V, plan.path_rows, targets, logp.data());
  for (size_t i = 0; i < seqs.size(); ++i) {
    double s = 0.0;
    for (int t = plan.path_start[i]; t < plan.path_start[i + 1]; ++t) s += logp[t];
    (*scores)[i] = static_cast<float>(s);
  }
  return Status::Ok();
}

}  // namespace u2
