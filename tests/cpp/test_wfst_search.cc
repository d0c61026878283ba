// The WFST (TLG) search against an exhaustive oracle on small graphs, chunking, blank skipping,
// memory over long inputs, and malformed graphs and inputs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "u2/decode/ctc_wfst_search.h"
#include "u2/decode/decoding_graph.h"
#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Units: 0 blank, 1 "a", 2 "b", 3 "c". A tiny "TLG" (input labels = unit + 1): T's blank loops
// and repeats over a word loop of "ab" (word 1), "b" (word 2), "cab" (word 3), with LM costs.
// States: 0 start/final. Words spell through chains; every emitting state also loops on its
// own label (repeats) and on blank, as T composed in would give.
std::string TinyGraph() {
  std::ostringstream g;
  // From 0: blank loop; "a" starts "ab" (cost 0.5, word on the first arc), "b" is word 2
  // (cost 1.2), "c" starts "cab" (cost 0.3).
  g << "0 0 1 0\n";
  g << "0 1 2 1 0.5\n";                // a -> 1 (ab)
  g << "1 1 2 0\n1 1 1 0\n1 2 1 0\n";  // repeat a, blank after a
  g << "1 3 3 0\n2 3 3 0\n";           // b after a (directly or after blank)
  g << "3 3 3 0\n3 0 1 0\n";           // repeat b; blank back to the loop
  g << "3 4 0 0 0.1\n";                // epsilon to the loop (cost 0.1) for a next word without blank
  g << "0 5 3 2 1.2\n";                // b -> word 2
  g << "5 5 3 0\n5 0 1 0\n5 4 0 0 0.1\n";
  g << "0 6 4 3 0.3\n";  // c -> cab
  g << "6 6 4 0\n6 7 1 0\n6 8 2 0\n7 8 2 0\n8 8 2 0\n8 9 1 0\n8 10 3 0\n9 10 3 0\n";
  g << "10 10 3 0\n10 0 1 0\n10 4 0 0 0.1\n";
  // State 4: after a word without a blank; the next word must start with a different label
  // (here simply: any word start), like T's direct token-to-token arcs.
  g << "4 1 2 1 0.5\n4 5 3 2 1.2\n4 6 4 3 0.3\n";
  g << "0\n3 0.2\n5 0.2\n10 0.2\n";
  return g.str();
}

std::shared_ptr<const DecodingGraph> Graph(const std::string& text = TinyGraph()) {
  auto g = DecodingGraph::FromText(text, {"<eps>", "ab", "b", "cab"}, 4);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return *g;
}

std::vector<float> RandomLogProbs(int frames, int vocab, uint32_t seed, float peak = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.5f);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  std::vector<float> out(static_cast<size_t>(frames) * vocab);
  for (int t = 0; t < frames; ++t) {
    float* row = out.data() + static_cast<size_t>(t) * vocab;
    const int hot = pick(rng);
    float mx = -kInf;
    for (int v = 0; v < vocab; ++v) {
      row[v] = noise(rng) + (v == hot ? peak : 0.0f);
      mx = std::max(mx, row[v]);
    }
    float sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    for (int v = 0; v < vocab; ++v) row[v] -= mx + std::log(sum);
  }
  return out;
}

// The oracle: the cheapest (graph cost - acoustic log-prob) over every path of the graph that
// consumes exactly `frames` labels, by exhaustive enumeration of label sequences; for each
// sequence the cheapest graph path reading it (epsilons allowed), found by a shortest-path
// relaxation over (position, state) with no pruning. Returns the cost and the tokens it emits.
struct OracleResult {
  float cost = kInf;
  std::vector<int> tokens;
};

OracleResult Oracle(const std::string& text, const std::vector<float>& logp, int frames, int vocab) {
  // Parse arcs again here (independently of DecodingGraph).
  struct A {
    int from, to, il, ol;
    float w;
  };
  std::vector<A> arcs;
  std::map<int, float> finals;
  std::istringstream in(text);
  std::string line;
  int start = -1, num_states = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::vector<double> v;
    double x;
    while (f >> x) v.push_back(x);
    if (v.empty()) continue;
    if (start < 0) start = static_cast<int>(v[0]);
    num_states = std::max(num_states, static_cast<int>(v[0]) + 1);
    if (v.size() <= 2) {
      finals[static_cast<int>(v[0])] = v.size() == 2 ? static_cast<float>(v[1]) : 0.0f;
    } else {
      arcs.push_back({static_cast<int>(v[0]), static_cast<int>(v[1]), static_cast<int>(v[2]),
                      static_cast<int>(v[3]), v.size() == 5 ? static_cast<float>(v[4]) : 0.0f});
      num_states = std::max(num_states, static_cast<int>(v[1]) + 1);
    }
  }
  OracleResult best;
  std::vector<int> labels(static_cast<size_t>(frames), 1);
  const long total = static_cast<long>(std::pow(vocab, frames));
  for (long code = 0; code < total; ++code) {
    long c = code;
    float acoustic = 0;
    for (int t = 0; t < frames; ++t) {
      labels[static_cast<size_t>(t)] = static_cast<int>(c % vocab) + 1;
      acoustic += logp[static_cast<size_t>(t) * vocab + (c % vocab)];
      c /= vocab;
    }
    // dist[state] after consuming t labels, with epsilon closure (Bellman-Ford style).
    std::vector<float> dist(static_cast<size_t>(num_states), kInf);
    dist[static_cast<size_t>(start)] = 0;
    auto closure = [&]() {
      for (int it = 0; it < num_states; ++it) {
        bool changed = false;
        for (const A& a : arcs) {
          if (a.il == 0 && dist[static_cast<size_t>(a.from)] + a.w < dist[static_cast<size_t>(a.to)]) {
            dist[static_cast<size_t>(a.to)] = dist[static_cast<size_t>(a.from)] + a.w;
            changed = true;
          }
        }
        if (!changed) break;
      }
    };
    closure();
    for (int t = 0; t < frames; ++t) {
      std::vector<float> next(static_cast<size_t>(num_states), kInf);
      for (const A& a : arcs) {
        if (a.il == labels[static_cast<size_t>(t)] &&
            dist[static_cast<size_t>(a.from)] + a.w < next[static_cast<size_t>(a.to)])
          next[static_cast<size_t>(a.to)] = dist[static_cast<size_t>(a.from)] + a.w;
      }
      dist.swap(next);
      closure();
    }
    for (const auto& [s, fw] : finals) {
      const float cost = dist[static_cast<size_t>(s)] + fw - acoustic;
      if (cost < best.cost) {
        best.cost = cost;
        // CTC collapse of the labels.
        best.tokens.clear();
        int prev = 1;
        for (int l : labels) {
          if (l != 1 && l != prev) best.tokens.push_back(l - 1);
          prev = l;
        }
      }
    }
  }
  return best;
}

CtcWfstSearchConfig ExactConfig() {
  CtcWfstSearchConfig c;
  c.beam = 1000;
  c.max_active = 100000;
  c.min_active = 0;
  c.blank_skip_threshold = 2.0f;  // never skip
  c.nbest = 5;
  c.lm.lm_weight = 1.0f;
  return c;
}

TEST(WfstSearch, BestPathEqualsExhaustiveOracle) {
  const auto graph = Graph();
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    const int frames = 4 + static_cast<int>(seed % 4);  // 4..7 frames: 4^7 = 16384 sequences
    const auto logp = RandomLogProbs(frames, 4, seed);
    CtcWfstSearch search(graph, ExactConfig());
    ASSERT_TRUE(search.Search({logp.data(), frames, 4}).ok());
    const auto nbest = search.NBest();
    const OracleResult oracle = Oracle(TinyGraph(), logp, frames, 4);
    if (!std::isfinite(oracle.cost)) {
      // No complete path: the search falls back to its unfinished tokens (or has none).
      continue;
    }
    ASSERT_FALSE(nbest.empty()) << seed;
    EXPECT_NEAR(-nbest[0].FusedScore(), oracle.cost, 1e-4) << "seed " << seed;
    EXPECT_EQ(nbest[0].tokens, oracle.tokens) << "seed " << seed;
    // Scores are consistent: FusedScore = acoustic + lm part; n-best sorted.
    for (size_t i = 1; i < nbest.size(); ++i) EXPECT_GE(nbest[i - 1].FusedScore(), nbest[i].FusedScore());
  }
}

TEST(WfstSearch, ChunkedEqualsWhole) {
  const auto graph = Graph();
  const int frames = 60;
  const auto logp = RandomLogProbs(frames, 4, 77);
  CtcWfstSearchConfig config = ExactConfig();
  config.beam = 12;
  CtcWfstSearch whole(graph, config);
  ASSERT_TRUE(whole.Search({logp.data(), frames, 4}).ok());
  for (int chunk : {1, 7, 16}) {
    CtcWfstSearch chunked(graph, config);
    for (int t = 0; t < frames; t += chunk) {
      const int n = std::min(chunk, frames - t);
      ASSERT_TRUE(chunked.Search({logp.data() + static_cast<size_t>(t) * 4, n, 4}).ok());
    }
    const auto a = whole.NBest(), b = chunked.NBest();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].tokens, b[i].tokens);
      EXPECT_FLOAT_EQ(a[i].FusedScore(), b[i].FusedScore());
      EXPECT_EQ(a[i].times, b[i].times);
    }
  }
}

// Posteriors that spell `labels` (one per frame, 0 = blank) with probability 0.999.
std::vector<float> Spell(const std::vector<int>& labels, int vocab) {
  std::vector<float> out(labels.size() * vocab, std::log(0.001f / static_cast<float>(vocab - 1)));
  for (size_t t = 0; t < labels.size(); ++t) out[t * vocab + labels[t]] = std::log(0.999f);
  return out;
}

TEST(WfstSearch, BlankSkippingKeepsRepeatsApartAndTheResult) {
  const auto graph = Graph();
  // "b", blanks, "b": two words "b b" (the blank run separates the repeated label).
  const std::vector<int> frames = {0, 2, 2, 0, 0, 0, 0, 2, 0, 0};
  const auto logp = Spell(frames, 4);
  CtcWfstSearchConfig skip = ExactConfig();
  skip.blank_skip_threshold = 0.98f;
  CtcWfstSearch with_skip(graph, skip), without(graph, ExactConfig());
  ASSERT_TRUE(with_skip.Search({logp.data(), static_cast<int>(frames.size()), 4}).ok());
  ASSERT_TRUE(without.Search({logp.data(), static_cast<int>(frames.size()), 4}).ok());
  EXPECT_EQ(with_skip.NBest()[0].tokens, (std::vector<int>{2, 2}));
  EXPECT_EQ(without.NBest()[0].tokens, (std::vector<int>{2, 2}));
  EXPECT_EQ(with_skip.NBest()[0].times, (std::vector<int>{1, 7}));
  EXPECT_EQ(with_skip.num_frames_decoded(), 10);
}

TEST(WfstSearch, OnlyWordsOfTheGraphComeOut) {
  const auto graph = Graph();
  // "a c" is no word sequence of the graph; the search must still spell words ("ab", "cab", "b").
  const auto logp = Spell({1, 1, 0, 3, 3, 0}, 4);
  CtcWfstSearch search(graph, ExactConfig());
  ASSERT_TRUE(search.Search({logp.data(), 6, 4}).ok());
  const auto nbest = search.NBest();
  ASSERT_FALSE(nbest.empty());
  for (const auto& h : nbest) {
    // Every complete hypothesis decomposes into the graph's words.
    std::vector<int> t = h.tokens;
    size_t i = 0;
    while (i < t.size()) {
      if (i + 1 < t.size() && t[i] == 1 && t[i + 1] == 2)
        i += 2;
      else if (t[i] == 2)
        i += 1;
      else if (i + 2 < t.size() && t[i] == 3 && t[i + 1] == 1 && t[i + 2] == 2)
        i += 3;
      else
        FAIL() << "not a word sequence";
    }
  }
}

TEST(WfstSearch, LongInputsKeepFlatMemoryAndWork) {
  const auto graph = Graph();
  CtcWfstSearchConfig config = ExactConfig();
  config.beam = 10;
  CtcWfstSearch search(graph, config);
  for (int chunk = 0; chunk < 100; ++chunk) {
    const auto logp = RandomLogProbs(500, 4, 1000 + static_cast<uint32_t>(chunk));
    ASSERT_TRUE(search.Search({logp.data(), 500, 4}).ok());
  }
  EXPECT_EQ(search.num_frames_decoded(), 50000);
  EXPECT_FALSE(search.NBest().empty());
  EXPECT_LE(search.num_active(), 5 * 11);  // nbest histories per state
}

TEST(WfstSearch, BadInputsAreErrors) {
  const auto graph = Graph();
  CtcWfstSearch search(graph, ExactConfig());
  const auto logp = RandomLogProbs(3, 4, 1);
  EXPECT_FALSE(search.Search({logp.data(), 3, 3}).ok());  // fewer log-probs than the graph's labels
  EXPECT_FALSE(search.Search({nullptr, 3, 4}).ok());      // no data
  ASSERT_TRUE(search.Search({logp.data(), 3, 4}).ok());
  std::vector<float> wider(3 * 5, -1.0f);
  EXPECT_FALSE(search.Search({wider.data(), 3, 5}).ok());  // vocab changed mid-utterance
  CtcWfstSearchConfig bad = ExactConfig();
  bad.beam = -1;
  CtcWfstSearch invalid(graph, bad);
  EXPECT_FALSE(invalid.Search({logp.data(), 3, 4}).ok());
  CtcWfstSearch no_graph(nullptr, ExactConfig());
  EXPECT_FALSE(no_graph.Search({logp.data(), 3, 4}).ok());
  EXPECT_TRUE(no_graph.NBest().empty());
}

TEST(DecodingGraph, MalformedGraphsAreErrors) {
  EXPECT_FALSE(DecodingGraph::FromText("0 1 9 0\n1\n", {"<eps>"}, 4).ok());  // label beyond the units
  EXPECT_FALSE(DecodingGraph::FromText("0 1 1 5\n1\n", {"<eps>"}, 4).ok());  // word not in the list
  EXPECT_FALSE(DecodingGraph::FromText("", {"<eps>"}, 4).ok());              // empty
  EXPECT_FALSE(DecodingGraph::FromText("0 1 x\n", {"<eps>"}, 4).ok());       // not numbers
  EXPECT_FALSE(DecodingGraph::FromText("0 1 1\n", {"<eps>"}, 4).ok());       // 3 fields
}

TEST(DecodingGraph, LoadRefusesMissingOrForeignFiles) {
  auto units = SymbolTable::FromText("<blank> 0\na 1\nb 2\nc 3\n");
  ASSERT_TRUE(units.ok());
  const auto dir = std::filesystem::temp_directory_path() / ("u2_tlg_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto status = DecodingGraph::Load(dir.string(), *units).status();
  EXPECT_FALSE(status.ok());  // no words.txt
  std::ofstream(dir / "words.txt") << "<eps> 0\nab 1\n";
  status = DecodingGraph::Load(dir.string(), *units).status();
  EXPECT_NE(status.ToString().find("cannot open decoding graph"), std::string::npos) << status.ToString();
  std::ofstream(dir / "TLG.fst") << "this is not an fst";
  status = DecodingGraph::Load(dir.string(), *units).status();
  EXPECT_NE(status.ToString().find("not an OpenFst binary file"), std::string::npos) << status.ToString();
  {
    std::ofstream f(dir / "TLG.fst", std::ios::binary);
    const int32_t magic = 2125659606;
    f.write(reinterpret_cast<const char*>(&magic), 4);
    f << "truncated";
  }
  status = DecodingGraph::Load(dir.string(), *units).status();
  EXPECT_NE(status.ToString().find("damaged OpenFst header"), std::string::npos) << status.ToString();
  std::ofstream(dir / "units.txt") << "<blank> 0\nx 1\nb 2\nc 3\n";
  status = DecodingGraph::Load(dir.string(), *units).status();
  EXPECT_NE(status.ToString().find("built for another model"), std::string::npos) << status.ToString();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace u2

namespace u2 {
namespace {

// Frame 0 is "c" (0.3) or blank (0.7), then a clear "a", "b": without hotwords "ab" wins.
std::vector<float> AmbiguousCab() {
  const float other = std::log(0.0005f);
  std::vector<float> x = {std::log(0.7f),
                          other,
                          other,
                          std::log(0.3f),  //
                          other,
                          std::log(0.999f),
                          other,
                          other,  //
                          other,
                          other,
                          std::log(0.999f),
                          other};
  return x;
}

std::vector<CtcHypothesis> DecodeWith(std::shared_ptr<const ContextGraph> context) {
  CtcWfstSearchConfig c = ExactConfig();
  c.context = std::move(context);
  CtcWfstSearch search(Graph(), c);
  const auto logp = AmbiguousCab();
  EXPECT_TRUE(search.Search({logp.data(), 3, 4}).ok());
  return search.NBest();
}

TEST(WfstSearch, AHotwordFlipsTheBestPath) {
  const auto plain = DecodeWith(nullptr);
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain[0].tokens, (std::vector<int>{1, 2}));  // "ab"
  const std::vector<ContextPhrase> phrases = {{{3, 1, 2}, 1.0f}};
  auto graph = ContextGraph::Build(phrases);
  ASSERT_TRUE(graph.ok());
  const auto biased = DecodeWith(*graph);
  ASSERT_FALSE(biased.empty());
  EXPECT_EQ(biased[0].tokens, (std::vector<int>{3, 1, 2}));  // "cab"
  EXPECT_NEAR(biased[0].context_score, 3.0f, 1e-5);
  EXPECT_NEAR(biased[0].FusedScore(), biased[0].score + biased[0].lm_score + 3.0f, 1e-5);
}

TEST(WfstSearch, AnUnfinishedHotwordLeavesTheResultAlone) {
  const auto plain = DecodeWith(nullptr);
  // "c b" is never completed on these frames: its bonus on "c" is given back.
  const std::vector<ContextPhrase> phrases = {{{3, 2}, 5.0f}};
  auto graph = ContextGraph::Build(phrases);
  ASSERT_TRUE(graph.ok());
  const auto biased = DecodeWith(*graph);
  ASSERT_FALSE(biased.empty());
  EXPECT_EQ(biased[0].tokens, plain[0].tokens);
  EXPECT_NEAR(biased[0].FusedScore(), plain[0].FusedScore(), 1e-4);
  EXPECT_NEAR(biased[0].context_score, 0.0f, 1e-5);
}

}  // namespace
}  // namespace u2
