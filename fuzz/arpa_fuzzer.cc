// ARPA language models (NgramLm::FromArpaText: the reader LoadArpa runs on a file), then queries
// on an accepted model: sentence scores over its own words and unknown ones, state by state.
#include <string>

#include "fuzz_support.h"
#include "u2/decode/ngram_lm.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  u2::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto lm = u2::NgramLm::FromArpaText(u2::fuzz::AsText(data, size), "fuzz.arpa");
  if (!lm.ok()) return 0;
  const u2::NgramLm& m = **lm;
  U2_FUZZ_CHECK(m.order() >= 1 && m.order() <= u2::NgramLm::kMaxOrder);
  U2_FUZZ_CHECK(m.unk_id() >= 0 && m.bos_id() >= 0 && m.eos_id() >= 0);
  // A sentence of the model's first words (and an unknown one), longer than the order.
  std::string sentence;
  const int words = std::min(m.vocab_size(), 12);
  for (int i = 0; i < words; ++i) sentence += m.Word(i) + " ";
  sentence += "no-such-word-in-the-lm";
  std::vector<float> per_word;
  (void)m.ScoreSentence(sentence, true, true, &per_word);
  (void)m.ScoreSentence(sentence, false, false);
  u2::NgramLm::State state = m.BeginSentence(), next;
  for (int i = 0; i < 3 * u2::NgramLm::kMaxOrder; ++i) {
    (void)m.Score(state, static_cast<int32_t>(i % m.vocab_size()), &next);
    U2_FUZZ_CHECK(next.length >= 0 && next.length < u2::NgramLm::kMaxOrder);
    state = next;
  }
  return 0;
}
