// The feature window of one stream: the one owner of "is a chunk ready?".
//
// WeNet decodes a stream chunk by chunk (docs/streaming.md, "Feature windows"): with decoding
// chunk size C, subsampling rate R and right context RC, a chunk needs a window of
// W = (C-1)·R + RC + 1 feature frames; after it the window moves on by C·R frames and its last
// W - C·R rows (RC + 1 - R) are fed again as the next window's head (the overlap). When the input
// has finished, a shorter last window (at least RC + 1 rows, more than the overlap) still gives
// encoder frames.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace u2 {

class ChunkWindow {
 public:
  ChunkWindow() = default;
  // window_frames: W; stride_frames: C·R; min_frames: RC + 1; dim: feature dimension.
  ChunkWindow(int window_frames, int stride_frames, int min_frames, int dim)
      : window_frames_(window_frames), stride_frames_(stride_frames), min_frames_(min_frames), dim_(dim) {}

  void Append(const std::vector<float>& frames, int num_frames) {
    rows_.insert(rows_.end(), frames.begin(), frames.end());
    num_rows_ += num_frames;
  }

  // The rows the next chunk encodes: a full window, or (input finished) the last short one;
  // 0 when nothing is ready.
  int ReadyRows(bool input_finished) const {
    if (num_rows_ >= window_frames_) return window_frames_;
    if (input_finished && num_rows_ > overlap_rows_ && num_rows_ >= min_frames_) return num_rows_;
    return 0;
  }
  bool HasFullWindow() const { return num_rows_ >= window_frames_; }
  const float* data() const { return rows_.data(); }
  int dim() const { return dim_; }

  // After encoding `rows` (= ReadyRows()): a full window moves on by the stride and keeps its tail
  // as the next window's overlap; a last short window is used up. Returns the frames that were
  // new to the encoder (not repeats of the previous overlap).
  int Consume(int rows) {
    const int fresh = rows - overlap_rows_;
    const int drop = rows == window_frames_ ? stride_frames_ : rows;
    rows_.erase(rows_.begin(), rows_.begin() + static_cast<ptrdiff_t>(drop) * dim_);
    num_rows_ -= drop;
    overlap_rows_ = rows - drop;
    return fresh;
  }

  // A new segment starts after an endpoint: the overlap rows belonged to the old segment's
  // encoder state and are dropped; the features after them stay.
  void DropOverlap() {
    rows_.erase(rows_.begin(), rows_.begin() + static_cast<ptrdiff_t>(overlap_rows_) * dim_);
    num_rows_ -= overlap_rows_;
    overlap_rows_ = 0;
  }

  // A gated run ended (engine/stream_frontend.h): its leftover rows, too few for a chunk, are
  // dropped with the overlap; the next run's rows start a new window.
  void Clear() {
    rows_.clear();
    num_rows_ = 0;
    overlap_rows_ = 0;
  }

  int num_rows() const { return num_rows_; }
  // Whether rows remain that a new segment could start from (at least RC + 1 of them).
  bool HasSegmentStart() const { return num_rows_ >= min_frames_; }
  size_t capacity_bytes() const { return rows_.capacity() * sizeof(float); }

 private:
  int window_frames_ = 0;
  int stride_frames_ = 0;
  int min_frames_ = 0;
  int dim_ = 0;
  std::vector<float> rows_;  // num_rows_ x dim_, oldest first
  int num_rows_ = 0;
  int overlap_rows_ = 0;  // rows at the front already fed to the encoder (the last window's tail)
};

}  // namespace u2
