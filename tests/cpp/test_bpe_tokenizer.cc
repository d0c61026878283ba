// Text -> BPE pieces -> ids (decode/bpe_tokenizer.h through SymbolTable::Tokenize, as hotwords and
// LMs use it) exactly as WeNet's BpeTokenizer: every case of tests/data/bpe/cases.tsv and
// cases_no_syms.tsv, which tools/make_bpe_fixture.py computes with WeNet's rules and the Python
// sentencepiece module (test_convert_bpe.py re-runs that oracle). The sentencepiece module is
// checked in both isolations; a missing or broken model, symbols file or module is a clear error.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/sanitized.h"
#include "u2/decode/bpe_tokenizer.h"
#include "u2/decode/ngram_lm.h"
#include "u2/decode/symbol_table.h"
#include "u2/decode/word_lm.h"
#include "u2/engine/hotwords.h"

namespace u2 {
namespace {

using Isolation = BpeTokenizerOptions::Isolation;

const std::string kBpeDir = std::string(U2_TEST_DATA_DIR) + "/bpe";
const std::string kModel = kBpeDir + "/bpe.model";
const std::string kSymbols = kBpeDir + "/non_lang_syms.txt";

struct Case {
  std::string text;
  std::vector<int> ids;  // expected, or
  std::string missing;   // the first piece WeNet would read as <unk>
};

std::vector<Case> ReadCases(const std::string& name) {
  std::ifstream in(kBpeDir + "/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) {
      ADD_FAILURE() << name << ": no tab in '" << line << "'";
      continue;
    }
    Case c;
    c.text = line.substr(0, tab);
    const std::string result = line.substr(tab + 1);
    if (!result.empty() && result[0] == '!') {
      c.missing = result.substr(1);
    } else {
      std::istringstream ids(result);
      for (int id; ids >> id;) c.ids.push_back(id);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

StatusOr<SymbolTable> BpeTable(bool with_symbols, Isolation isolation = Isolation::kAuto) {
  U2_ASSIGN_OR_RETURN(SymbolTable table, SymbolTable::Load(kBpeDir + "/units.txt"));
  BpeTokenizerOptions options;
  if (with_symbols) options.non_lang_syms = kSymbols;
  options.isolation = isolation;
  U2_ASSIGN_OR_RETURN(std::shared_ptr<const BpeTokenizer> bpe, BpeTokenizer::Load(kModel, options));
  table.SetBpeTokenizer(std::move(bpe));
  return table;
}

void ExpectWeNet(const SymbolTable& table, const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    const auto ids = table.Tokenize(c.text);
    if (c.missing.empty()) {
      ASSERT_TRUE(ids.ok()) << "'" << c.text << "': " << ids.status().ToString();
      EXPECT_EQ(*ids, c.ids) << "'" << c.text << "'";
    } else {
      ASSERT_FALSE(ids.ok()) << "'" << c.text << "' should name '" << c.missing << "'";
      EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(ids.status().message().find("'" + c.missing + "' in '" + c.text + "'"), std::string::npos)
          << ids.status().message();
    }
  }
}

class BpeTokenizerIsolation : public ::testing::TestWithParam<Isolation> {
 protected:
  void SetUp() override {
    if (SANITIZED && GetParam() == Isolation::kDeepBind)
      GTEST_SKIP() << "the sanitizers end the process on RTLD_DEEPBIND";
  }
};

TEST_P(BpeTokenizerIsolation, EveryWeNetCaseWithSymbols) {
  const auto cases = ReadCases("cases.tsv");
  ASSERT_GE(cases.size(), 35u);
  auto table = BpeTable(true, GetParam());
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ExpectWeNet(*table, cases);
}

TEST_P(BpeTokenizerIsolation, EveryWeNetCaseWithoutSymbols) {
  const auto cases = ReadCases("cases_no_syms.tsv");
  ASSERT_GE(cases.size(), 5u);
  auto table = BpeTable(false, GetParam());
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ExpectWeNet(*table, cases);
}

INSTANTIATE_TEST_SUITE_P(Module, BpeTokenizerIsolation,
                         ::testing::Values(Isolation::kDeepBind, Isolation::kNamespace),
                         [](const ::testing::TestParamInfo<Isolation>& info) {
                           return info.param == Isolation::kDeepBind ? "DeepBind" : "Namespace";
                         });

TEST(BpeTokenizer, PiecesOfMixedText) {
  BpeTokenizerOptions options;
  options.non_lang_syms = kSymbols;
  auto bpe = BpeTokenizer::Load(kModel, options);
  ASSERT_TRUE(bpe.ok()) << bpe.status().ToString();
  // CJK characters stand alone, English is upper-cased and encoded, symbols stay whole.
  auto pieces = (*bpe)->Pieces("你好 it's okay<noise>的");
  ASSERT_TRUE(pieces.ok()) << pieces.status().ToString();
  const std::vector<std::string> expected = {"你", "好", "▁IT", "'", "S", "▁OKAY", "<NOISE>", "的"};
  EXPECT_EQ(*pieces, expected);
  EXPECT_FALSE((*bpe)->module_path().empty());
}

TEST(BpeTokenizer, BlankTextHasNoPiecesAndNothingToTokenize) {
  auto table = BpeTable(true);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  auto pieces = table->bpe_tokenizer()->Pieces(" \t\u3000 ");
  ASSERT_TRUE(pieces.ok()) << pieces.status().ToString();
  EXPECT_TRUE(pieces->empty());
  auto ids = table->Tokenize("   ");
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("nothing to tokenize"), std::string::npos) << ids.status().message();
}

TEST(BpeTokenizer, TextThatIsNotUtf8IsRefused) {
  auto table = BpeTable(true);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  for (const std::string bad : {"hello \xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"}) {
    auto ids = table->Tokenize(bad);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("not UTF-8"), std::string::npos) << ids.status().message();
  }
}

TEST(BpeTokenizer, ThreadsShareOneTokenizer) {
  auto table = BpeTable(true);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const std::vector<int> expected = {110, 111, 77, 2, 44, 86, 112};
  std::vector<int> wrong(8, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto ids = table->Tokenize("你好 it's okay 的");
        if (!ids.ok() || *ids != expected) ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
}

// ---- Where the engine spells text: hotword lists and an LM's words.

TEST(BpeTokenizerUse, HotwordsAreSpelledAsWeNetDoes) {
  auto table = BpeTable(true);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const HotwordCompiler compiler(*table, HotwordsConfig{});
  auto graph = compiler.Compile("hello world\n你好 <noise>:3\n");
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  ASSERT_TRUE(*graph);
  EXPECT_EQ((*graph)->num_phrases(), 2);
  // A piece without a unit is named.
  auto bad = compiler.Compile("hello, world");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("',' in 'hello, world'"), std::string::npos)
      << bad.status().message();
  // The greedy spelling, without the tokenizer, keeps the text's case: upper-case units lack 'h'.
  auto plain = SymbolTable::Load(kBpeDir + "/units.txt");
  ASSERT_TRUE(plain.ok());
  const HotwordCompiler greedy(*plain, HotwordsConfig{});
  EXPECT_FALSE(greedy.Compile("hello world").ok());
}

TEST(BpeTokenizerUse, LmWordsAreSpelledAsWeNetDoes) {
  auto table = BpeTable(true);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  auto arpa = [](const std::vector<std::string>& words) {
    std::string text = "\\data\\\nngram 1=" + std::to_string(words.size() + 3) +
                       "\n\n\\1-grams:\n-1\t<s>\n-0.5\t</s>\n-2\t<unk>\n";
    for (const std::string& w : words) text += "-0.3\t" + w + "\n";
    return text + "\n\\end\\\n";
  };
  auto upper = NgramLm::FromArpaText(arpa({"HELLO", "WORLD", "IT'S", "OKAY", "你好"}));
  ASSERT_TRUE(upper.ok()) << upper.status().ToString();
  auto lm = WordLm::Create(*upper, *table);
  EXPECT_TRUE(lm.ok()) << lm.status().ToString();
  // WeNet's pieces are upper-case: a lower-case LM's words would never match the transcripts.
  auto lower = NgramLm::FromArpaText(arpa({"hello", "world", "okay"}));
  ASSERT_TRUE(lower.ok()) << lower.status().ToString();
  lm = WordLm::Create(*lower, *table);
  ASSERT_FALSE(lm.ok());
  EXPECT_NE(lm.status().message().find("can be spelled"), std::string::npos) << lm.status().message();
}

// ---- Errors.

class BpeTokenizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("bpe_tokenizer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  static std::string ReadModel() {
    std::ifstream in(kModel, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::filesystem::path dir_;
};

TEST_F(BpeTokenizerErrors, MissingModel) {
  auto bpe = BpeTokenizer::Load(dir_.string() + "/bpe.model");
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bpe.status().message().find(dir_.string() + "/bpe.model"), std::string::npos);
  // A folder is no model either.
  bpe = BpeTokenizer::Load(dir_.string());
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kNotFound);
}

TEST_F(BpeTokenizerErrors, DamagedModels) {
  const std::string model = ReadModel();
  ASSERT_GT(model.size(), 100u);
  // Built by append: GCC 12 warns falsely (-Wrestrict) on `model + std::string(...)`.
  std::string self_test = model;
  self_test.append("\x22\x0c\x0a\x0a\x0a\x05HELLO\x12\x01X", 14);
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"junk.model", "not a sentencepiece model\n"},
           {"empty.model", ""},
           {"truncated.model", model.substr(0, model.size() / 2)},
           {"garbled.model", std::string(model.size(), '\xff')},
           // A model whose self-test fails: sentencepiece logs the failures (to std::cerr, which
           // the module must keep quiet, u2_sentencepiece.cc) and refuses it. Appended protobuf
           // field 4, self_test_data { samples { input: "HELLO" expected: "X" } }.
           {"self_test.model", self_test}}) {
    const std::string path = Write(name, bytes);
    auto bpe = BpeTokenizer::Load(path);
    ASSERT_FALSE(bpe.ok()) << name;
    EXPECT_EQ(bpe.status().code(), StatusCode::kInvalidArgument) << name;
    EXPECT_NE(bpe.status().message().find("bpe model " + path + ": sentencepiece cannot load it"),
              std::string::npos)
        << bpe.status().message();
    if (name == "self_test.model") {
      EXPECT_NE(bpe.status().message().find("Self-test failures"), std::string::npos)
          << bpe.status().message();
    }
  }
}

TEST_F(BpeTokenizerErrors, MissingSymbolsFile) {
  BpeTokenizerOptions options;
  options.non_lang_syms = dir_.string() + "/non_lang_syms.txt";
  auto bpe = BpeTokenizer::Load(kModel, options);
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bpe.status().message().find("non-language symbols " + options.non_lang_syms), std::string::npos)
      << bpe.status().message();
}

TEST_F(BpeTokenizerErrors, MissingOrWrongModule) {
  BpeTokenizerOptions options;
  options.module = dir_.string() + "/libu2_sentencepiece.so";
  auto bpe = BpeTokenizer::Load(kModel, options);
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bpe.status().message().find("sentencepiece module " + options.module + ": no such file"),
            std::string::npos)
      << bpe.status().message();
  // A file that is not a shared library.
  options.module = kModel;
  bpe = BpeTokenizer::Load(kModel, options);
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(bpe.status().message().find("sentencepiece module " + kModel + ": cannot load it"),
            std::string::npos)
      << bpe.status().message();
}

TEST_F(BpeTokenizerErrors, EnvironmentNamesTheModule) {
  auto found = BpeTokenizer::Load(kModel);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  const std::string module = (*found)->module_path();
  const std::string missing = dir_.string() + "/elsewhere.so";
  ASSERT_EQ(setenv("U2_SENTENCEPIECE_MODULE", missing.c_str(), 1), 0);
  auto bpe = BpeTokenizer::Load(kModel);
  ASSERT_FALSE(bpe.ok());
  EXPECT_EQ(bpe.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bpe.status().message().find(missing + " ($U2_SENTENCEPIECE_MODULE): no such file"),
            std::string::npos)
      << bpe.status().message();
  ASSERT_EQ(setenv("U2_SENTENCEPIECE_MODULE", module.c_str(), 1), 0);
  bpe = BpeTokenizer::Load(kModel);
  ASSERT_EQ(unsetenv("U2_SENTENCEPIECE_MODULE"), 0);
  ASSERT_TRUE(bpe.ok()) << bpe.status().ToString();
  EXPECT_EQ((*bpe)->module_path(), module);
}

}  // namespace
}  // namespace u2
