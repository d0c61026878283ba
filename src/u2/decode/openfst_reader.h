// Reads an OpenFst binary file (standard tropical arcs) into plain arrays. Its .cc is the only
// place that includes OpenFst, and it is compiled as C++17: Debian's OpenFst 1.7.9 headers use
// std::allocator members that C++20 removed. So this header holds only C++17 types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace u2::openfst {

struct Arc {
  int32_t ilabel;
  int32_t olabel;
  float weight;
  int32_t next;
};

struct Fst {
  int32_t start = -1;
  std::vector<float> finals;           // per state; +infinity: not final
  std::vector<std::vector<Arc>> arcs;  // per state
};

enum class ReadResult { kOk, kCannotOpen, kInvalid };
// kCannotOpen / kInvalid with `error` set if the file cannot be read as a standard-arc FST
// (never aborts).
ReadResult Read(const std::string& path, Fst* out, std::string* error);

}  // namespace u2::openfst
