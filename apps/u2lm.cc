// u2lm: inspect and query an ARPA n-gram language model the way the decoder reads it.
//
//   u2lm --lm lm.arpa                        # order, n-gram counts, vocabulary, load time
//   u2lm --lm lm.arpa --score < sentences    # per sentence: total log10 P, then each word's
//   u2lm --lm lm.arpa --score --no-bos --no-eos < words
//
// Scores are log10, with "<s>" before and "</s>" after each sentence unless told otherwise,
// exactly as KenLM's Model.score / full_scores report them (tests/python/test_ngram_lm.py
// checks that).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "u2/decode/ngram_lm.h"

int main(int argc, char** argv) {
  CLI::App app{"u2lm: load an ARPA n-gram LM and score sentences with it"};
  std::string path;
  bool score = false, no_bos = false, no_eos = false;
  app.add_option("--lm", path, "ARPA file")->required();
  app.add_flag("--score", score, "score each line of stdin: 'total<TAB>word scores...'");
  app.add_flag("--no-bos", no_bos, "do not start sentences with <s>");
  app.add_flag("--no-eos", no_eos, "do not end sentences with </s>");
  CLI11_PARSE(app, argc, argv);

  const auto start = std::chrono::steady_clock::now();
  auto lm = u2::NgramLm::LoadArpa(path);
  if (!lm.ok()) {
    std::fprintf(stderr, "u2lm: %s\n", lm.status().ToString().c_str());
    return 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!score) {
    std::printf("order %d, vocabulary %d words, loaded in %.3f s\n", (*lm)->order(), (*lm)->vocab_size(),
                seconds);
    for (int n = 1; n <= (*lm)->order(); ++n)
      std::printf("  %d-grams: %lld\n", n, static_cast<long long>((*lm)->num_ngrams(n)));
    return 0;
  }
  std::string line;
  std::vector<float> per_word;
  while (std::getline(std::cin, line)) {
    const float total = (*lm)->ScoreSentence(line, !no_bos, !no_eos, &per_word);
    std::printf("%.6f", total);
    for (float s : per_word) std::printf("\t%.6f", s);
    std::printf("\n");
  }
  return 0;
}
