// Test tool: decodes raw CTC log-probabilities (float32, frames x vocab) with the WFST search over
// a TLG folder, so tests/python/test_tlg.py can compare it with Kaldi's decoder (the oracle).
//   wfst_decode GRAPH_DIR UNITS LOGP_F32 VOCAB BEAM BLANK_SKIP
// Prints one line per hypothesis: "fused_score<TAB>token ids".
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "u2/decode/ctc_wfst_search.h"
#include "u2/decode/decoding_graph.h"
#include "u2/decode/symbol_table.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::cerr << "usage: wfst_decode GRAPH_DIR UNITS LOGP_F32 VOCAB BEAM BLANK_SKIP\n";
    return 2;
  }
  auto units = u2::SymbolTable::Load(argv[2]);
  if (!units.ok()) return std::cerr << units.status().ToString() << "\n", 1;
  auto graph = u2::DecodingGraph::Load(argv[1], *units);
  if (!graph.ok()) return std::cerr << graph.status().ToString() << "\n", 1;
  std::ifstream in(argv[3], std::ios::binary);
  std::vector<float> logp;
  float x;
  while (in.read(reinterpret_cast<char*>(&x), sizeof(x))) logp.push_back(x);
  const int vocab = std::stoi(argv[4]);
  u2::CtcWfstSearchConfig config;
  config.beam = std::stof(argv[5]);
  config.max_active = 100000;
  config.blank_skip_threshold = std::stof(argv[6]);
  config.nbest = 5;
  u2::CtcWfstSearch search(*graph, config);
  const u2::Status st = search.Search({logp.data(), static_cast<int>(logp.size()) / vocab, vocab});
  if (!st.ok()) return std::cerr << st.ToString() << "\n", 1;
  for (const auto& h : search.NBest()) {
    std::printf("%.6f\t", h.FusedScore());
    for (size_t i = 0; i < h.tokens.size(); ++i) std::printf(i ? " %d" : "%d", h.tokens[i]);
    std::printf("\n");
  }
  return 0;
}
