#include "u2/decode/openfst_reader.h"

#include <fst/fstlib.h>

#include <fstream>
#include <limits>
#include <memory>

namespace u2::openfst {
namespace {

// OpenFst's binary files start with this int32 (fst/fst.h kFstMagicNumber). Checked before
// OpenFst parses anything, so a file of another kind is a clear error.
constexpr int32_t kFstMagic = 2125659606;

}  // namespace

ReadResult Read(const std::string& path, Fst* out, std::string* error) {
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      *error = "cannot open '" + path + "'";
      return ReadResult::kCannotOpen;
    }
    int32_t magic = 0;
    in.read(reinterpret_cast<char*>(&magic), sizeof(magic));
    if (!in || magic != kFstMagic) {
      *error = path + ": not an OpenFst binary file";
      return ReadResult::kInvalid;
    }
    // The header's two strings (FST type, arc type), length-prefixed. OpenFst would allocate
    // whatever length a damaged file claims; check them first.
    std::string types[2];
    for (std::string& t : types) {
      int32_t length = 0;
      in.read(reinterpret_cast<char*>(&length), sizeof(length));
      if (!in || length <= 0 || length > 64) {
        *error = path + ": damaged OpenFst header";
        return ReadResult::kInvalid;
      }
      t.resize(static_cast<size_t>(length));
      in.read(t.data(), length);
      if (!in) {
        *error = path + ": damaged OpenFst header";
        return ReadResult::kInvalid;
      }
    }
    if ((types[0] != "vector" && types[0] != "const") || types[1] != "standard") {
      *error = path + ": a '" + types[0] + "' FST of '" + types[1] +
               "' arcs; expected a vector or const FST of standard (tropical) arcs";
      return ReadResult::kInvalid;
    }
  }
  // OpenFst's errors abort the process unless told otherwise; a bad graph must be an error.
  FLAGS_fst_error_fatal = false;
  std::unique_ptr<fst::StdFst> graph(fst::StdFst::Read(path));
  if (!graph || graph->Properties(fst::kError, false)) {
    *error = path + ": OpenFst could not read it (truncated, or not a standard-arc FST)";
    return ReadResult::kInvalid;
  }
  out->start = static_cast<int32_t>(graph->Start());
  out->finals.clear();
  out->arcs.clear();
  for (fst::StateIterator<fst::StdFst> it(*graph); !it.Done(); it.Next()) {
    const auto s = it.Value();
    if (s < 0 || s >= std::numeric_limits<int32_t>::max()) {
      *error = path + ": too many states";
      return ReadResult::kInvalid;
    }
    const size_t i = static_cast<size_t>(s);
    if (i >= out->arcs.size()) {
      out->arcs.resize(i + 1);
      out->finals.resize(i + 1, std::numeric_limits<float>::infinity());
    }
    out->finals[i] = graph->Final(s).Value();
    for (fst::ArcIterator<fst::StdFst> ai(*graph, s); !ai.Done(); ai.Next()) {
      const fst::StdArc& a = ai.Value();
      out->arcs[i].push_back({static_cast<int32_t>(a.ilabel), static_cast<int32_t>(a.olabel),
                              a.weight.Value(), static_cast<int32_t>(a.nextstate)});
    }
  }
  if (graph->Properties(fst::kError, false)) {
    *error = path + ": OpenFst reported an error while reading it";
    return ReadResult::kInvalid;
  }
  return ReadResult::kOk;
}

}  // namespace u2::openfst
