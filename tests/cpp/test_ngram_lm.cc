// The ARPA n-gram LM: hand-computed back-off probabilities, states, unknown words, and every kind
// of malformed file. (tests/python/test_ngram_lm.py checks it against KenLM on a trained LM.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "u2/decode/ngram_lm.h"

namespace u2 {
namespace {

// A 3-gram LM small enough to check by hand.
constexpr const char* kArpa = R"(some toolkit's header line
\data\
ngram 1=5
ngram 2=4
ngram 3=1

\1-grams:
-1.0	<s>	-0.5
-0.7	</s>
-0.5	a	-0.3
-0.9	b	-0.2
-1.2	<unk>

\2-grams:
-0.2	<s> a	-0.1
-0.4	a b
-0.1	b </s>
-0.6	b a	-0.25

\3-grams:
-0.05	<s> a b

\end\
)";

std::shared_ptr<const NgramLm> Load(const std::string& text = kArpa) {
  auto lm = NgramLm::FromArpaText(text, "test.arpa");
  EXPECT_TRUE(lm.ok()) << lm.status().ToString();
  return lm.ok() ? *lm : nullptr;
}

float Score(const NgramLm& lm, const NgramLm::State& s, const char* word, NgramLm::State* next = nullptr) {
  NgramLm::State unused;
  return lm.Score(s, lm.WordId(word), next ? next : &unused);
}

TEST(NgramLm, ReadsCountsAndVocabulary) {
  const auto lm = Load();
  ASSERT_TRUE(lm);
  EXPECT_EQ(lm->order(), 3);
  EXPECT_EQ(lm->num_ngrams(1), 5);
  EXPECT_EQ(lm->num_ngrams(2), 4);
  EXPECT_EQ(lm->num_ngrams(3), 1);
  EXPECT_EQ(lm->num_ngrams(4), 0);
  EXPECT_EQ(lm->vocab_size(), 5);
  EXPECT_EQ(lm->Word(lm->WordId("b")), "b");
  EXPECT_EQ(lm->WordId("never-seen"), lm->unk_id());
}

TEST(NgramLm, HandComputedBackOff) {
  const auto lm = Load();
  ASSERT_TRUE(lm);
  const NgramLm::State bos = lm->BeginSentence();
  NgramLm::State s1, s2;
  // Listed bigram.
  EXPECT_FLOAT_EQ(Score(*lm, bos, "a", &s1), -0.2f);
  // Listed trigram <s> a b.
  EXPECT_FLOAT_EQ(Score(*lm, s1, "b", &s2), -0.05f);
  // a b </s>: no trigram; context "a b" is listed without a back-off (0), so P(</s> | b) = -0.1.
  EXPECT_FLOAT_EQ(Score(*lm, s2, "</s>"), -0.1f);
  // <s> b: bo(<s>) + P(b) = -0.5 - 0.9.
  EXPECT_FLOAT_EQ(Score(*lm, bos, "b"), -1.4f);
  // a b a: no "a b a", no "b a"? "b a" is listed: bo("a b") (0) + P(a | b) = -0.6.
  EXPECT_FLOAT_EQ(Score(*lm, s2, "a"), -0.6f);
  // <s> a a: bo(<s> a) -0.1 + bo(a) -0.3 + P(a) -0.5 (no "a a", no "<s> a a").
  EXPECT_FLOAT_EQ(Score(*lm, s1, "a"), -0.9f);
  // An unknown word is <unk>: bo(<s> a) + bo(a) + P(<unk>).
  EXPECT_FLOAT_EQ(Score(*lm, s1, "zebra"), -0.1f - 0.3f - 1.2f);
  // The null context reads unigrams.
  EXPECT_FLOAT_EQ(Score(*lm, NgramLm::NullContext(), "b"), -0.9f);
}

TEST(NgramLm, StateKeepsTheLastOrderMinusOneWords) {
  const auto lm = Load();
  ASSERT_TRUE(lm);
  NgramLm::State s = lm->BeginSentence();
  for (const char* w : {"a", "b", "a", "b"}) Score(*lm, s, w, &s);
  ASSERT_EQ(s.length, 2);
  EXPECT_EQ(s.words[0], lm->WordId("a"));
  EXPECT_EQ(s.words[1], lm->WordId("b"));
  // Equal histories give equal states, whatever came before them.
  NgramLm::State t = lm->BeginSentence();
  for (const char* w : {"b", "b", "a", "b"}) Score(*lm, t, w, &t);
  EXPECT_TRUE(s == t);
}

TEST(NgramLm, ScoreSentenceAddsBosAndEos) {
  const auto lm = Load();
  ASSERT_TRUE(lm);
  std::vector<float> per_word;
  // <s> a b </s>: -0.2 - 0.05 - 0.1.
  EXPECT_NEAR(lm->ScoreSentence("a b", true, true, &per_word), -0.35, 1e-6);
  ASSERT_EQ(per_word.size(), 3u);
  EXPECT_NEAR(per_word[2], -0.1, 1e-6);
  // No <s>: P(a) + P(b | a) = -0.5 - 0.4; no </s>.
  EXPECT_NEAR(lm->ScoreSentence("a  b", false, false), -0.9, 1e-6);
  // Empty sentence: P(</s> | <s>) = bo(<s>) + P(</s>) = -0.5 - 0.7.
  EXPECT_NEAR(lm->ScoreSentence("", true, true), -1.2, 1e-6);
}

TEST(NgramLm, MissingUnkIsAddedWithKenLmsValue) {
  std::string arpa = "\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-0.3\tx\n\n\\end\\\n";
  const auto lm = Load(arpa);
  ASSERT_TRUE(lm);
  EXPECT_EQ(lm->vocab_size(), 4);
  EXPECT_FLOAT_EQ(Score(*lm, lm->BeginSentence(), "y"), -100.0f);
  EXPECT_FLOAT_EQ(Score(*lm, lm->BeginSentence(), "x"), -0.3f);  // unigram LM: no context
}

TEST(NgramLm, AcceptsCrlfAndNoBlankBeforeSections) {
  std::string arpa = "\\data\\\r\nngram 1=3\r\n\\1-grams:\r\n-1 <s>\r\n-0.5 </s>\r\n-0.3 x\r\n\\end\\\r\n";
  EXPECT_TRUE(Load(arpa));
}

// Each malformed file gives InvalidArgument with the line and what is wrong.
struct BadArpa {
  const char* name;
  std::string text;
  const char* message;
};

TEST(NgramLm, MalformedFilesAreClearErrors) {
  const std::string head = "\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n";
  const std::vector<BadArpa> cases = {
      {"empty", "", "no \\data\\"},
      {"no counts", "\\data\\\n\n\\1-grams:\n", "lists no n-gram counts"},
      {"zero unigrams", "\\data\\\nngram 1=0\n\n\\1-grams:\n\n\\end\\\n", "empty"},
      {"bad count line", "\\data\\\nngram one=3\n", "bad n-gram count"},
      {"counts out of order", "\\data\\\nngram 2=3\n", "in order"},
      {"order too high",
       "\\data\\\nngram 1=1\nngram 2=1\nngram 3=1\nngram 4=1\nngram 5=1\nngram 6=1\nngram 7=1\nngram "
       "8=1\nngram "
       "9=1\n",
       "above the supported"},
      {"fewer entries", head + "\n\\end\\\n", "has 2 entries but \\data\\ announced 3"},
      {"more entries", head + "-0.3\tx\n-0.2\ty\n\\end\\\n", "more entries"},
      {"bad number", head + "-0.3x\tx\n\\end\\\n", "bad log-probability"},
      {"nan", head + "nan\tx\n\\end\\\n", "bad log-probability"},
      {"positive", head + "0.5\tx\n\\end\\\n", "positive log-probability"},
      {"bad backoff", "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<s>\t-x\n", "bad back-off"},
      {"backoff on highest", head + "-0.3\tx\t-0.1\n\\end\\\n", "highest order"},
      {"too few fields", head + "-0.3\n\\end\\\n", "needs a log-probability"},
      {"missing section",
       "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-0.3\tx\n\n\\end\\\n",
       "expected \\2-grams:"},
      {"missing end", head + "-0.3\tx\n", "missing \\end\\"},
      {"unknown word in bigram",
       "\\data\\\nngram 1=3\nngram "
       "2=1\n\n\\1-grams:\n-1\t<s>\t-0.1\n-0.5\t</s>\n-0.3\tx\n\n\\2-grams:\n-0.1\t<s> "
       "q\n\n\\end\\\n",
       "is not a 1-gram"},
      {"duplicate unigram", head + "-0.3\t<s>\n\\end\\\n", "duplicate 1-gram"},
      {"duplicate bigram",
       "\\data\\\nngram 1=3\nngram "
       "2=2\n\n\\1-grams:\n-1\t<s>\t-0.1\n-0.5\t</s>\n-0.3\tx\n\n\\2-grams:\n-0.1\t<s> "
       "x\n-0.2\t<s> x\n\n\\end\\\n",
       "duplicate 2-gram"},
      {"no <s>", "\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\t</s>\n-0.3\tx\n\n\\end\\\n", "no <s>"},
      {"no </s>", "\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\t<s>\n-0.3\tx\n\n\\end\\\n", "no </s>"},
  };
  for (const BadArpa& c : cases) {
    auto lm = NgramLm::FromArpaText(c.text, "bad.arpa");
    ASSERT_FALSE(lm.ok()) << c.name;
    EXPECT_EQ(lm.status().code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(lm.status().message().find(c.message), std::string::npos)
        << c.name << ": " << lm.status().message();
    EXPECT_NE(lm.status().message().find("bad.arpa"), std::string::npos) << c.name;
  }
}

TEST(NgramLm, MissingFileIsNotFound) {
  auto lm = NgramLm::LoadArpa("/nonexistent/lm.arpa");
  ASSERT_FALSE(lm.ok());
  EXPECT_EQ(lm.status().code(), StatusCode::kNotFound);
}

// Found by fuzz/arpa_fuzzer: the \data\ counts were reserved as given, so a 60-byte file
// announcing 2^31 n-grams per order asked for ~150 GB (std::bad_alloc, or the OOM killer) before
// the missing entries were noticed. Now the reservation follows the input's size.
TEST(NgramLm, HugeCountsInATinyFileAreAnErrorNotAnAllocation) {
  const std::string text =
      "\\data\\\nngram 1=2147483648\nngram 2=2147483648\nngram 3=2147483648\n\n\\1-grams:\n-1\t<s>\n"
      "-1\t</s>\n\n\\end\\\n";
  auto lm = NgramLm::FromArpaText(text, "huge.arpa");
  ASSERT_FALSE(lm.ok());
  EXPECT_EQ(lm.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(lm.status().message().find("announced 2147483648"), std::string::npos) << lm.status().message();

  // The same from a file, whose size bounds the reservation.
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("u2_test_huge_" + std::to_string(::getpid()) + ".arpa");
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  auto from_file = NgramLm::LoadArpa(path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(from_file.ok());
  EXPECT_EQ(from_file.status().code(), StatusCode::kInvalidArgument);
}

TEST(NgramLm, PrunedContextsBackOffWithZeroWeight) {
  // "x y z" is listed but its context "x y" is not (an SRILM-pruned file): P(z | x y) reads the
  // trigram, and any other word after "x y" backs off with weight 0 from "x y".
  const std::string arpa =
      "\\data\\\nngram 1=5\nngram 2=1\nngram "
      "3=1\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-0.3\tx\t-0.2\n-0.4\ty\t-0."
      "1\n-0.6\tz\n\n\\2-grams:\n-0.2\tx z\n\n\\3-grams:\n-0.01\tx y z\n\n\\end\\\n";
  const auto lm = Load(arpa);
  ASSERT_TRUE(lm);
  NgramLm::State s = NgramLm::NullContext();
  Score(*lm, s, "x", &s);
  Score(*lm, s, "y", &s);
  EXPECT_FLOAT_EQ(Score(*lm, s, "z"), -0.01f);
  // After "x y", "x": bo("x y") = 0, no "y x", bo(y) -0.1 + P(x) -0.3.
  EXPECT_FLOAT_EQ(Score(*lm, s, "x"), -0.4f);
}

}  // namespace
}  // namespace u2
