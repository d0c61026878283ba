#include "u2/decode/decoding_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "u2/decode/openfst_reader.h"
#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

StatusOr<std::vector<std::string>> ReadWords(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open '" + path + "'");
  std::vector<std::string> words;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream fields(line);
    std::string word;
    int64_t id = -1;
    if (!(fields >> word)) continue;
    if (!(fields >> id) || id < 0 || id > std::numeric_limits<int32_t>::max() / 2) {
      return InvalidArgument(path + ":" + std::to_string(line_no) + ": expected 'word id'");
    }
    if (static_cast<size_t>(id) >= words.size()) words.resize(static_cast<size_t>(id) + 1);
    words[static_cast<size_t>(id)] = word;
  }
  if (words.empty()) return InvalidArgument(path + ": no words");
  return words;
}

}  // namespace

Status DecodingGraph::Finish(std::vector<std::vector<Arc>> arcs_by_state, int vocab,
                             const std::string& source) {
  const size_t n = arcs_by_state.size();
  vocab_ = vocab;
  if (n == 0) return InvalidArgument(source + ": the graph has no states");
  if (start_ < 0 || static_cast<size_t>(start_) >= n)
    return InvalidArgument(source + ": the graph has no start state");
  offsets_.assign(n + 1, 0);
  emitting_.assign(n, 0);
  size_t total = 0;
  for (const auto& a : arcs_by_state) total += a.size();
  arcs_.clear();
  arcs_.reserve(total);
  for (size_t s = 0; s < n; ++s) {
    auto& arcs = arcs_by_state[s];
    std::stable_partition(arcs.begin(), arcs.end(), [](const Arc& a) { return a.ilabel == 0; });
    offsets_[s] = static_cast<int64_t>(arcs_.size());
    for (const Arc& a : arcs) {
      if (a.ilabel < 0 || a.ilabel > vocab) {
        return InvalidArgument(source + ": state " + std::to_string(s) + " has input label " +
                               std::to_string(a.ilabel) + ", beyond the model's " + std::to_string(vocab) +
                               " units (+1); a graph for another model?");
      }
      if (a.olabel < 0 || a.olabel >= static_cast<int32_t>(words_.size())) {
        return InvalidArgument(source + ": state " + std::to_string(s) + " has output label " +
                               std::to_string(a.olabel) + ", not in the word list");
      }
      if (a.next < 0 || static_cast<size_t>(a.next) >= n) {
        return InvalidArgument(source + ": state " + std::to_string(s) + " has an arc to missing state " +
                               std::to_string(a.next));
      }
      if (std::isnan(a.weight))
        return InvalidArgument(source + ": state " + std::to_string(s) + " has a NaN weight");
      arcs_.push_back(a);
    }
    emitting_[s] = offsets_[s];
    while (emitting_[s] < static_cast<int64_t>(arcs_.size()) &&
           arcs_[static_cast<size_t>(emitting_[s])].ilabel == 0)
      ++emitting_[s];
    arcs.clear();
    arcs.shrink_to_fit();
  }
  offsets_[n] = static_cast<int64_t>(arcs_.size());
  return Status::Ok();
}

StatusOr<std::shared_ptr<const DecodingGraph>> DecodingGraph::Load(const std::string& dir,
                                                                   const SymbolTable& units) {
  const std::string fst_path = dir + "/TLG.fst";
  U2_ASSIGN_OR_RETURN(std::vector<std::string> words, ReadWords(dir + "/words.txt"));
  if (std::filesystem::exists(dir + "/units.txt")) {
    U2_ASSIGN_OR_RETURN(SymbolTable graph_units, SymbolTable::Load(dir + "/units.txt"));
    bool same = graph_units.size() == units.size();
    for (int i = 0; same && i < units.size(); ++i) same = graph_units.Token(i) == units.Token(i);
    if (!same) {
      return InvalidArgument(
          dir + "/units.txt differs from the model's units: the graph was built for another model");
    }
  }
  openfst::Fst raw;
  std::string error;
  switch (openfst::Read(fst_path, &raw, &error)) {
    case openfst::ReadResult::kOk:
      break;
    case openfst::ReadResult::kCannotOpen:
      return NotFound("cannot open decoding graph '" + fst_path + "'");
    case openfst::ReadResult::kInvalid:
      return InvalidArgument(error);
  }
  auto out = std::shared_ptr<DecodingGraph>(new DecodingGraph());
  out->words_ = std::move(words);
  out->start_ = raw.start;
  out->final_ = std::move(raw.finals);
  std::vector<std::vector<Arc>> arcs(raw.arcs.size());
  for (size_t s = 0; s < raw.arcs.size(); ++s) {
    arcs[s].reserve(raw.arcs[s].size());
    for (const openfst::Arc& a : raw.arcs[s]) arcs[s].push_back({a.ilabel, a.olabel, a.weight, a.next});
    raw.arcs[s] = {};
  }
  U2_RETURN_IF_ERROR(out->Finish(std::move(arcs), units.size(), fst_path));
  return std::shared_ptr<const DecodingGraph>(std::move(out));
}

StatusOr<std::shared_ptr<const DecodingGraph>> DecodingGraph::FromText(const std::string& fst_text,
                                                                       std::vector<std::string> words,
                                                                       int vocab) {
  auto out = std::shared_ptr<DecodingGraph>(new DecodingGraph());
  out->words_ = std::move(words);
  std::vector<std::vector<Arc>> arcs;
  auto ensure = [&](int64_t s) {
    if (static_cast<size_t>(s) >= arcs.size()) {
      arcs.resize(static_cast<size_t>(s) + 1);
      out->final_.resize(static_cast<size_t>(s) + 1, std::numeric_limits<float>::infinity());
    }
  };
  std::istringstream in(fst_text);
  std::string line;
  bool first = true;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream f(line);
    std::vector<double> v;
    std::string field;
    const auto bad = InvalidArgument("fst text line " + std::to_string(line_no) + ": " + line);
    while (f >> field) {
      char* end = nullptr;
      v.push_back(std::strtod(field.c_str(), &end));
      if (end == field.c_str() || *end != '\0' || !std::isfinite(v.back())) return bad;
    }
    if (v.empty()) continue;
    if (v[0] < 0 || v[0] > 1e8) return bad;
    const int64_t s = static_cast<int64_t>(v[0]);
    ensure(s);
    if (first) out->start_ = static_cast<int32_t>(s), first = false;
    if (v.size() <= 2) {
      out->final_[static_cast<size_t>(s)] = v.size() == 2 ? static_cast<float>(v[1]) : 0.0f;
    } else if (v.size() == 4 || v.size() == 5) {
      if (v[1] < 0 || v[1] > 1e8) return bad;
      ensure(static_cast<int64_t>(v[1]));
      arcs[static_cast<size_t>(s)].push_back({static_cast<int32_t>(v[2]), static_cast<int32_t>(v[3]),
                                              v.size() == 5 ? static_cast<float>(v[4]) : 0.0f,
                                              static_cast<int32_t>(v[1])});
    } else {
      return bad;
    }
  }
  U2_RETURN_IF_ERROR(out->Finish(std::move(arcs), vocab, "<fst text>"));
  return std::shared_ptr<const DecodingGraph>(std::move(out));
}

}  // namespace u2
