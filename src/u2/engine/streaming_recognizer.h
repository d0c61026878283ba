// Streaming recognition: audio arrives in pieces of any size, each stream gets partial results
// as its chunks are decoded, and a final (attention-rescored) result when its input ends or, with
// endpointing, at every endpoint (continuous decoding then starts a new segment and keeps going).
//
// One chunk step, start to end (streaming_recognizer.cc follows this order):
//   samples -> StreamFrontend: StreamingFbank (exact offline framing for any piece size;
//      frontend/), behind the optional VAD gate (vad/vad_gate.h: silence is never decoded, and a
//      pause the VAD hears ends the segment; times stay those of the whole stream)
//   -> a feature window of W = (C-1)·R + RC + 1 frames, stride C·R (ChunkWindow, docs/streaming.md)
//   -> AsrModel::ForwardChunk for the ready windows of MANY streams in one batch, each with its own
//      offset, attention cache and conv cache (model/, backend/)
//   -> incremental CTC beam search per stream (prefix search, or WFST over a TLG graph; decode/)
//      -> partial result
//   -> CtcEndpointer (decode/endpoint.h) if enabled
//   at segment end: RankHypotheses (engine/nbest_ranking.h): AsrModel::ScoreHypotheses over the
//   segment's encoder frames (all ending streams in one decoder batch) + RankByAttentionRescoring
//   -> final result, the same last step as offline recognition.
//
// Everything one stream knows lives in its RecognitionStream; StreamingRecognizer is stateless
// and const, so several scheduler threads may step disjoint sets of streams concurrently.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "u2/decode/ctc_search.h"
#include "u2/decode/endpoint.h"
#include "u2/engine/chunk_window.h"
#include "u2/engine/recognizer.h"
#include "u2/engine/stream_frontend.h"
#include "u2/frontend/fbank.h"
#include "u2/model/asr_model.h"
#include "u2/util/status.h"
#include "u2/vad/vad_segmenter.h"

namespace u2 {

class CtcEndpointer;
class SileroVad;

// How one stream is decoded. Defaults come from the model (StreamingRecognizer::default_options);
// a client may override them per stream (WebSocket start message, request parameters).
struct StreamOptions {
  int decoding_chunk_size = 16;       // C, encoder frames per chunk (> 0)
  int num_decoding_left_chunks = -1;  // attention history in chunks; -1 = all, 0 = none
  int beam = 10;                      // CTC prefix beam
  int nbest = 1;                      // hypotheses per result (<= beam)
  bool rescoring = true;              // attention-rescore each segment's final result
  float ctc_weight = 0.5f;
  float reverse_weight = 0.0f;
  bool endpointing = false;          // apply the endpoint rules (decode/endpoint.h)
  bool continuous_decoding = false;  // after an endpoint: new segment (else the stream ends there)
  EndpointConfig endpoint;           // blank_id / frame_shift_ms are set from the model
  // LM fusion and hotword biasing in the stream's search (as DecodingOptions); a hotword match
  // still open at a segment's end is taken back in that segment's final result.
  LmFusionWeights lm;
  std::shared_ptr<const ContextGraph> hotwords;
  // The VAD gate (needs a recognizer made with a VAD, and a 16 kHz model): silence is skipped,
  // and a pause of vad.min_silence_ms ends the segment (a new one starts with the next speech,
  // whatever continuous_decoding says), in addition to the endpoint rules. vad.max_segment_s is
  // not used (a segment still ends at the position table).
  bool vad_gate = false;
  VadConfig vad;

  Status Validate(const ModelConfig& model) const;
  std::string ToString() const;
};

// A partial or final result of one segment of a stream.
struct StreamResult {
  int segment = 0;                // 0, 1, ... (a new one after each endpoint with continuous decoding)
  bool is_final = false;          // final: rescored (if enabled), the segment is closed
  std::vector<Hypothesis> nbest;  // best first, at least one (possibly empty text)
  int64_t start_ms = 0;           // where the segment starts in the stream's audio
  int64_t end_ms = 0;             // audio decoded into this result, from the stream's start
  const Hypothesis& best() const { return nbest.front(); }
};

// The complete state of one stream: features, encoder caches, search, endpointer, results.
// Not thread-safe: one thread at a time (the scheduler guarantees it).
class RecognitionStream {
 public:
  ~RecognitionStream();
  RecognitionStream(const RecognitionStream&) = delete;
  RecognitionStream& operator=(const RecognitionStream&) = delete;

  // Appends audio (float in [-1, 1), at the model's sample rate). InvalidArgument for NaN/Inf or
  // absurd samples (nothing is accepted then), FailedPrecondition after InputFinished().
  // Audio given after a non-continuous stream has ended at an endpoint is ignored.
  Status AcceptWaveform(std::span<const float> samples);
  // The same for audio whose features the caller computed with its own StreamFrontend over the
  // stream's samples in order (StreamingRecognizer::NewFrontend; the scheduler does, outside its
  // lock): `num_samples` of audio gave `pieces` (with the input's end, the frontend's Finish()
  // pieces too). Cheap: no signal processing.
  Status AcceptFeatures(std::vector<FeaturePiece> pieces, int64_t num_samples);
  // No more audio: the remaining features are decoded and the final result is produced.
  void InputFinished();

  // True when a DecodeStreams() call would make progress on this stream: a full feature window
  // is ready, or the input has finished and the final result is not yet made.
  bool IsReady() const;
  // True once the last final result has been produced (input finished, or a non-continuous
  // stream reached an endpoint). A done stream never becomes ready again.
  bool IsDone() const { return segment_ == SegmentState::kClosed; }

  // Results made since the last call, oldest first: finals of closed segments, then (if the
  // current segment decoded anything new) its latest partial.
  std::vector<StreamResult> TakeResults();
  // The current segment's latest partial (empty hypothesis before any chunk).
  StreamResult CurrentPartial() const { return partial_; }

  const StreamOptions& options() const { return options_; }
  int64_t samples_accepted() const { return samples_accepted_; }
  int num_chunks_decoded() const { return chunks_decoded_; }
  // Approximate bytes of state this stream holds (features, caches, encoder history).
  size_t MemoryBytes() const;

  // ---- One decoding step, driven by StreamingRecognizer::DecodeStreams (which batches the
  // model calls of many streams); each call changes only this stream ----

  // The feature rows of the chunk to encode now (num_frames 0: none ready). If encoding them would
  // pass the model's position table, the segment ends here instead (a new one continues after
  // it) and nothing is encoded in this step.
  StatusOr<FeatureView> NextChunk();
  EncoderStream& encoder() { return *encoder_; }
  const EncoderStream& encoder() const { return *encoder_; }
  // The CTC log-probs of the chunk NextChunk() gave: prefix search, window, partial, endpointer.
  Status AcceptChunk(const LogProbView& log_probs, int rows);
  // Whether the current segment ends in this step: an endpoint, or the input finished with no
  // chunk left.
  bool SegmentEnds() const;
  // The segment's CTC n-best and whether it is to be attention-rescored.
  std::vector<CtcHypothesis> SegmentNBest() const;
  // Confidences for the segment's hypotheses (TopHypotheses).
  TokenLogProb SegmentLogProbs() const;
  bool RescoresSegment(const std::vector<CtcHypothesis>& nbest) const;
  // Closes the segment with its final n-best (ranked); a continuous stream at an endpoint starts
  // a new segment, anything else is done.
  void FinishSegment(std::vector<Hypothesis> final_nbest);
  // An error ended the stream.
  void Fail() { segment_ = SegmentState::kClosed; }

 private:
  friend class StreamingRecognizer;  // only to construct one (NewStream)
  // `options` are validated; the window geometry comes from the model and the chunk size.
  RecognitionStream(std::shared_ptr<const Recognizer> recognizer, const StreamOptions& options,
                    ChunkWindow window, std::shared_ptr<const SileroVad> vad);
  void UpdatePartial();
  void StartNewSegment();
  // Takes one piece into the window (a run's first piece re-bases the fresh segment's times).
  void TakePiece(FeaturePiece& piece);
  // The gated run's segment is finished: the next run's queued pieces become the window.
  void StartNextRun();
  int64_t FeatureFramesToMs(int64_t frames) const;
  // The segment's CTC log-probability of `token` at `frame` from the kept top entries (below the
  // smallest kept one: that one, an upper bound), for confidences.
  float TokenLogProbAt(int frame, int token) const;

  // Each decoded frame's few most probable tokens: enough for the confidence of the tokens the
  // search keeps, without holding the segment's whole (T x vocabulary) posterior matrix.
  static constexpr int kTopPerFrame = 4;
  struct FrameTop {
    int token[kTopPerFrame];
    float logp[kTopPerFrame];
  };

  // Where the input is: more audio may come, or not.
  enum class InputState { kOpen, kFinished };
  // Where the current segment is: decoding, at an endpoint (finalized in this step), or closed
  // for good (the stream is done).
  enum class SegmentState { kDecoding, kAtEndpoint, kClosed };

  std::shared_ptr<const Recognizer> recognizer_;  // model, symbols, sample rate
  StreamOptions options_;
  std::shared_ptr<const SileroVad> vad_;      // the gate's network (null: no gate)
  std::unique_ptr<StreamFrontend> frontend_;  // made on the first AcceptWaveform
  std::unique_ptr<EncoderStream> encoder_;
  std::unique_ptr<CtcSearch> search_;
  std::unique_ptr<CtcEndpointer> endpointer_;
  ChunkWindow window_;
  InputState input_ = InputState::kOpen;
  SegmentState segment_ = SegmentState::kDecoding;
  int64_t segment_start_frame_ = 0;  // feature frame (10 ms) where the segment began
  int64_t frames_consumed_ = 0;      // feature frames fed to the encoder (excluding overlap repeats)
  int64_t samples_accepted_ = 0;
  int chunks_decoded_ = 0;
  int segment_index_ = 0;
  bool segment_has_frames_ = false;    // the current segment decoded at least one encoder frame
  bool partial_changed_ = false;       // a partial newer than the last one taken is waiting
  bool position_limit_split_ = false;  // the segment ends because the positions ran out
  // VAD gate: the current run ended (its segment ends once its frames are decoded); the pieces of
  // runs after it wait in queued_ until then.
  bool run_ended_ = false;
  std::deque<FeaturePiece> queued_;
  std::vector<StreamResult> results_;
  StreamResult partial_;
  std::vector<FrameTop> frame_top_;  // the current segment's frames
};

class StreamingRecognizer {
 public:
  // Shares the recognizer's model, fbank and symbols (no copy of the weights). `vad`: the network
  // for streams that ask for the VAD gate (null: such streams are refused).
  static StatusOr<std::unique_ptr<StreamingRecognizer>> Create(
      std::shared_ptr<const Recognizer> recognizer, std::shared_ptr<const SileroVad> vad = nullptr);
  ~StreamingRecognizer();

  // A new stream; InvalidArgument if the options do not suit the model.
  StatusOr<std::unique_ptr<RecognitionStream>> NewStream(const StreamOptions& options) const;
  StatusOr<std::unique_ptr<RecognitionStream>> NewStream() const { return NewStream(defaults_); }
  // The frontend for a stream with these (validated) options, for callers that compute features
  // themselves and give them to RecognitionStream::AcceptFeatures.
  std::unique_ptr<StreamFrontend> NewFrontend(const StreamOptions& options) const;
  bool has_vad() const { return vad_ != nullptr; }

  // One step: every ready stream among `streams` decodes its next chunk (streams with the same
  // chunk size and left chunks share one batched encoder call), and every stream whose segment
  // ends (input finished or endpoint) gets its final result (all in one decoder batch).
  // Streams that are not ready are skipped. An error that concerns one stream (e.g. longer than
  // the model's position table) closes that stream with the error in `stream_errors` (same
  // index; OK for the others) and does not fail the others; the return value is not-OK only if
  // the whole step failed (then no stream changed).
  Status DecodeStreams(std::span<RecognitionStream* const> streams,
                       std::vector<Status>* stream_errors = nullptr) const;

  const StreamOptions& default_options() const { return defaults_; }
  const Recognizer& recognizer() const { return *recognizer_; }
  int sample_rate() const { return recognizer_->sample_rate(); }
  // Feature frames the first chunk window of a segment needs (W) and the stride after it (C·R).
  int WindowFrames(const StreamOptions& options) const;
  int StrideFrames(const StreamOptions& options) const;

 private:
  StreamingRecognizer() = default;
  void FinalizeSegments(std::span<RecognitionStream* const> streams, std::span<const size_t> ending,
                        std::vector<Status>* errors) const;

  std::shared_ptr<const Recognizer> recognizer_;
  std::shared_ptr<const AsrModel> model_;
  std::shared_ptr<const SileroVad> vad_;
  StreamOptions defaults_;
};

}  // namespace u2
