// The WeNet U2 encoder over a packed batch: global CMVN, the convolutional subsampling front with
// its positional encoding, a stack of layers of the model's class (encoder_layer.h: Conformer,
// Transformer, Branchformer, E-Branchformer), after_norm and the CTC head.
//
// Data layout: the rows of all utterances are stacked (M = Σ T′_b rows of D floats), so every
// position-wise GEMM (QKV, FFN, pointwise convs, CTC) runs once over the whole batch; attention and
// the depthwise convolutions work per utterance through row segments. Nothing is padded, so a
// batched utterance computes exactly what it computes alone.
//
// Streaming (WeNet forward_chunk, docs/wenet-numerics.md §4.1) fits the same layer code: a chunk's rows are
// the queries, its attention segment points at a per-stream K|V cache holding history + the chunk
// (AttentionSegment.kv_row/k_pos), and each causal depthwise conv reads its K−1 frames of history
// from the stream's conv cache (DepthwiseSegment.history) and leaves its last K−1 input frames there.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "u2/model/asr_model.h"
#include "u2/model/encoder_layer.h"
#include "u2/model/squeezeformer_layer.h"
#include "u2/model/weights.h"

namespace u2 {

class Encoder {
 public:
  static StatusOr<std::unique_ptr<Encoder>> Load(const ModelConfig& config, const WeightLoader& loader,
                                                 std::shared_ptr<const Backend> backend);

  Status Forward(std::span<const FeatureView> feats, const EncodeOptions& options, Workspace& ws,
                 EncoderOutput* out) const;

  // One chunk per stream (WeNet forward_chunk, docs/wenet-numerics.md §4.1), all streams in one packed batch.
  // Streams whose chunk gives no encoder frame are left untouched (length 0).
  Status ForwardChunk(std::span<EncoderStream* const> streams, std::span<const FeatureView> chunks,
                      const StreamingOptions& options, Workspace& ws, EncoderOutput* out) const;
  void InitStream(EncoderStream* stream) const;

  // The sinusoid table (max_len × D) shared with the decoders.
  const Tensor& pos_table() const { return pos_table_; }

 private:
  Encoder(const ModelConfig& config, std::shared_ptr<const Backend> backend)
      : config_(config), backend_(std::move(backend)) {}

  // CMVN + conv subsampling of one utterance into `conv_out` (T′ × F′·D).
  void Subsample(const FeatureView& f, Workspace& ws, float* conv_out) const;
  // CMVN + subsampling + embedding linear (×√D, +PE) of a packed batch into x (M × D);
  // positions[b] is the first encoder position of entry b (0 offline, the stream offset streaming).
  void Embed(std::span<const FeatureView> feats, const std::vector<int>& lengths,
             const std::vector<int>& offsets, const std::vector<int>& positions, int m, Workspace& ws,
             float* x) const;
  // The layers over x from `grid` on (the frames change at time strides); after_layer(i, grid)
  // sees layer i's output frames. Returns the output's frames.
  TimeGrid RunLayers(float* x, TimeGrid grid, LayerContext& ctx, Workspace& ws,
                     const std::function<void(int, const TimeGrid&)>& after_layer) const;
  // Efficient Conformer's grouped attention over one sequence (`p` as for the plain attention):
  // q (q_len rows), k and v (kv_len rows) and the projected positions `pos` (kv_len rows, or null),
  // D wide, are regrouped `group` rows to one (zero rows pad the last group), attended with H heads
  // of group·d_k, and the first q_len rows of the ungrouped result written to `out` (D wide).
  void GroupedAttention(AttentionParams p, int group, const float* q, int ldq, int q_len, const float* k,
                        const float* v, int ldkv, int kv_len, const float* pos, float* out,
                        Workspace& ws) const;
  // Makes room in the stream's K|V cache of `layer` for `frames` rows (keeping the history) and
  // records them as the layer's rows after this chunk.
  void GrowAttentionCache(EncoderStream* st, int layer, int frames) const;
  // after_norm + CTC head over the packed output rows; fills encoder_out and ctc_log_probs.
  void Finish(const float* x, int m, Workspace& ws, EncoderOutput* out) const;
  AttentionParams AttentionTemplate(const AttentionWeights& w) const;

  ModelConfig config_;
  std::shared_ptr<const Backend> backend_;
  Tensor cmvn_mean_, cmvn_istd_;
  // Subsampling convs, weights reordered to (out, kh, kw, in) for channels-last im2col.
  std::vector<Conv2dParams> convs_;
  std::vector<Tensor> conv_weights_, conv_biases_;
  std::vector<std::shared_ptr<const PreparedWeight>> conv_prepared_;  // conv_weights_ as GEMM weights
  LinearWeights embed_out_;  // input columns reordered from c·F′+f to f·D+c
  Tensor pos_table_;
  std::vector<std::unique_ptr<EncoderLayer>> layers_;
  // Squeezeformer: preln after the front, the time reduction between blocks, final_proj.
  NormWeights preln_;
  std::unique_ptr<SqueezeformerTimeReduction> time_reduction_;
  LinearWeights final_proj_;
  NormWeights after_norm_;
  LinearWeights ctc_;
};

}  // namespace u2
