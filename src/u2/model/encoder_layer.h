// One layer of a U2 encoder stack, as the encoder (encoder.h) drives it. Every layer class works
// in place on the packed rows of a batch (M = Σ T′_b rows of D floats) and reaches the rest of the
// batch only through a LayerContext: attention over each utterance's (or stream's) own keys, and
// depthwise convolutions over time within each utterance, with a streaming history when causal.
// That keeps the layer code the same offline and streaming, and the same for every encoder class:
//
//   ConformerLayer     conformer_layer.h    Conformer and Transformer (WeNet wenet/transformer)
//   BranchformerLayer  branchformer_layer.h Branchformer (wenet/branchformer)
//   EBranchformerLayer branchformer_layer.h E-Branchformer (wenet/e_branchformer)
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/model/model_config.h"
#include "u2/model/weights.h"

namespace u2 {

// Workspace slots of the encoder and its layers (slots below Workspace::kBackendSlotBase).
enum EncoderSlot : int {
  kSlotFeat = 0,  // one utterance's features (T × I)
  kSlotConvA,     // subsampling intermediates
  kSlotConvB,
  kSlotConvOut,   // packed subsampling output (M × F′·D)
  kSlotX,         // the layer state (M × D)
  kSlotH,         // normalised sublayer input (M × D)
  kSlotBig,       // QKV (M × 3D) / FFN hidden (M × Fe) / pointwise_conv1 (M × 2D) / cgMLP hidden
  kSlotAtt,       // attention output / GLU output (M × D)
  kSlotTmp,       // sublayer output before the residual add (M × D)
  kSlotPos,       // projected positions (Tmax × D)
  kSlotLogits,    // CTC logits (M × V)
  kSlotConvHist,  // streaming: a new conv history being assembled
  kSlotBranch,    // Branchformer: the two branch outputs side by side (M × 2D)
  kSlotGate,      // cgMLP: the gate half after norm / conv (M × U/2)
  kSlotMerge,     // Branchformer: merge input (M × 2D)
  kSlotGroupQ,    // grouped attention: queries, keys, values, positions, output of one sequence
  kSlotGroupK,
  kSlotGroupV,
  kSlotGroupP,
  kSlotGroupOut,
  kSlotSaved,  // Squeezeformer: activations saved at time reductions (one slot per depth from here)
};

// A multi-head self-attention's weights: Wq|Wk|Wv stacked for one GEMM, the output linear, and
// for rel_selfattn the position projection and the two bias vectors.
struct AttentionWeights {
  LinearWeights qkv;
  LinearWeights out;
  LinearWeights linear_pos;
  Tensor pos_bias_u, pos_bias_v;  // (H, group·d_k)
  // Efficient Conformer's grouped attention: `group` consecutive frames attend as one, with H
  // heads of group·d_k (1: ordinary attention).
  int group = 1;
  bool rel_shift = false;  // Squeezeformer's do_rel_shift (AttentionParams::rel_shift)
  // `prefix` is the module's checkpoint name, e.g. "encoder.encoders.0.self_attn"; `affine`
  // (optional) an adaptive scale before it, folded into Wq|Wk|Wv.
  static StatusOr<AttentionWeights> Load(const EncoderConfig& e, const WeightLoader& loader,
                                         const std::string& prefix, int group = 1,
                                         const InputAffine* affine = nullptr);
};

// A position-wise feed-forward: w_2(act(w_1(x))).
struct FeedForwardWeights {
  LinearWeights w1, w2;
  static StatusOr<FeedForwardWeights> Load(const WeightLoader& loader, const std::string& prefix, int dim,
                                           int hidden);
};

// The frames a layer works on: each batch entry's rows at a common time stride over the
// embedding's frames (stride 1 until a layer or a time reduction subsamples; Squeezeformer and
// Efficient Conformer change it inside the stack). Rows are packed entry after entry.
struct TimeGrid {
  int stride = 1;
  std::vector<int> lengths;  // per batch entry (0: the entry has no frame here)
  std::vector<int> offsets;  // first packed row of each entry
  int rows = 0;
  int max_length = 0;

  static TimeGrid FromLengths(std::vector<int> lengths, int stride = 1);
  // Every `factor`-th frame of each entry (ceil(length / factor) rows), repacked.
  TimeGrid Subsampled(int factor) const;
  // The non-empty entries as row segments (RowSegment.pos: the entry's index).
  std::vector<RowSegment> Segments() const;
};

// What a layer asks of the encoder around it.
struct LayerContext {
  // The frames the layer's input rows are (a layer with a time stride outputs grid->Subsampled).
  const TimeGrid* grid = nullptr;
  // Self-attention of `layer` (weights w): qkv is m × 3D (Q|K|V, bias added); writes the m × D
  // attention output (before the output linear) to `out`.
  std::function<void(int layer, const AttentionWeights& w, const float* qkv, float* out, Workspace& ws)>
      attention;
  // Depthwise conv number `conv` of `layer` (numbered as EncoderLayer::ConvHistories lists them)
  // over x (m × p.channels, contiguous) into y, utterance by utterance. A causal conv
  // (p.left_pad == p.kernel − 1) that has a history reads its left context from the stream and
  // then keeps the last K−1 rows of its input for the next chunk.
  std::function<void(int layer, int conv, const DepthwiseConvParams& p, const float* x, float* y)> depthwise;
};

class EncoderLayer {
 public:
  virtual ~EncoderLayer() = default;
  // The layer over the packed batch, in place on x (m × D). A layer with a time stride s writes its
  // ctx.grid->Subsampled(s).rows output rows to the front of x.
  virtual void Forward(int index, float* x, int m, const LayerContext& ctx, Workspace& ws) const = 0;
  // How much the layer subsamples time (Efficient Conformer's stride layers); 1 for most.
  virtual int time_stride() const { return 1; }
  // The causal depthwise convs whose left context a stream carries from chunk to chunk, in the
  // order the layer numbers them: each tensor is the (K−1) × channels history a new stream starts
  // with (what the padding before the first frame is worth). Empty when nothing is causal.
  virtual const std::vector<Tensor>& ConvHistories() const = 0;
};

// The encoder's layers in order, loaded from "encoder.encoders.<i>." for the model's encoder class.
StatusOr<std::vector<std::unique_ptr<EncoderLayer>>> LoadEncoderLayers(
    const ModelConfig& config, const WeightLoader& loader, std::shared_ptr<const Backend> backend);

}  // namespace u2
