// WeNet's TransformerDecoder (one direction of a BiTransformerDecoder) used for attention
// rescoring: scores many hypotheses of many utterances in one packed batch.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/model/asr_model.h"
#include "u2/model/weights.h"

namespace u2 {

struct DecoderLayerWeights {
  NormWeights norm1, norm2, norm3;
  LinearWeights self_qkv, self_out;
  LinearWeights src_q, src_out;
  LinearWeights ff_w1, ff_w2;
};

// One hypothesis to score: its input tokens [sos, y...] and targets [y..., eos] (same length).
struct DecoderSequence {
  int utterance = 0;
  std::vector<int> inputs;
  std::vector<int> targets;
};

// The decoder rows of a batch of sequences, each distinct prefix once. The decoder is causal: the
// state at position t depends only on inputs[0..t] (and the utterance's encoder output), so
// n-best hypotheses of one utterance that begin alike share those rows, and the row-wise work
// (projections, feed-forward, output layer) runs over the distinct prefixes only. Rows are
// numbered so that the rows a sequence adds (the part after its longest prefix shared with an
// earlier sequence) are one contiguous run.
struct DecoderRowPlan {
  std::vector<int> tokens;        // per row: its input token
  std::vector<RowSegment> runs;   // the new rows of each sequence that adds any: {first row, count, position}
  std::vector<int> run_sequence;  // per run: its sequence
  std::vector<int> path_rows;     // every sequence's positions in order, concatenated: the row of each
  std::vector<int> path_start;    // sequence i's positions are path_rows[path_start[i] .. path_start[i+1])
  int num_rows() const { return static_cast<int>(tokens.size()); }
};
DecoderRowPlan PlanDecoderRows(std::span<const DecoderSequence> seqs);

class TransformerDecoder {
 public:
  // prefix: "decoder." (transformer), "decoder.left_decoder." or "decoder.right_decoder.".
  static StatusOr<std::unique_ptr<TransformerDecoder>> Load(const ModelConfig& config,
                                                            const WeightLoader& loader,
                                                            const std::string& prefix, int num_blocks,
                                                            Tensor pos_table,
                                                            std::shared_ptr<const Backend> backend);

  // Σ_t log p(targets[t] | inputs[≤t], memory) per sequence.
  Status Score(const EncoderOutput& enc, std::span<const DecoderSequence> seqs, Workspace& ws,
               std::vector<float>* scores) const;

 private:
  TransformerDecoder(const ModelConfig& config, std::shared_ptr<const Backend> backend)
      : config_(config), backend_(std::move(backend)) {}

  ModelConfig config_;
  std::shared_ptr<const Backend> backend_;
  Tensor embed_;      // (V, D)
  Tensor pos_table_;  // (max_len, D)
  std::vector<DecoderLayerWeights> layers_;
  LinearWeights src_kv_all_;  // every layer's src_attn Wk|Wv stacked: memory K/V in one GEMM
  NormWeights after_norm_;
  LinearWeights output_;
};

}  // namespace u2
