// The one search interface the engine drives (WeNet runtime/core's SearchInterface): CTC
// log-probabilities go in chunk by chunk, an n-best list comes out. Implementations: the CTC
// prefix beam search (with optional LM fusion and hotwords, ctc_search.h) and the WFST search
// over a TLG graph (ctc_wfst_search.h).
#pragma once

#include <vector>

#include "u2/decode/ctc_hypothesis.h"
#include "u2/util/status.h"

namespace u2 {

class CtcSearch {
 public:
  virtual ~CtcSearch() = default;
  // Back to the start of an utterance.
  virtual void Reset() = 0;
  // Consumes the frames of `chunk`; calling it chunk by chunk equals one call over the whole
  // utterance. A malformed view or a vocabulary that changed since Reset() is an error that
  // changes nothing.
  virtual Status Search(LogProbView chunk) = 0;
  // Best first, as if the utterance ended now.
  virtual std::vector<CtcHypothesis> NBest() const = 0;
  virtual int num_frames_decoded() const = 0;
};

}  // namespace u2
