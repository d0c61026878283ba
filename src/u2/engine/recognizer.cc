#include "u2/engine/recognizer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "u2/audio/audio.h"
#include "u2/decode/bpe_tokenizer.h"
#include "u2/decode/ctc_search.h"
#include "u2/decode/ngram_lm.h"
#include "u2/decode/rescoring.h"
#include "u2/decode/symbol_table.h"
#include "u2/engine/nbest_ranking.h"
#include "u2/frontend/fbank.h"
#include "u2/model/asr_model.h"
#include "u2/util/option_registry.h"
#include "u2/util/safetensors.h"

namespace u2 {

StatusOr<DecodingMode> ParseDecodingMode(std::string_view name) {
  if (name == "ctc_greedy" || name == "ctc_greedy_search") return DecodingMode::kCtcGreedy;
  if (name == "ctc_prefix_beam_search") return DecodingMode::kCtcPrefixBeamSearch;
  if (name == "attention_rescoring") return DecodingMode::kAttentionRescoring;
  return InvalidArgument("unknown decoding mode '" + std::string(name) +
                         "' (expected ctc_greedy, ctc_prefix_beam_search or attention_rescoring)");
}

Hypothesis MakeHypothesis(const CtcHypothesis& ctc, const RescoredHypothesis& rank,
                          const SymbolTable& symbols, const WordTimingConfig& timing,
                          const TokenLogProb& logp_at) {
  Hypothesis out;
  out.tokens = ctc.tokens;
  out.token_frames = ctc.times;
  out.text = symbols.Detokenize(ctc.tokens);
  out.score = rank.final_score;
  out.ctc_score = ctc.score;
  out.attention_score = rank.attention_score;
  if (logp_at && out.token_frames.size() == out.tokens.size()) {
    for (size_t j = 0; j < out.tokens.size(); ++j) {
      out.token_confidence.push_back(std::exp(logp_at(out.token_frames[j], out.tokens[j])));
    }
  }
  out.words = AlignWords(out.tokens, out.token_frames, symbols, timing, out.token_confidence);
  if (!out.words.empty()) {
    float sum = 0.0f;
    for (const WordPiece& w : out.words) sum += w.confidence;
    out.confidence = sum / static_cast<float>(out.words.size());
  }
  return out;
}

StatusOr<DeviceSpec> ParseDevice(std::string_view name) {
  const auto bad = [&] {
    return InvalidArgument("unknown device '" + std::string(name) + "' (expected cpu, cuda or cuda:N)");
  };
  if (name == "cpu") return DeviceSpec{DeviceType::kCpu, 0};
  const std::string_view type = name.substr(0, name.find(':'));
  if (type != "cuda" && type != "gpu") return bad();
  if (type.size() == name.size()) return DeviceSpec{DeviceType::kCuda, 0};
  const std::string_view digits = name.substr(type.size() + 1);
  if (digits.empty() || digits.size() > 3) return bad();
  int index = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return bad();
    index = index * 10 + (c - '0');
  }
  if (index > 255) return bad();
  return DeviceSpec{DeviceType::kCuda, index};
}

const char* DecodingModeName(DecodingMode mode) {
  switch (mode) {
    case DecodingMode::kCtcGreedy:
      return "ctc_greedy";
    case DecodingMode::kCtcPrefixBeamSearch:
      return "ctc_prefix_beam_search";
    case DecodingMode::kAttentionRescoring:
      return "attention_rescoring";
  }
  return "?";
}

Status ValidateSearchSettings(int beam, int nbest, float ctc_weight, float reverse_weight, bool rescoring,
                              const ModelConfig& model) {
  if (beam < 1 || beam > 1000)
    return InvalidArgument("beam must be in [1, 1000], got " + std::to_string(beam));
  if (nbest < 1 || nbest > beam) {
    return InvalidArgument("nbest must be in [1, beam=" + std::to_string(beam) + "], got " +
                           std::to_string(nbest));
  }
  if (!std::isfinite(ctc_weight) || ctc_weight < 0) {
    return InvalidArgument("ctc_weight must be finite and >= 0, got " + std::to_string(ctc_weight));
  }
  if (!std::isfinite(reverse_weight) || reverse_weight < 0 || reverse_weight > 1) {
    return InvalidArgument("reverse_weight must be in [0, 1], got " + std::to_string(reverse_weight));
  }
  if (rescoring && !model.HasDecoder()) {
    return InvalidArgument("attention rescoring needs an attention decoder; this model has none");
  }
  if (rescoring && reverse_weight > 0 && !model.HasRightDecoder()) {
    return InvalidArgument("reverse_weight > 0 needs a bitransformer decoder; this model has none");
  }
  return Status::Ok();
}

Status DecodingOptions::Validate(const ModelConfig& model) const {
  U2_RETURN_IF_ERROR(ValidateSearchSettings(beam, nbest, ctc_weight, reverse_weight,
                                            mode == DecodingMode::kAttentionRescoring, model));
  if (decoding_chunk_size == 0 || decoding_chunk_size < -1) {
    return InvalidArgument("decoding_chunk_size must be -1 (full context) or > 0, got " +
                           std::to_string(decoding_chunk_size));
  }
  if (num_decoding_left_chunks < -1) {
    return InvalidArgument("num_decoding_left_chunks must be >= -1, got " +
                           std::to_string(num_decoding_left_chunks));
  }
  return lm.Validate();
}

std::string DecodingOptions::ToString() const {
  std::ostringstream os;
  os << "DecodingOptions(mode=" << DecodingModeName(mode) << ", beam=" << beam << ", nbest=" << nbest
     << ", ctc_weight=" << ctc_weight << ", reverse_weight=" << reverse_weight
     << ", decoding_chunk_size=" << decoding_chunk_size
     << ", num_decoding_left_chunks=" << num_decoding_left_chunks << ", lm_weight=" << lm.lm_weight
     << ", word_bonus=" << lm.word_bonus;
  // The graph's address names the list: equal lists share one cached graph, so requests with the
  // same hotwords batch together and others do not.
  if (hotwords)
    os << ", hotwords=" << hotwords->num_phrases() << "@" << static_cast<const void*>(hotwords.get());
  os << ")";
  return os.str();
}

void RecognizerConfig::Register(OptionRegistry* r) {
  r->Add("threads", &num_threads, "threads per inference (BLAS / backend)");
  r->Add("beam", &beam, "default beam (unset: the model's)");
  r->Add("ctc-weight", &ctc_weight, "default CTC weight in rescoring (unset: the model's)");
  r->Add("reverse-weight", &reverse_weight, "default right-to-left weight (unset: the model's)");
  r->Add("lm", &lm,
         "ARPA n-gram LM fused into the search ('': the model dir's lm.arpa if any; 'none': no LM)");
  r->Add("lm-weight", &lm_weight, "LM weight alpha: alpha * ln P(word) per word (unset: the model's)");
  r->Add("word-bonus", &word_bonus, "bonus beta per word with an LM (unset: the model's)");
  r->Add("tlg", &tlg,
         "TLG decoding graph folder (tools/build_tlg.py; '': the model dir's tlg/ if any; 'none': no graph)");
  wfst.Register(r);
  hotwords.Register(r);
}

Status RecognizerConfig::Validate() const {
  if (model_dir.empty()) return InvalidArgument("model_dir is empty");
  if (num_threads < 1 || num_threads > 256) {
    return InvalidArgument("num_threads must be in [1, 256], got " + std::to_string(num_threads));
  }
  U2_RETURN_IF_ERROR(wfst.Validate());
  return hotwords.Validate();
}

std::string RecognizerConfig::ToString() const {
  std::ostringstream os;
  os << "RecognizerConfig(model_dir=" << model_dir << ", num_threads=" << num_threads
     << ", device=" << DeviceTypeName(device) << ", precision=" << PrecisionName(precision)
     << ", lm=" << (lm.empty() ? "(model's)" : lm) << ", tlg=" << (tlg.empty() ? "(model's)" : tlg) << ", "
     << wfst.ToString() << ", " << hotwords.ToString() << ")";
  return os.str();
}

Recognizer::~Recognizer() = default;

StatusOr<std::unique_ptr<Recognizer>> Recognizer::Create(const RecognizerConfig& config) {
  U2_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<Recognizer> r(new Recognizer());
  r->config_ = config;

  ModelLoadOptions load_options;
  load_options.num_threads = config.num_threads;
  load_options.device = config.device;
  load_options.device_index = config.device_index;
  load_options.precision = config.precision;
  U2_ASSIGN_OR_RETURN(r->model_, AsrModel::Load(config.model_dir, load_options));
  const ModelConfig& mc = r->model_->config();

  U2_ASSIGN_OR_RETURN(SymbolTable symbols, SymbolTable::Load(config.model_dir + "/units.txt"));
  if (symbols.size() != mc.vocab_size) {
    return InvalidArgument(config.model_dir + "/units.txt has " + std::to_string(symbols.size()) +
                           " tokens, model.json says vocab_size " + std::to_string(mc.vocab_size));
  }
  U2_RETURN_IF_ERROR(symbols.SetSosEosId(mc.eos_id));
  // A BPE model (the converter keeps WeNet's sentencepiece model as bpe.model): hotwords and LM
  // words are spelled as WeNet spells text. Without it (no sentencepiece module, a damaged file)
  // the model still recognizes; only that spelling falls back to the greedy one, with a warning.
  if (const std::string bpe_model = config.model_dir + "/bpe.model"; std::filesystem::exists(bpe_model)) {
    BpeTokenizerOptions bpe_options;
    if (const std::string syms = config.model_dir + "/non_lang_syms.txt"; std::filesystem::exists(syms))
      bpe_options.non_lang_syms = syms;
    auto bpe = BpeTokenizer::Load(bpe_model, bpe_options);
    if (bpe.ok()) {
      symbols.SetBpeTokenizer(std::move(*bpe));
    } else {
      r->warnings_.push_back(
          bpe.status().message() +
          "; hotwords and LM words are spelled greedily with units.txt instead of WeNet's BPE "
          "pieces");
    }
  }
  r->symbols_ = std::make_unique<SymbolTable>(std::move(symbols));
  // An error in spelling the LM's words or the hotwords file below may come from that fallback:
  // it says so, since a failed load leaves no recognizer to ask for its warnings.
  auto with_warnings = [&r](const Status& s) {
    std::string message = s.message();
    for (const std::string& w : r->warnings_) message += " (" + w + ")";
    return Status(s.code(), std::move(message));
  };

  FbankConfig fbank_config;
  fbank_config.sample_rate = mc.frontend.sample_rate;
  fbank_config.num_mel_bins = mc.frontend.num_mel_bins;
  fbank_config.frame_length_ms = mc.frontend.frame_length_ms;
  fbank_config.frame_shift_ms = mc.frontend.frame_shift_ms;
  // Converted models carry torchaudio's own analysis window (docs/model-format.md): using it
  // makes our fbank bit-compatible with the features the model was trained on.
  U2_ASSIGN_OR_RETURN(auto weights, SafeTensorsFile::Open(config.model_dir + "/model.safetensors"));
  if (weights->Contains("frontend.window")) {
    U2_ASSIGN_OR_RETURN(std::vector<float> window, weights->ReadFloat32("frontend.window"));
    if (static_cast<int>(window.size()) != fbank_config.FrameLengthSamples()) {
      return InvalidArgument(config.model_dir + "/model.safetensors: frontend.window has " +
                             std::to_string(window.size()) + " samples, the frame length is " +
                             std::to_string(fbank_config.FrameLengthSamples()));
    }
    U2_ASSIGN_OR_RETURN(r->fbank_, Fbank::Create(fbank_config, window));
  } else {
    U2_ASSIGN_OR_RETURN(r->fbank_, Fbank::Create(fbank_config));
  }

  // Decoding defaults: model.json first, then whatever the caller set.
  DecodingOptions& d = r->defaults_;
  d.beam = mc.decoding.beam_size;
  d.ctc_weight = mc.decoding.ctc_weight;
  d.reverse_weight = mc.HasRightDecoder() ? mc.decoding.reverse_weight : 0.0f;
  if (config.mode) d.mode = *config.mode;
  if (config.beam) d.beam = *config.beam;
  if (config.nbest) d.nbest = *config.nbest;
  if (config.ctc_weight) d.ctc_weight = *config.ctc_weight;
  if (config.reverse_weight) d.reverse_weight = *config.reverse_weight;
  if (config.decoding_chunk_size) d.decoding_chunk_size = *config.decoding_chunk_size;
  if (config.num_decoding_left_chunks) d.num_decoding_left_chunks = *config.num_decoding_left_chunks;

  // The LM: the one named, else the model's own (lm.arpa beside the weights), if any, unless a
  // TLG graph is named (it brings its own LM).
  const bool tlg_named = !config.tlg.empty() && config.tlg != "none";
  std::string lm_path = config.lm;
  if (lm_path.empty() && !tlg_named && std::filesystem::exists(config.model_dir + "/lm.arpa"))
    lm_path = config.model_dir + "/lm.arpa";
  if (!lm_path.empty() && lm_path != "none") {
    U2_ASSIGN_OR_RETURN(std::shared_ptr<const NgramLm> ngram, NgramLm::LoadArpa(lm_path));
    auto lm = WordLm::Create(std::move(ngram), *r->symbols_);
    if (!lm.ok()) return with_warnings(lm.status());
    r->lm_ = std::move(*lm);
    d.lm.lm_weight = mc.decoding.lm_weight;
    d.lm.word_bonus = mc.decoding.word_bonus;
  }
  // The TLG graph: the one named, else the model's own (tlg/ beside the weights), if any.
  std::string tlg_path = config.tlg;
  if (tlg_path.empty() && std::filesystem::exists(config.model_dir + "/tlg/TLG.fst"))
    tlg_path = config.model_dir + "/tlg";
  if (!tlg_path.empty() && tlg_path != "none") {
    if (r->lm_) {
      return InvalidArgument("both an n-gram LM (" + lm_path + ") and a TLG graph (" + tlg_path +
                             ") are given; the graph holds its LM: use one (--lm none or --tlg none)");
    }
    U2_ASSIGN_OR_RETURN(r->graph_, DecodingGraph::Load(tlg_path, *r->symbols_));
    d.lm.lm_weight = mc.decoding.lm_weight;
    d.lm.word_bonus = mc.decoding.word_bonus;
  }
  if (config.lm_weight) d.lm.lm_weight = *config.lm_weight;
  if (config.word_bonus) d.lm.word_bonus = *config.word_bonus;
  r->hotwords_ = std::make_unique<HotwordCompiler>(*r->symbols_, config.hotwords);
  if (!config.hotwords.file.empty()) {
    std::ifstream in(config.hotwords.file, std::ios::binary);
    if (!in) return NotFound("cannot open hotwords file '" + config.hotwords.file + "'");
    std::ostringstream text;
    text << in.rdbuf();
    auto graph = r->hotwords_->Compile(text.str());
    if (!graph.ok()) return with_warnings(graph.status().WithContext(config.hotwords.file));
    d.hotwords = *graph;
  }
  U2_RETURN_IF_ERROR(r->ValidateOptions(d).WithContext("decoding options"));
  return r;
}

Status Recognizer::ValidateOptions(const DecodingOptions& options) const {
  U2_RETURN_IF_ERROR(options.Validate(model_->config()));
  return CheckSearchOptions(options.lm, options.hotwords);
}

Status Recognizer::CheckSearchOptions(const LmFusionWeights& lm,
                                      const std::shared_ptr<const ContextGraph>& hotwords) const {
  if (!lm_ && !graph_ && lm.lm_weight > 0) {
    return InvalidArgument("lm_weight " + std::to_string(lm.lm_weight) +
                           " given, but no language model is loaded for this model");
  }
  return Status::Ok();
}

std::unique_ptr<CtcSearch> Recognizer::MakeSearch(int beam, const LmFusionWeights& lm,
                                                  const std::shared_ptr<const ContextGraph>& hotwords) const {
  const int blank_id = model_->config().blank_id;
  if (graph_) {
    CtcWfstSearchConfig c = config_.wfst;
    c.nbest = beam;
    c.blank_id = blank_id;
    c.lm = lm;
    c.context = hotwords;
    return std::make_unique<CtcWfstSearch>(graph_, c);
  }
  CtcPrefixBeamSearchConfig c;
  c.beam = beam;
  c.first_beam = beam;
  c.blank_id = blank_id;
  // The search itself leaves the LM out when both weights are 0.
  if (lm_) {
    c.lm = lm_;
    c.lm_weights = lm;
  }
  c.context = hotwords;
  return std::make_unique<CtcPrefixBeamSearch>(c);
}

const ModelConfig& Recognizer::model_config() const { return model_->config(); }
int Recognizer::sample_rate() const { return model_->config().frontend.sample_rate; }

int64_t Recognizer::max_samples() const {
  // The encoder's positional table bounds the number of encoder frames; convert back to samples.
  const ModelConfig& mc = model_->config();
  const int64_t max_frames = static_cast<int64_t>(mc.MaxEncoderFrames()) * mc.SubsamplingRate();
  const int64_t shift = fbank_->frame_shift();
  return max_frames * shift;
}

StatusOr<std::vector<RecognitionResult>> Recognizer::Recognize(std::span<const Waveform> batch) const {
  return Recognize(batch, defaults_);
}

StatusOr<std::vector<RecognitionResult>> Recognizer::Recognize(std::span<const Waveform> batch,
                                                               const DecodingOptions& options) const {
  const ModelConfig& mc = model_->config();
  U2_RETURN_IF_ERROR(ValidateOptions(options).WithContext("decoding options"));
  const int model_rate = mc.frontend.sample_rate;
  const int shift_ms = mc.OutputFrameShiftMs();

  std::vector<RecognitionResult> results(batch.size());

  // 1. Features. Utterances too short to give a single encoder frame decode to "" and skip the model.
  std::vector<FeatureMatrix> features(batch.size());
  std::vector<size_t> encoded;  // indices of the utterances that go through the model
  for (size_t i = 0; i < batch.size(); ++i) {
    const Waveform& w = batch[i];
    const std::string where = "utterance " + std::to_string(i);
    std::span<const float> samples = w.samples;
    std::vector<float> resampled;
    if (w.sample_rate != model_rate) {
      U2_ASSIGN_OR_RETURN(resampled, Resample(samples, w.sample_rate, model_rate));
      samples = resampled;
    }
    if (static_cast<int64_t>(samples.size()) > max_samples()) {
      return InvalidArgument(where + ": " + std::to_string(samples.size() / double(model_rate)) +
                             " s of audio is longer than this model's limit of " +
                             std::to_string(max_samples() / model_rate) + " s; segment it first");
    }
    auto feats = fbank_->Compute(samples);
    if (!feats.ok()) return feats.status().WithContext(where);
    features[i] = std::move(*feats);
    results[i].audio_seconds = static_cast<double>(samples.size()) / model_rate;
    results[i].encoder_frame_shift_ms = shift_ms;
    if (mc.NumEncoderFrames(features[i].num_frames) > 0) encoded.push_back(i);
  }

  // 2. Encoder + CTC, one padded batch.
  std::vector<FeatureView> views;
  views.reserve(encoded.size());
  for (size_t i : encoded)
    views.push_back({features[i].data.data(), features[i].num_frames, features[i].dim});
  EncodeOptions encode_options;
  encode_options.decoding_chunk_size = options.decoding_chunk_size;
  encode_options.num_decoding_left_chunks = options.num_decoding_left_chunks;
  EncoderOutput enc;
  if (!views.empty()) {
    U2_ASSIGN_OR_RETURN(enc, model_->Encode(views, encode_options));
  }

  // 3. CTC search per utterance.
  std::vector<std::vector<CtcHypothesis>> ctc_nbest(encoded.size());
  for (size_t k = 0; k < encoded.size(); ++k) {
    const LogProbView logp{enc.ctc_log_probs[k].data(), enc.lengths[k], mc.vocab_size};
    results[encoded[k]].num_encoder_frames = enc.lengths[k];
    if (options.mode == DecodingMode::kCtcGreedy) {
      CtcHypothesis h;
      h.tokens = CtcGreedySearch(logp, mc.blank_id, &h.times);
      float best_path = 0;
      for (int t = 0; t < logp.num_frames; ++t) {
        const float* row = logp.Row(t);
        best_path += *std::max_element(row, row + logp.vocab);
      }
      h.score = h.viterbi_score = best_path;
      ctc_nbest[k].push_back(std::move(h));
    } else {
      const std::unique_ptr<CtcSearch> search = MakeSearch(options.beam, options.lm, options.hotwords);
      U2_RETURN_IF_ERROR(search->Search(logp));
      ctc_nbest[k] = search->NBest();
    }
  }

  // 4. Attention rescoring (every hypothesis of every utterance in one decoder batch) or CTC
  //    order, then text and word times: the same last step as streaming (nbest_ranking.h).
  std::vector<RankingItem> items(encoded.size());
  for (size_t k = 0; k < encoded.size(); ++k) {
    items[k].ctc = &ctc_nbest[k];
    if (options.mode == DecodingMode::kAttentionRescoring) {
      items[k].rescoring =
          RescoringWeights{.ctc_weight = options.ctc_weight, .reverse_weight = options.reverse_weight};
    }
  }
  const auto ranked = RankHypotheses(*model_, enc, items);
  for (size_t k = 0; k < encoded.size(); ++k) {
    if (!ranked[k].ok()) return ranked[k].status();
    const LogProbView logp{enc.ctc_log_probs[k].data(), enc.lengths[k], mc.vocab_size};
    const TokenLogProb logp_at = [&logp](int frame, int token) {
      return frame >= 0 && frame < logp.num_frames && token >= 0 && token < logp.vocab
                 ? logp.Row(frame)[token]
                 : -INFINITY;
    };
    results[encoded[k]].nbest = TopHypotheses(ctc_nbest[k], *ranked[k], options.nbest, *symbols_,
                                              {.frame_shift_ms = shift_ms}, logp_at);
  }
  for (RecognitionResult& result : results) {
    if (result.nbest.empty()) result.nbest.emplace_back();  // silence / too short: one empty hypothesis
  }
  return results;
}

}  // namespace u2
