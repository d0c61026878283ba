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
#include "u2/engine/nbest_ranking.h"
#include "u2/frontend/fbank.h"
#include "u2/frontend/streaming_fbank.h"
#include "u2/model/asr_model.h"
#include "u2/vad/silero_vad.h"

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
  // Encoders that subsample time or group frames inside the stack stream only in whole units.
  if (const int unit = model.StreamingChunkUnit(); decoding_chunk_size % unit != 0) {
    return InvalidArgument("decoding_chunk_size " + std::to_string(decoding_chunk_size) +
                           " must be a multiple of " + std::to_string(unit) + " for this " +
                           EncoderTypeName(model.encoder.type) +
                           " model (its time strides and attention groups)");
  }
  U2_RETURN_IF_ERROR(ValidateSearchSettings(beam, nbest, ctc_weight, reverse_weight, rescoring, model));
  if (continuous_decoding && !endpointing) {
    return InvalidArgument("continuous_decoding needs endpointing (segments end at endpoints)");
  }
  if (endpointing) U2_RETURN_IF_ERROR(endpoint.Validate().WithContext("endpoint"));
  if (vad_gate) U2_RETURN_IF_ERROR(vad.Validate().WithContext("vad gate"));
  return lm.Validate();
}

std::string StreamOptions::ToString() const {
  std::ostringstream os;
  os << "StreamOptions(decoding_chunk_size=" << decoding_chunk_size
     << ", num_decoding_left_chunks=" << num_decoding_left_chunks << ", beam=" << beam << ", nbest=" << nbest
     << ", rescoring=" << rescoring << ", ctc_weight=" << ctc_weight << ", reverse_weight=" << reverse_weight
     << ", endpointing=" << endpointing << ", continuous_decoding=" << continuous_decoding;
  if (endpointing) os << ", endpoint=" << endpoint.ToString();
  os << ", lm_weight=" << lm.lm_weight << ", word_bonus=" << lm.word_bonus;
  if (hotwords) os << ", hotwords=" << hotwords->num_phrases();
  if (vad_gate) os << ", vad_gate=" << vad.ToString();
  os << ")";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// RecognitionStream

RecognitionStream::RecognitionStream(std::shared_ptr<const Recognizer> recognizer,
                                     const StreamOptions& options, ChunkWindow window,
                                     std::shared_ptr<const SileroVad> vad)
    : recognizer_(std::move(recognizer)),
      options_(options),
      vad_(std::move(vad)),
      window_(std::move(window)) {
  encoder_ = recognizer_->model()->NewStream();
  search_ = recognizer_->MakeSearch(options_.beam, options_.lm, options_.hotwords);
  endpointer_ = std::make_unique<CtcEndpointer>(options_.endpoint);
  partial_.nbest.emplace_back();
}

RecognitionStream::~RecognitionStream() = default;

int64_t RecognitionStream::FeatureFramesToMs(int64_t frames) const {
  return frames * static_cast<int64_t>(std::lround(recognizer_->model_config().frontend.frame_shift_ms));
}

Status RecognitionStream::AcceptWaveform(std::span<const float> samples) {
  if (input_ == InputState::kFinished) return FailedPrecondition("audio after the end of the stream's input");
  if (IsDone()) return Status::Ok();  // ended at an endpoint without continuous decoding: ignored
  if (!frontend_) frontend_ = std::make_unique<StreamFrontend>(recognizer_->fbank(), vad_, options_.vad);
  U2_ASSIGN_OR_RETURN(std::vector<FeaturePiece> pieces, frontend_->Accept(samples));
  return AcceptFeatures(std::move(pieces), static_cast<int64_t>(samples.size()));
}

Status RecognitionStream::AcceptFeatures(std::vector<FeaturePiece> pieces, int64_t num_samples) {
  if (input_ == InputState::kFinished) return FailedPrecondition("audio after the end of the stream's input");
  if (IsDone()) return Status::Ok();
  for (const FeaturePiece& piece : pieces) {
    if (piece.frames.num_frames > 0 && piece.frames.dim != window_.dim()) {
      return InvalidArgument("features of dimension " + std::to_string(piece.frames.dim) +
                             " for a model that takes " + std::to_string(window_.dim()));
    }
  }
  samples_accepted_ += num_samples;
  for (FeaturePiece& piece : pieces) {
    // A new run cannot join a segment that has features already: that segment ends first.
    if (piece.starts_run && (window_.num_rows() > 0 || segment_has_frames_)) run_ended_ = true;
    if (run_ended_) {
      queued_.push_back(std::move(piece));
    } else {
      TakePiece(piece);
    }
  }
  return Status::Ok();
}

void RecognitionStream::TakePiece(FeaturePiece& piece) {
  if (piece.starts_run) {
    // The audio before this run was skipped: the (fresh) segment starts at the run's place.
    frames_consumed_ = segment_start_frame_ = piece.first_frame;
    partial_.start_ms = partial_.end_ms = FeatureFramesToMs(segment_start_frame_);
  }
  if (piece.frames.num_frames > 0) window_.Append(piece.frames.data, piece.frames.num_frames);
  if (piece.ends_run) run_ended_ = true;
}

void RecognitionStream::InputFinished() {
  if (input_ == InputState::kFinished) return;
  if (frontend_ && !IsDone()) {
    for (FeaturePiece& piece : frontend_->Finish()) {
      if (run_ended_) {
        queued_.push_back(std::move(piece));
      } else {
        TakePiece(piece);
      }
    }
  }
  input_ = InputState::kFinished;
}

bool RecognitionStream::IsReady() const {
  if (IsDone()) return false;
  // At the input's end at least the final result is due; at a run's end its segment's.
  if (input_ == InputState::kFinished || run_ended_) return true;
  return window_.HasFullWindow();
}

std::vector<StreamResult> RecognitionStream::TakeResults() {
  std::vector<StreamResult> out = std::move(results_);
  results_.clear();
  if (partial_changed_) out.push_back(partial_);
  partial_changed_ = false;
  return out;
}

size_t RecognitionStream::MemoryBytes() const {
  const ModelConfig& mc = recognizer_->model_config();
  size_t bytes = sizeof(*this) + window_.capacity_bytes() + frame_top_.capacity() * sizeof(FrameTop);
  for (const FeaturePiece& piece : queued_) bytes += piece.frames.data.capacity() * sizeof(float);
  if (encoder_) {
    bytes += encoder_->encoder_frames().capacity() * sizeof(float);
    bytes += static_cast<size_t>(encoder_->cached_frames()) * 2 *
             static_cast<size_t>(mc.encoder.output_size) * static_cast<size_t>(mc.encoder.num_blocks) *
             sizeof(float);
  }
  return bytes;
}

StatusOr<FeatureView> RecognitionStream::NextChunk() {
  const int rows = window_.ReadyRows(input_ == InputState::kFinished || run_ended_);
  if (rows == 0 || IsDone() || segment_ == SegmentState::kAtEndpoint)
    return FeatureView{window_.data(), 0, window_.dim()};
  const ModelConfig& mc = recognizer_->model_config();
  if (encoder_->offset() + mc.NumEmbeddingFrames(rows) > mc.MaxEncoderFrames()) {
    if (encoder_->offset() == 0) {  // not even one chunk fits: nothing to split
      Fail();
      return InvalidArgument("a chunk of " + std::to_string(rows) +
                             " feature frames is longer than this model's position table (" +
                             std::to_string(mc.MaxEncoderFrames()) + " encoder frames)");
    }
    // The segment is as long as the model's positions reach: it ends here, as at an endpoint, and
    // the stream goes on in a new segment whatever continuous_decoding says (a stream may run for
    // hours; docs/streaming.md).
    segment_ = SegmentState::kAtEndpoint;
    position_limit_split_ = true;
    return FeatureView{window_.data(), 0, window_.dim()};
  }
  return FeatureView{window_.data(), rows, window_.dim()};
}

Status RecognitionStream::AcceptChunk(const LogProbView& log_probs, int rows) {
  if (Status st = search_->Search(log_probs); !st.ok()) {
    Fail();
    return st;
  }
  if (log_probs.num_frames > 0) segment_has_frames_ = true;
  for (int t = 0; t < log_probs.num_frames; ++t) {
    const float* row = log_probs.Row(t);
    FrameTop top;
    std::fill(std::begin(top.token), std::end(top.token), -1);
    std::fill(std::begin(top.logp), std::end(top.logp), -INFINITY);
    for (int v = 0; v < log_probs.vocab; ++v) {
      if (row[v] <= top.logp[kTopPerFrame - 1]) continue;
      int k = kTopPerFrame - 1;
      for (; k > 0 && row[v] > top.logp[k - 1]; --k) {
        top.logp[k] = top.logp[k - 1];
        top.token[k] = top.token[k - 1];
      }
      top.logp[k] = row[v];
      top.token[k] = v;
    }
    frame_top_.push_back(top);
  }
  ++chunks_decoded_;
  frames_consumed_ += window_.Consume(rows);
  UpdatePartial();
  if (options_.endpointing) {
    const bool decoded_something = !partial_.best().text.empty();
    auto fired = endpointer_->AcceptChunk(log_probs, decoded_something);
    if (!fired.ok()) {
      Fail();
      return fired.status();
    }
    if (*fired) segment_ = SegmentState::kAtEndpoint;
  }
  return Status::Ok();
}

bool RecognitionStream::SegmentEnds() const {
  if (IsDone()) return false;
  if (segment_ == SegmentState::kAtEndpoint) return true;
  return (input_ == InputState::kFinished || run_ended_) && window_.ReadyRows(/*input_finished=*/true) == 0;
}

std::vector<CtcHypothesis> RecognitionStream::SegmentNBest() const { return search_->NBest(); }

float RecognitionStream::TokenLogProbAt(int frame, int token) const {
  if (frame < 0 || frame >= static_cast<int>(frame_top_.size())) return -INFINITY;
  const FrameTop& top = frame_top_[frame];
  for (int k = 0; k < kTopPerFrame; ++k) {
    if (top.token[k] == token) return top.logp[k];
  }
  return top.logp[kTopPerFrame - 1];
}

TokenLogProb RecognitionStream::SegmentLogProbs() const {
  return [this](int frame, int token) { return TokenLogProbAt(frame, token); };
}

bool RecognitionStream::RescoresSegment(const std::vector<CtcHypothesis>& nbest) const {
  const bool has_tokens =
      std::any_of(nbest.begin(), nbest.end(), [](const CtcHypothesis& h) { return !h.tokens.empty(); });
  return options_.rescoring && segment_has_frames_ && has_tokens;
}

void RecognitionStream::UpdatePartial() {
  partial_.segment = segment_index_;
  partial_.is_final = false;
  partial_.start_ms = FeatureFramesToMs(segment_start_frame_);
  partial_.end_ms = FeatureFramesToMs(frames_consumed_);
  std::vector<CtcHypothesis> nbest = search_->NBest();
  std::vector<RescoredHypothesis> ctc_order;
  for (size_t j = 0; j < nbest.size(); ++j) ctc_order.push_back({j, nbest[j].score, 0.0f});
  partial_.nbest =
      TopHypotheses(nbest, ctc_order, options_.nbest, recognizer_->symbols(),
                    {.frame_shift_ms = options_.endpoint.frame_shift_ms, .offset_ms = partial_.start_ms});
  partial_changed_ = true;
}

void RecognitionStream::FinishSegment(std::vector<Hypothesis> final_nbest) {
  const bool at_endpoint = segment_ == SegmentState::kAtEndpoint;
  const bool input_finished = input_ == InputState::kFinished;
  if (vad_ && input_finished && !at_endpoint && segment_index_ > 0 && !segment_has_frames_) {
    // A gated stream ended in silence after its last run: no empty segment for the silence.
    segment_ = SegmentState::kClosed;
    return;
  }
  StreamResult final_result;
  final_result.segment = segment_index_;
  final_result.is_final = true;
  final_result.start_ms = FeatureFramesToMs(segment_start_frame_);
  // At the input's end the segment runs to the last sample (without a gate: with one, the audio
  // after the last run was skipped); at an endpoint or a run's end to the last frame.
  final_result.end_ms = input_finished && !at_endpoint && !run_ended_ && !vad_
                            ? samples_accepted_ * 1000 / std::max(1, recognizer_->sample_rate())
                            : FeatureFramesToMs(frames_consumed_);
  final_result.nbest = std::move(final_nbest);
  if (final_result.nbest.empty()) final_result.nbest.emplace_back();
  results_.push_back(std::move(final_result));
  partial_changed_ = false;  // the final supersedes the segment's partial
  if (at_endpoint && (options_.continuous_decoding || position_limit_split_)) {
    position_limit_split_ = false;
    StartNewSegment();
    // The rest of a run that ended is decoded in later steps (IsReady stays true); too little of
    // it for a chunk, and the next run starts now instead of an empty segment.
    if (run_ended_ && !window_.HasSegmentStart()) StartNextRun();
    // With the input finished, what remains is decoded in later steps (IsReady stays true);
    // if nothing remains, the stream ends without an extra empty segment.
    if (input_finished && !window_.HasSegmentStart()) segment_ = SegmentState::kClosed;
  } else if (!at_endpoint && run_ended_) {
    // The VAD gate ended the run: the stream goes on with the next one (whatever
    // continuous_decoding says; a pause is not the end of a live stream).
    StartNewSegment();
    StartNextRun();
    if (input_finished && !window_.HasSegmentStart()) segment_ = SegmentState::kClosed;
  } else {
    segment_ = SegmentState::kClosed;
  }
}

void RecognitionStream::StartNextRun() {
  window_.Clear();
  run_ended_ = false;
  while (!queued_.empty() && !run_ended_) {
    TakePiece(queued_.front());
    queued_.pop_front();
  }
}

void RecognitionStream::StartNewSegment() {
  // WeNet's ResetContinuousDecoding: model state, search and endpointer start afresh; the
  // features go on, minus the overlap frames the last window already used.
  encoder_ = recognizer_->model()->NewStream();
  search_->Reset();
  endpointer_->Reset();
  window_.DropOverlap();
  segment_start_frame_ = frames_consumed_;
  segment_has_frames_ = false;
  frame_top_.clear();
  segment_ = SegmentState::kDecoding;
  ++segment_index_;
  partial_ = StreamResult{};
  partial_.segment = segment_index_;
  partial_.start_ms = partial_.end_ms = FeatureFramesToMs(segment_start_frame_);
  partial_.nbest.emplace_back();
}

// ---------------------------------------------------------------------------------------------
// StreamingRecognizer

StreamingRecognizer::~StreamingRecognizer() = default;

StatusOr<std::unique_ptr<StreamingRecognizer>> StreamingRecognizer::Create(
    std::shared_ptr<const Recognizer> recognizer, std::shared_ptr<const SileroVad> vad) {
  if (!recognizer) return InvalidArgument("StreamingRecognizer needs a recognizer");
  std::unique_ptr<StreamingRecognizer> r(new StreamingRecognizer());
  r->recognizer_ = std::move(recognizer);
  // The gate hears the model's audio: a model at another rate cannot have one.
  if (vad && r->recognizer_->sample_rate() == SileroVad::kSampleRate) r->vad_ = std::move(vad);
  r->model_ = r->recognizer_->model();
  const ModelConfig& mc = r->model_->config();
  const DecodingOptions& d = r->recognizer_->default_options();
  StreamOptions& o = r->defaults_;
  // The model's own streaming settings when it has them (model.json decoding section), else
  // WeNet's runtime defaults (chunk 16, all left chunks).
  o.decoding_chunk_size = d.decoding_chunk_size > 0 ? d.decoding_chunk_size : 16;
  if (const int unit = mc.StreamingChunkUnit(); o.decoding_chunk_size % unit != 0) {
    o.decoding_chunk_size += unit - o.decoding_chunk_size % unit;  // the next whole unit
  }
  o.num_decoding_left_chunks = d.num_decoding_left_chunks;
  o.beam = d.beam;
  o.nbest = 1;
  o.ctc_weight = d.ctc_weight;
  o.reverse_weight = d.reverse_weight;
  o.lm = d.lm;
  o.hotwords = d.hotwords;
  o.rescoring = mc.HasDecoder();
  o.endpoint.blank_id = mc.blank_id;
  o.endpoint.frame_shift_ms = mc.OutputFrameShiftMs();
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
  U2_RETURN_IF_ERROR(recognizer_->CheckSearchOptions(o.lm, o.hotwords).WithContext("stream options"));
  if (o.vad_gate && !vad_) {
    return FailedPrecondition(
        "stream options: vad_gate needs a VAD, and this recognizer has none (the server's "
        "--vad-model-dir, a 16 kHz model)");
  }
  ChunkWindow window(WindowFrames(o), StrideFrames(o), mc.RightContext() + 1, recognizer_->fbank().dim());
  return std::unique_ptr<RecognitionStream>(
      new RecognitionStream(recognizer_, o, std::move(window), o.vad_gate ? vad_ : nullptr));
}

std::unique_ptr<StreamFrontend> StreamingRecognizer::NewFrontend(const StreamOptions& options) const {
  return std::make_unique<StreamFrontend>(recognizer_->fbank(), options.vad_gate ? vad_ : nullptr,
                                          options.vad);
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

  // 1. Which streams encode a chunk now, grouped by chunking (one batched call per group).
  std::map<std::pair<int, int>, std::vector<size_t>> groups;
  std::vector<FeatureView> chunks(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    RecognitionStream& s = *streams[i];
    if (!s.IsReady()) continue;
    auto chunk = s.NextChunk();
    if (!chunk.ok()) {
      errors[i] = chunk.status();
      continue;
    }
    if (chunk->num_frames == 0) continue;
    chunks[i] = *chunk;
    groups[{s.options().decoding_chunk_size, s.options().num_decoding_left_chunks}].push_back(i);
  }

  // 2. Encoder + CTC per group, then each stream's search, window and endpointer.
  for (const auto& [key, members] : groups) {
    std::vector<EncoderStream*> encoders;
    std::vector<FeatureView> views;
    for (size_t i : members) {
      encoders.push_back(&streams[i]->encoder());
      views.push_back(chunks[i]);
    }
    StreamingOptions so;
    so.decoding_chunk_size = key.first;
    so.num_decoding_left_chunks = key.second;
    auto out = model_->ForwardChunk(encoders, views, so);
    for (size_t k = 0; k < members.size(); ++k) {
      const size_t i = members[k];
      if (!out.ok()) {
        errors[i] = out.status();
        streams[i]->Fail();
        continue;
      }
      const LogProbView logp{out->ctc_log_probs[k].data(), out->lengths[k], mc.vocab_size};
      errors[i] = streams[i]->AcceptChunk(logp, chunks[i].num_frames);
    }
  }

  // 3. Segments that end now: input finished with nothing left to encode, or an endpoint.
  std::vector<size_t> ending;
  for (size_t i = 0; i < streams.size(); ++i) {
    if (errors[i].ok() && streams[i]->SegmentEnds()) ending.push_back(i);
  }
  if (!ending.empty()) FinalizeSegments(streams, ending, &errors);
  if (stream_errors) *stream_errors = std::move(errors);
  return Status::Ok();
}

void StreamingRecognizer::FinalizeSegments(std::span<RecognitionStream* const> streams,
                                           std::span<const size_t> ending,
                                           std::vector<Status>* errors) const {
  // Every ending segment's CTC n-best; the ones to rescore go through the decoder in one batch.
  std::vector<std::vector<CtcHypothesis>> ctc(ending.size());
  std::vector<RankingItem> items(ending.size());
  std::vector<const EncoderStream*> rescored_encoders;
  for (size_t k = 0; k < ending.size(); ++k) {
    const RecognitionStream& s = *streams[ending[k]];
    ctc[k] = s.SegmentNBest();
    items[k].ctc = &ctc[k];
    if (s.RescoresSegment(ctc[k])) {
      items[k].rescoring = RescoringWeights{.ctc_weight = s.options().ctc_weight,
                                            .reverse_weight = s.options().reverse_weight};
      rescored_encoders.push_back(&s.encoder());
    }
  }
  EncoderOutput rescored_output;
  if (!rescored_encoders.empty()) {
    auto enc = model_->StreamEncoderOutput(rescored_encoders);
    if (!enc.ok()) {
      for (size_t k = 0; k < ending.size(); ++k) {
        if (!items[k].rescoring) continue;
        (*errors)[ending[k]] = enc.status();
        items[k].rescoring.reset();  // not rescored; the error ends the stream below
      }
    } else {
      rescored_output = std::move(enc).value();
    }
  }
  const auto ranked = RankHypotheses(*model_, rescored_output, items);
  for (size_t k = 0; k < ending.size(); ++k) {
    RecognitionStream& s = *streams[ending[k]];
    Status& error = (*errors)[ending[k]];
    if (error.ok() && !ranked[k].ok()) error = ranked[k].status();
    if (!error.ok()) {
      s.Fail();
      continue;
    }
    const int64_t start_ms = s.CurrentPartial().start_ms;
    s.FinishSegment(
        TopHypotheses(ctc[k], *ranked[k], s.options().nbest, recognizer_->symbols(),
                      {.frame_shift_ms = s.options().endpoint.frame_shift_ms, .offset_ms = start_ms}));
  }
}

}  // namespace u2
