#include "u2/engine/streaming_recognizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <tuple>

#include "u2/decode/ctc_search.h"
#include "u2/decode/endpoint.h"
#include "u2/decode/rescoring.h"
#include "u2/decode/symbol_table.h"
#include "u2/frontend/fbank.h"
#include "u2/frontend/streaming_fbank.h"
#include "u2/model/asr_model.h"

namespace u2 {

// ---------------------------------------------------------------------------------------------
// StreamOptions

Status StreamOptions::Validate(const ModelConfig& model) const {
  if (decoding_chunk_size < 1 || decoding_chunk_size > 1024) {
    return InvalidArgument("decoding_chunk_size must be in [1, 1024] for streaming, got " +
                           std::to_string(decoding_chunk_size));
  }
  if (num_decoding_left_chunks < -1) {
    return InvalidArgument("num_decoding_left_chunks must be >= -1, got " +
                           std::to_string(num_decoding_left_chunks));
  }
  U2_RETURN_IF_ERROR(ValidateSearchSettings(beam, nbest, ctc_weight, reverse_weight, rescoring, model));
  if (continuous_decoding && !endpointing) {
    return InvalidArgument("continuous_decoding needs endpointing (segments end at endpoints)");
  }
  if (endpointing) U2_RETURN_IF_ERROR(endpoint.Validate().WithContext("endpoint"));
  return Status::Ok();
}

std::string StreamOptions::ToString() const {
  std::ostringstream os;
  os << "StreamOptions(decoding_chunk_size=" << decoding_chunk_size
     << ", num_decoding_left_chunks=" << num_decoding_left_chunks << ", beam=" << beam << ", nbest=" << nbest
     << ", rescoring=" << rescoring << ", ctc_weight=" << ctc_weight << ", reverse_weight=" << reverse_weight
     << ", endpointing=" << endpointing << ", continuous_decoding=" << continuous_decoding;
  if (endpointing) os << ", endpoint=" << endpoint.ToString();
  os << ")";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// RecognitionStream

RecognitionStream::RecognitionStream() = default;
RecognitionStream::~RecognitionStream() = default;

Status RecognitionStream::AcceptWaveform(std::span<const float> samples) {
  if (input_finished_) return FailedPrecondition("audio after the end of the stream's input");
  if (done_) return Status::Ok();  // ended at an endpoint without continuous decoding: ignored
  U2_RETURN_IF_ERROR(fbank_->AcceptWaveform(samples));
  samples_accepted_ += static_cast<int64_t>(samples.size());
  if (fbank_->NumFramesReady() > 0) {
    FeatureMatrix frames = fbank_->PopFrames();
    window_.insert(window_.end(), frames.data.begin(), frames.data.end());
    window_rows_ += frames.num_frames;
  }
  return Status::Ok();
}

void RecognitionStream::InputFinished() { input_finished_ = true; }

bool RecognitionStream::IsReady() const {
  if (done_) return false;
  if (input_finished_) return true;  // at least the final result is due
  return window_rows_ >= window_frames_;
}

std::vector<StreamResult> RecognitionStream::TakeResults() {
  std::vector<StreamResult> out = std::move(results_);
  results_.clear();
  if (partial_changed_) out.push_back(partial_);
  partial_changed_ = false;
  return out;
}

StreamResult RecognitionStream::CurrentPartial() const { return partial_; }

size_t RecognitionStream::MemoryBytes() const {
  size_t bytes = sizeof(*this) + window_.capacity() * sizeof(float);
  if (encoder_) {
    bytes += encoder_->encoder_frames().capacity() * sizeof(float);
    bytes += static_cast<size_t>(encoder_->cached_frames()) * 2 * static_cast<size_t>(encoder_dim_) *
             static_cast<size_t>(encoder_layers_) * sizeof(float);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// StreamingRecognizer

StreamingRecognizer::~StreamingRecognizer() = default;

StatusOr<std::unique_ptr<StreamingRecognizer>> StreamingRecognizer::Create(
    std::shared_ptr<const Recognizer> recognizer) {
  if (!recognizer) return InvalidArgument("StreamingRecognizer needs a recognizer");
  std::unique_ptr<StreamingRecognizer> r(new StreamingRecognizer());
  r->recognizer_ = std::move(recognizer);
  r->model_ = r->recognizer_->model();
  const ModelConfig& mc = r->model_->config();
  const DecodingOptions& d = r->recognizer_->default_options();
  StreamOptions& o = r->defaults_;
  // The model's own streaming settings when it has them (model.json decoding section), else
  // WeNet's runtime defaults (chunk 16, all left chunks).
  o.decoding_chunk_size = d.decoding_chunk_size > 0 ? d.decoding_chunk_size : 16;
  o.num_decoding_left_chunks = d.num_decoding_left_chunks;
  o.beam = d.beam;
  o.nbest = 1;
  o.ctc_weight = d.ctc_weight;
  o.reverse_weight = d.reverse_weight;
  o.rescoring = mc.HasDecoder();
  o.endpoint.blank_id = mc.blank_id;
  o.endpoint.frame_shift_ms =
      static_cast<int>(std::lround(mc.frontend.frame_shift_ms)) * mc.SubsamplingRate();
  U2_RETURN_IF_ERROR(o.Validate(mc).WithContext("default stream options"));
  return r;
}

int StreamingRecognizer::WindowFrames(const StreamOptions& options) const {
  const ModelConfig& mc = model_->config();
  return (options.decoding_chunk_size - 1) * mc.SubsamplingRate() + mc.RightContext() + 1;
}

int StreamingRecognizer::StrideFrames(const StreamOptions& options) const {
  return options.decoding_chunk_size * model_->config().SubsamplingRate();
}

StatusOr<std::unique_ptr<RecognitionStream>> StreamingRecognizer::NewStream(
    const StreamOptions& options) const {
  const ModelConfig& mc = model_->config();
  StreamOptions o = options;
  // The endpointer counts in the model's frames whatever the caller left there.
  o.endpoint.blank_id = mc.blank_id;
  o.endpoint.frame_shift_ms = defaults_.endpoint.frame_shift_ms;
  U2_RETURN_IF_ERROR(o.Validate(mc).WithContext("stream options"));

  std::unique_ptr<RecognitionStream> s(new RecognitionStream());
  s->options_ = o;
  s->fbank_ = std::make_unique<StreamingFbank>(recognizer_->fbank());
  s->encoder_ = model_->NewStream();
  CtcPrefixBeamSearchConfig search_config;
  search_config.beam = o.beam;
  search_config.first_beam = o.beam;
  search_config.blank_id = mc.blank_id;
  s->search_ = std::make_unique<CtcPrefixBeamSearch>(search_config);
  s->endpointer_ = std::make_unique<CtcEndpointer>(o.endpoint);
  s->window_frames_ = WindowFrames(o);
  s->stride_frames_ = StrideFrames(o);
  s->min_frames_ = mc.RightContext() + 1;
  s->encoder_dim_ = mc.encoder.output_size;
  s->encoder_layers_ = mc.encoder.num_blocks;
  s->partial_.nbest.emplace_back();
  return s;
}

void StreamingRecognizer::UpdatePartial(RecognitionStream& s) const {
  const ModelConfig& mc = model_->config();
  const int shift_ms = s.options_.endpoint.frame_shift_ms;
  const int feature_shift_ms = static_cast<int>(std::lround(mc.frontend.frame_shift_ms));
  StreamResult& p = s.partial_;
  p.segment = s.segment_;
  p.is_final = false;
  p.start_ms = s.segment_start_frame_ * feature_shift_ms;
  p.end_ms = s.frames_consumed_ * feature_shift_ms;
  p.nbest.clear();
  std::vector<CtcHypothesis> nbest = s.search_->NBest();
  const size_t n = std::min<size_t>(nbest.size(), static_cast<size_t>(s.options_.nbest));
  for (size_t j = 0; j < n; ++j) {
    p.nbest.push_back(MakeHypothesis(nbest[j], {j, nbest[j].score, 0.0f}, recognizer_->symbols(),
                                     {.frame_shift_ms = shift_ms, .offset_ms = p.start_ms}));
  }
  if (p.nbest.empty()) p.nbest.emplace_back();
  s.partial_changed_ = true;
}

void StreamingRecognizer::StartNewSegment(RecognitionStream& s) const {
  // WeNet's ResetContinuousDecoding: model state, search and endpointer start afresh; the
  // features go on, minus the overlap frames the last window already used.
  s.encoder_ = model_->NewStream();
  s.search_->Reset();
  s.endpointer_->Reset();
  if (s.overlap_rows_ > 0) {
    const int dim = s.fbank_->dim();
    s.window_.erase(s.window_.begin(), s.window_.begin() + static_cast<ptrdiff_t>(s.overlap_rows_) * dim);
    s.window_rows_ -= s.overlap_rows_;
    s.overlap_rows_ = 0;
  }
  s.segment_start_frame_ = s.frames_consumed_;
  s.segment_has_frames_ = false;
  ++s.segment_;
  s.partial_ = StreamResult{};
  s.partial_.segment = s.segment_;
  const int feature_shift_ms = static_cast<int>(std::lround(model_->config().frontend.frame_shift_ms));
  s.partial_.start_ms = s.partial_.end_ms = s.segment_start_frame_ * feature_shift_ms;
  s.partial_.nbest.emplace_back();
}

Status StreamingRecognizer::DecodeStreams(std::span<RecognitionStream* const> streams,
                                          std::vector<Status>* stream_errors) const {
  for (size_t i = 0; i < streams.size(); ++i) {
    if (streams[i] == nullptr)
      return InvalidArgument("DecodeStreams: stream " + std::to_string(i) + " is null");
    for (size_t j = 0; j < i; ++j) {
      if (streams[j] == streams[i]) return InvalidArgument("DecodeStreams: a stream appears twice");
    }
  }
  std::vector<Status> errors(streams.size());
  const ModelConfig& mc = model_->config();
  const int dim = recognizer_->fbank().dim();

  // 1. Which streams encode a chunk now, grouped by chunking (one batched call per group).
  std::map<std::pair<int, int>, std::vector<size_t>> groups;
  for (size_t i = 0; i < streams.size(); ++i) {
    RecognitionStream& s = *streams[i];
    if (!s.IsReady()) continue;
    const bool full = s.window_rows_ >= s.window_frames_;
    const bool tail =
        s.input_finished_ && s.window_rows_ > s.overlap_rows_ && s.window_rows_ >= s.min_frames_;
    if (!full && !tail) continue;
    const int rows = std::min(s.window_rows_, s.window_frames_);
    if (s.encoder_->offset() + mc.NumEncoderFrames(rows) > mc.MaxEncoderFrames()) {
      errors[i] = InvalidArgument("the stream's segment is longer than this model's position table allows (" +
                                  std::to_string(mc.MaxEncoderFrames()) +
                                  " encoder frames); enable endpointing or segment the audio");
      s.done_ = true;
      continue;
    }
    groups[{s.options_.decoding_chunk_size, s.options_.num_decoding_left_chunks}].push_back(i);
  }

  // 2. Encoder + CTC per group, then each stream's search and endpointer.
  std::vector<size_t> ending;  // streams whose segment ends in this step
  for (const auto& [key, members] : groups) {
    std::vector<EncoderStream*> encoders;
    std::vector<FeatureView> views;
    std::vector<int> rows_used;
    for (size_t i : members) {
      RecognitionStream& s = *streams[i];
      const int rows = std::min(s.window_rows_, s.window_frames_);
      encoders.push_back(s.encoder_.get());
      views.push_back({s.window_.data(), rows, dim});
      rows_used.push_back(rows);
    }
    StreamingOptions so;
    so.decoding_chunk_size = key.first;
    so.num_decoding_left_chunks = key.second;
    auto out = model_->ForwardChunk(encoders, views, so);
    if (!out.ok()) {
      for (size_t i : members) {
        errors[i] = out.status();
        streams[i]->done_ = true;
      }
      continue;
    }
    for (size_t k = 0; k < members.size(); ++k) {
      const size_t i = members[k];
      RecognitionStream& s = *streams[i];
      const int rows = rows_used[k];
      const LogProbView logp{out->ctc_log_probs[k].data(), out->lengths[k], mc.vocab_size};
      if (Status st = s.search_->Search(logp); !st.ok()) {
        errors[i] = st;
        s.done_ = true;
        continue;
      }
      if (logp.num_frames > 0) s.segment_has_frames_ = true;
      ++s.chunks_decoded_;
      // Consume the window: a full window moves on by the stride and keeps its tail as the next
      // window's overlap (spec §4.2); a final short window is used up.
      s.frames_consumed_ += rows - s.overlap_rows_;
      const int drop = rows == s.window_frames_ ? s.stride_frames_ : rows;
      s.window_.erase(s.window_.begin(), s.window_.begin() + static_cast<ptrdiff_t>(drop) * dim);
      s.window_rows_ -= drop;
      s.overlap_rows_ = rows - drop;
      UpdatePartial(s);
      bool endpoint = false;
      if (s.options_.endpointing) {
        const bool decoded_something = !s.partial_.best().text.empty();
        auto fired = s.endpointer_->AcceptChunk(logp, decoded_something);
        if (!fired.ok()) {
          errors[i] = fired.status();
          s.done_ = true;
          continue;
        }
        endpoint = *fired;
      }
      s.endpoint_pending_ = endpoint;
    }
  }

  // 3. Segments that end now: input finished with nothing left to encode, or an endpoint.
  for (size_t i = 0; i < streams.size(); ++i) {
    RecognitionStream& s = *streams[i];
    if (!errors[i].ok() || s.done_) continue;
    const bool more = s.window_rows_ >= s.window_frames_ ||
                      (s.window_rows_ > s.overlap_rows_ && s.window_rows_ >= s.min_frames_);
    const bool input_end = s.input_finished_ && !more;
    if (s.endpoint_pending_ || input_end) ending.push_back(i);
  }
  if (!ending.empty()) {
    U2_RETURN_IF_ERROR(FinalizeSegments(streams, &errors, ending));
  }
  if (stream_errors) *stream_errors = std::move(errors);
  return Status::Ok();
}

Status StreamingRecognizer::FinalizeSegments(std::span<RecognitionStream* const> streams,
                                             std::vector<Status>* errors,
                                             std::span<const size_t> ending) const {
  const ModelConfig& mc = model_->config();
  const int feature_shift_ms = static_cast<int>(std::lround(mc.frontend.frame_shift_ms));

  // Every ending segment's CTC n-best; the ones to rescore go through the decoder in one batch.
  std::vector<std::vector<CtcHypothesis>> ctc(ending.size());
  std::vector<std::vector<RescoredHypothesis>> ranked(ending.size());
  std::vector<size_t> rescore;  // positions in `ending`
  for (size_t k = 0; k < ending.size(); ++k) {
    RecognitionStream& s = *streams[ending[k]];
    ctc[k] = s.search_->NBest();
    const bool has_tokens =
        std::any_of(ctc[k].begin(), ctc[k].end(), [](const CtcHypothesis& h) { return !h.tokens.empty(); });
    if (s.options_.rescoring && s.segment_has_frames_ && has_tokens) {
      rescore.push_back(k);
    } else {
      for (size_t j = 0; j < ctc[k].size(); ++j) ranked[k].push_back({j, ctc[k][j].score, 0.0f});
    }
  }
  if (!rescore.empty()) {
    std::vector<const EncoderStream*> encoders;
    std::vector<std::vector<std::vector<int>>> hyps;
    for (size_t k : rescore) {
      encoders.push_back(streams[ending[k]]->encoder_.get());
      std::vector<std::vector<int>> h;
      for (const CtcHypothesis& c : ctc[k]) h.push_back(c.tokens);
      hyps.push_back(std::move(h));
    }
    auto enc = model_->StreamEncoderOutput(encoders);
    StatusOr<std::vector<HypothesisScores>> scores =
        enc.ok() ? model_->ScoreHypotheses(*enc, hyps)
                 : StatusOr<std::vector<HypothesisScores>>(enc.status());
    for (size_t r = 0; r < rescore.size(); ++r) {
      const size_t k = rescore[r];
      RecognitionStream& s = *streams[ending[k]];
      if (!scores.ok()) {
        (*errors)[ending[k]] = scores.status();
        s.done_ = true;
        continue;
      }
      RescoringWeights weights;
      weights.ctc_weight = s.options_.ctc_weight;
      weights.reverse_weight = s.options_.reverse_weight;
      auto rk = RankByAttentionRescoring(ctc[k], (*scores)[r].l2r, (*scores)[r].r2l, weights);
      if (!rk.ok()) {
        (*errors)[ending[k]] = rk.status();
        s.done_ = true;
        continue;
      }
      ranked[k] = std::move(*rk);
    }
  }

  for (size_t k = 0; k < ending.size(); ++k) {
    const size_t i = ending[k];
    RecognitionStream& s = *streams[i];
    if (!(*errors)[i].ok()) continue;
    StreamResult final_result;
    final_result.segment = s.segment_;
    final_result.is_final = true;
    final_result.start_ms = s.segment_start_frame_ * feature_shift_ms;
    final_result.end_ms = s.input_finished_ && !s.endpoint_pending_
                              ? s.samples_accepted_ * 1000 / std::max(1, recognizer_->sample_rate())
                              : s.frames_consumed_ * feature_shift_ms;
    const size_t n = std::min<size_t>(ranked[k].size(), static_cast<size_t>(s.options_.nbest));
    for (size_t j = 0; j < n; ++j) {
      final_result.nbest.push_back(MakeHypothesis(
          ctc[k][ranked[k][j].index], ranked[k][j], recognizer_->symbols(),
          {.frame_shift_ms = s.options_.endpoint.frame_shift_ms, .offset_ms = final_result.start_ms}));
    }
    if (final_result.nbest.empty()) final_result.nbest.emplace_back();
    s.results_.push_back(std::move(final_result));
    s.partial_changed_ = false;  // the final supersedes the segment's partial

    const bool continue_stream = s.endpoint_pending_ && s.options_.continuous_decoding && !s.input_finished_;
    const bool continue_after_input_end =
        s.endpoint_pending_ && s.options_.continuous_decoding && s.input_finished_;
    s.endpoint_pending_ = false;
    if (continue_stream || continue_after_input_end) {
      StartNewSegment(s);
      // With the input finished, what remains is decoded in later steps (IsReady stays true);
      // if nothing remains, the stream ends without an extra empty segment.
      if (s.input_finished_ && !(s.window_rows_ >= s.min_frames_)) s.done_ = true;
    } else {
      s.done_ = true;
    }
  }
  return Status::Ok();
}

}  // namespace u2
