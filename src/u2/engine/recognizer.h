// The offline recognizer: the one API every front end (CLI, gRPC, HTTP) calls.
//
// One inference, start to end (recognizer.cc follows this order):
//   waveform (float, [-1, 1)) -> resample to the model rate -> fbank (frontend/)
//   -> AsrModel::Encode: CMVN, subsampling, Conformer layers, CTC log-probs (model/, backend/)
//   -> CTC greedy search, or a beam search from MakeSearch (decode/ctc_search_interface.h): the
//      prefix beam search (with n-gram LM fusion and hotwords) or, with a TLG graph, the WFST search
//   -> RankHypotheses (engine/nbest_ranking.h, shared with streaming): [attention rescoring]
//      AsrModel::ScoreHypotheses + RankByAttentionRescoring (model/, decode/)
//   -> TopHypotheses: SymbolTable::Detokenize -> text, word times.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "u2/backend/ops.h"
#include "u2/backend/tensor.h"
#include "u2/decode/context_graph.h"
#include "u2/decode/ctc_search.h"
#include "u2/decode/ctc_wfst_search.h"
#include "u2/decode/decoding_graph.h"
#include "u2/decode/word_lm.h"
#include "u2/decode/word_timing.h"
#include "u2/engine/hotwords.h"
#include "u2/util/status.h"

namespace u2 {

class AsrModel;
class OptionRegistry;
struct ModelConfig;
class Fbank;
class SymbolTable;

enum class DecodingMode { kCtcGreedy, kCtcPrefixBeamSearch, kAttentionRescoring };
StatusOr<DecodingMode> ParseDecodingMode(
    std::string_view name);  // "ctc_greedy" | "ctc_prefix_beam_search" | "attention_rescoring"
const char* DecodingModeName(DecodingMode mode);

// How to decode; the model's model.json supplies the defaults, a caller (CLI flag, request
// parameter) may override any field.
struct DecodingOptions {
  DecodingMode mode = DecodingMode::kAttentionRescoring;
  int beam = 10;                      // prefix-beam width (and the n-best size that rescoring sees)
  int nbest = 1;                      // hypotheses returned per utterance (<= beam)
  float ctc_weight = 0.5f;            // attention rescoring: weight of the CTC prefix score
  float reverse_weight = 0.0f;        // attention rescoring: weight of the right-to-left decoder
  int decoding_chunk_size = -1;       // -1: full context; > 0: chunk mask (dynamic-chunk models)
  int num_decoding_left_chunks = -1;  // -1: all left chunks
  // The weights of the recognizer's LM (an n-gram fused into the prefix search, decode/word_lm.h,
  // or the graph of the WFST search), when it has one, and hotword biasing (engine/hotwords.h;
  // null: none). Both act in the beam search, so in ctc_prefix_beam_search and
  // attention_rescoring; ctc_greedy has no search to bias.
  LmFusionWeights lm;
  std::shared_ptr<const ContextGraph> hotwords;

  Status Validate(const ModelConfig& model) const;
  std::string ToString() const;
};

// The n-best search and rescoring settings that offline (DecodingOptions) and streaming
// (StreamOptions) decoding share, checked in one place. `rescoring`: whether attention rescoring
// will run, which needs a decoder, and a right-to-left one for reverse_weight > 0.
Status ValidateSearchSettings(int beam, int nbest, float ctc_weight, float reverse_weight, bool rescoring,
                              const ModelConfig& model);

// Where a model runs: "cpu", or "cuda" / "cuda:N" (GPU N as CUDA numbers them; "gpu" is a
// synonym). The CUDA backend needs a build with CUDA and the GPU at run time.
struct DeviceSpec {
  DeviceType type = DeviceType::kCpu;
  int index = 0;
};
StatusOr<DeviceSpec> ParseDevice(std::string_view name);

struct RecognizerConfig {
  std::string model_dir;
  int num_threads = 1;
  DeviceType device = DeviceType::kCpu;  // where the model runs (features and search stay on the CPU)
  int device_index = 0;                  // which GPU (cuda:N)
  Precision precision =
      Precision::kFp32;  // GEMM operands: fp32, fp16/bf16 on CUDA, int8 on the CPU (u2/backend/ops.h)
  // Decoding defaults; fields left unset here come from the model's model.json.
  std::optional<DecodingMode> mode;
  std::optional<int> beam;
  std::optional<int> nbest;
  std::optional<float> ctc_weight;
  std::optional<float> reverse_weight;
  std::optional<int> decoding_chunk_size;
  std::optional<int> num_decoding_left_chunks;
  // An ARPA n-gram LM fused into the search: empty: the model directory's lm.arpa if it has one;
  // "none": no LM. Its weights default to model.json's decoding.lm_weight / word_bonus.
  std::string lm;
  // A TLG decoding graph folder (tools/build_tlg.py): empty: the model directory's tlg/ if it
  // has one; "none": no graph. A graph named here replaces the model directory's lm.arpa. With a graph, beam
  // searches decode over it (its LM) instead of the prefix beam search; lm_weight and word_bonus scale its
  // weights.
  std::string tlg;
  CtcWfstSearchConfig wfst;
  std::optional<float> lm_weight;
  std::optional<float> word_bonus;
  HotwordsConfig hotwords;

  // The settings a server or tool takes from its flags / config file: threads and the decoding
  // defaults (the model dir, device and precision are the caller's).
  void Register(OptionRegistry* r);
  Status Validate() const;
  std::string ToString() const;
};

struct Hypothesis {
  std::string text;
  std::vector<int> tokens;
  std::vector<int> token_frames;  // encoder frame where each token's CTC spike is (x frame shift = time)
  float score = 0;                // the score the hypotheses are ranked by (mode-dependent)
  float ctc_score = 0;            // CTC prefix log-probability (greedy: best-path log-prob)
  float attention_score = 0;      // (1 - rw) * L2R + rw * R2L decoder log-prob (rescoring only)
  std::vector<WordPiece> words;   // per word: text, start/end in ms from the audio's start, confidence
  // Confidence (docs/long-audio.md, "Confidence"): each token's CTC posterior at its spike frame;
  // a word's is the n-best's posterior of the word (the share of the CTC n-best's probability
  // whose hypotheses have it at that time; engine/nbest_ranking.h), the hypothesis's the mean of
  // its words' (1 when empty).
  std::vector<float> token_confidence;
  float confidence = 1.0f;
};

// The CTC log-probability of `token` at encoder frame `frame` of the utterance (or segment), for
// confidences; empty when not available.
using TokenLogProb = std::function<float(int frame, int token)>;

struct CtcHypothesis;
struct RescoredHypothesis;
// A search result as the API returns it: tokens, CTC peak frames, text, scores (from `rank`) and
// word times. Shared by the offline and the streaming recognizers.
Hypothesis MakeHypothesis(const CtcHypothesis& ctc, const RescoredHypothesis& rank,
                          const SymbolTable& symbols, const WordTimingConfig& timing,
                          const TokenLogProb& logp_at = {});

struct RecognitionResult {
  std::vector<Hypothesis> nbest;  // best first; empty audio gives one empty hypothesis
  double audio_seconds = 0;
  int num_encoder_frames = 0;
  int encoder_frame_shift_ms = 40;
  const Hypothesis& best() const { return nbest.front(); }
};

// A waveform to recognise: float samples in [-1, 1) at any rate (resampled if not the model's).
struct Waveform {
  std::span<const float> samples;
  int sample_rate = 16000;
};

class Recognizer {
 public:
  static StatusOr<std::unique_ptr<Recognizer>> Create(const RecognizerConfig& config);
  ~Recognizer();

  // Recognises a batch in one padded encoder run. Thread-safe: const, so server workers may
  // call it concurrently. A bad waveform (NaN/Inf samples, bad rate, longer than the model's
  // position table) fails the whole call with a message naming its index; the server
  // validates requests before batching them.
  StatusOr<std::vector<RecognitionResult>> Recognize(std::span<const Waveform> batch) const;
  StatusOr<std::vector<RecognitionResult>> Recognize(std::span<const Waveform> batch,
                                                     const DecodingOptions& options) const;

  const DecodingOptions& default_options() const { return defaults_; }
  // options.Validate plus CheckSearchOptions.
  Status ValidateOptions(const DecodingOptions& options) const;
  // What only the recognizer knows about the search settings of a request: LM weights need an
  // LM (an ARPA LM or a TLG graph).
  Status CheckSearchOptions(const LmFusionWeights& lm,
                            const std::shared_ptr<const ContextGraph>& hotwords) const;
  // The LM fused into prefix searches (null: none), the TLG graph (null: none) and the compiler
  // of hotword lists for this model.
  const std::shared_ptr<const WordLm>& lm() const { return lm_; }
  const std::shared_ptr<const DecodingGraph>& graph() const { return graph_; }
  const HotwordCompiler& hotwords() const { return *hotwords_; }
  // The search for `beam` (the n-best size) with `lm` weights and `hotwords`: the WFST search
  // when the model decodes with a TLG graph, else the prefix beam search. The one place offline
  // and streaming decoding build their searches.
  std::unique_ptr<CtcSearch> MakeSearch(int beam, const LmFusionWeights& lm,
                                        const std::shared_ptr<const ContextGraph>& hotwords) const;
  const ModelConfig& model_config() const;
  const SymbolTable& symbols() const { return *symbols_; }
  // What loading could not set up as the model directory asks and fell back from (e.g. a BPE
  // model's bpe.model without the sentencepiece module): for the caller to log.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The parts the streaming recognizer shares (engine/streaming_recognizer.h).
  const std::shared_ptr<const AsrModel>& model() const { return model_; }
  const Fbank& fbank() const { return *fbank_; }
  int sample_rate() const;
  // Longest audio the model's positional table allows, in samples at the model rate.
  int64_t max_samples() const;

 private:
  Recognizer() = default;
  RecognizerConfig config_;
  DecodingOptions defaults_;
  std::shared_ptr<const AsrModel> model_;
  std::unique_ptr<Fbank> fbank_;
  std::unique_ptr<SymbolTable> symbols_;
  std::shared_ptr<const WordLm> lm_;
  std::shared_ptr<const DecodingGraph> graph_;
  std::unique_ptr<HotwordCompiler> hotwords_;
  std::vector<std::string> warnings_;
};

}  // namespace u2
