// A TLG decoding graph (tools/build_tlg.py; WeNet runtime's TLG.fst) held as compact arrays for
// the WFST search: per state its arcs, epsilon arcs first, then the arcs that consume a frame.
//
// Labels follow WeNet's convention: an input label is a model token id + 1 (so the blank, id 0,
// is 1) and 0 is epsilon; an output label is a word id of words.txt (0: none). Weights are
// OpenFst tropical costs (-ln P of the LM, pushed along the paths by determinization).
//
// Read with OpenFst, then copied, so the search never calls into OpenFst (no virtual calls per
// arc) and a graph that OpenFst reads but that does not fit the model (labels beyond the units,
// arcs to missing states) is refused here rather than read out of bounds later.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "u2/util/status.h"

namespace u2 {

class SymbolTable;

class DecodingGraph {
 public:
  struct Arc {
    int32_t ilabel;  // token id + 1; 0 = epsilon
    int32_t olabel;  // word id; 0 = none
    float weight;    // cost
    int32_t next;    // destination state
  };

  // Reads DIR/TLG.fst and DIR/words.txt. If DIR/units.txt exists it must equal the model's units
  // (a graph built for another model spells words with other ids). Errors name the file.
  static StatusOr<std::shared_ptr<const DecodingGraph>> Load(const std::string& dir,
                                                             const SymbolTable& units);
  // From OpenFst's text format (fstcompile's input; numbers only) and word list, for tests.
  static StatusOr<std::shared_ptr<const DecodingGraph>> FromText(const std::string& fst_text,
                                                                 std::vector<std::string> words, int vocab);

  int32_t start() const { return start_; }
  int32_t num_states() const { return static_cast<int32_t>(final_.size()); }
  int64_t num_arcs() const { return static_cast<int64_t>(arcs_.size()); }
  // Arcs of `state` with input epsilon: [EpsilonBegin, EmittingBegin); consuming: [EmittingBegin, End).
  const Arc* EpsilonBegin(int32_t state) const { return arcs_.data() + offsets_[static_cast<size_t>(state)]; }
  const Arc* EmittingBegin(int32_t state) const {
    return arcs_.data() + emitting_[static_cast<size_t>(state)];
  }
  const Arc* End(int32_t state) const { return arcs_.data() + offsets_[static_cast<size_t>(state) + 1]; }
  // The final cost of `state`; +infinity when it is not final.
  float Final(int32_t state) const { return final_[static_cast<size_t>(state)]; }
  const std::string& Word(int32_t id) const { return words_[static_cast<size_t>(id)]; }
  int32_t num_words() const { return static_cast<int32_t>(words_.size()); }
  // The model vocabulary the graph was checked against (input labels <= vocab()).
  int vocab() const { return vocab_; }

 private:
  DecodingGraph() = default;
  // Orders arcs per state (epsilon first) and checks every label and state against the bounds.
  Status Finish(std::vector<std::vector<Arc>> arcs_by_state, int vocab, const std::string& source);

  int32_t start_ = 0;
  int vocab_ = 0;
  std::vector<Arc> arcs_;
  std::vector<int64_t> offsets_;   // num_states + 1
  std::vector<int64_t> emitting_;  // num_states
  std::vector<float> final_;
  std::vector<std::string> words_;
};

}  // namespace u2
