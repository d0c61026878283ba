// Hotword lists (engine/hotwords.h: "phrase[:boost]" lines or a JSON array of them), as a request's
// "hotwords" parameter or the server's --hotwords-file brings them: ParseHotwordList, then
// HotwordCompiler::Compile against the demo model's units (Tokenize + the context graph), then a
// walk over the graph with the phrases' own tokens.
#include <string>

#include "fuzz_support.h"
#include "u2/engine/hotwords.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = u2::fuzz::AsText(data, size);
  const u2::HotwordsConfig config;
  auto entries = u2::ParseHotwordList(text, config.boost, config.max_phrases);
  if (entries.ok()) U2_FUZZ_CHECK(static_cast<int>(entries->size()) <= config.max_phrases);

  const u2::HotwordCompiler compiler(u2::fuzz::DemoSymbols(), config);
  auto graph = compiler.Compile(text);
  if (!graph.ok() || *graph == nullptr) return 0;
  U2_FUZZ_CHECK(entries.ok());
  const u2::ContextGraph& g = **graph;
  U2_FUZZ_CHECK(g.num_phrases() >= 1 && g.num_phrases() <= static_cast<int>(entries->size()));
  // Each phrase's tokens walk the graph from its start; the cached graph is the same one.
  for (const auto& e : *entries) {
    auto tokens = u2::fuzz::DemoSymbols().Tokenize(e.phrase);
    if (!tokens.ok()) continue;
    int32_t state = g.start(), next = 0;
    for (int t : *tokens) {
      (void)g.Step(state, t, &next);
      U2_FUZZ_CHECK(next >= 0 && next < g.num_nodes());
      state = next;
    }
    (void)g.FinalScore(state);
  }
  auto again = compiler.Compile(text);
  U2_FUZZ_CHECK(again.ok() && again->get() == graph->get());
  return 0;
}
