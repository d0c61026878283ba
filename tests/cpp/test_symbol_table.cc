// The token table: parsing and its errors, special ids (docs/wenet-numerics.md §1.4), detokenization.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "support/fixtures.h"
#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

SymbolTable MustParse(std::string_view text) {
  auto table = SymbolTable::FromText(text);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return table.ok() ? *table : *SymbolTable::FromText("<blank> 0");
}

std::string ParseError(std::string_view text) {
  auto table = SymbolTable::FromText(text, "units.txt");
  EXPECT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), StatusCode::kInvalidArgument);
  return table.status().message();
}

TEST(SymbolTable, ParsesCharTableWithSosEosLine) {
  const SymbolTable t = MustParse("<blank> 0\n<unk> 1\n你 2\n好 3\n<sos/eos> 4\n");
  EXPECT_EQ(t.size(), 5);
  EXPECT_EQ(t.Token(2), "你");
  EXPECT_EQ(t.Id("好"), 3);
  EXPECT_EQ(t.Id("吗"), std::nullopt);
  EXPECT_EQ(t.Token(5), "");
  EXPECT_EQ(t.Token(-1), "");
  EXPECT_EQ(t.blank_id(), 0);
  EXPECT_EQ(t.unk_id(), 1);
  EXPECT_EQ(t.sos_eos_id(), 4);
}

TEST(SymbolTable, SosEosRules) {
  // Without a <sos/eos> line: the last id (old recipes).
  EXPECT_EQ(MustParse("<blank> 0\n<unk> 1\na 2\nb 3\n").sos_eos_id(), 3);
  // HEAD recipes put it at 2, wherever the line sits in the file.
  SymbolTable head = MustParse("<blank> 0\n<unk> 1\na 3\n<sos/eos> 2\nb 4\n");
  EXPECT_EQ(head.sos_eos_id(), 2);
  EXPECT_EQ(head.Token(3), "a");
  // The model's own setting (train.yaml special_tokens) overrides.
  EXPECT_TRUE(head.SetSosEosId(4).ok());
  EXPECT_EQ(head.sos_eos_id(), 4);
  EXPECT_EQ(head.SetSosEosId(5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(head.SetSosEosId(-1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(head.sos_eos_id(), 4);
  // No <unk>: -1.
  EXPECT_EQ(MustParse("<blank> 0\na 1\n").unk_id(), -1);
}

TEST(SymbolTable, ToleratesCrlfBlankLinesAndTabs) {
  const SymbolTable t = MustParse("<blank>\t0\r\n\r\n<unk> 1\r\n  x   2  \r\n");
  EXPECT_EQ(t.size(), 3);
  EXPECT_EQ(t.Token(2), "x");
  EXPECT_EQ(t.Id("<unk>"), 1);
}

TEST(SymbolTable, ParseErrorsNameTheLine) {
  EXPECT_NE(ParseError("a 0\nb\n").find("line 2"), std::string::npos);
  EXPECT_NE(ParseError("a 0\nb 1 c\n").find("line 2: expected \"token id\""), std::string::npos);
  EXPECT_NE(ParseError("a 0\nb x\n").find("line 2: id 'x' is not a non-negative integer"), std::string::npos);
  EXPECT_NE(ParseError("a 0\nb 1x\n").find("line 2"), std::string::npos);
  EXPECT_NE(ParseError("a -1\n").find("line 1"), std::string::npos);
  EXPECT_NE(ParseError("a 0\nb 0\n").find("id 0 appears twice"), std::string::npos);
  EXPECT_NE(ParseError("a 0\na 1\n").find("token 'a' appears twice"), std::string::npos);
  // A gap: two tokens but ids 0 and 2.
  EXPECT_NE(ParseError("a 0\nb 2\n").find("id 2 of 'b' is out of range"), std::string::npos);
  EXPECT_NE(ParseError("").find("no tokens"), std::string::npos);
  EXPECT_NE(ParseError("\n\n").find("units.txt"), std::string::npos);
}

TEST(SymbolTable, LoadsFilesAndReportsMissingOnes) {
  const auto path =
      std::filesystem::temp_directory_path() / ("u2_units_" + std::to_string(::getpid()) + ".txt");
  {
    std::ofstream out(path);
    out << "<blank> 0\n<unk> 1\n▁HE 2\nLLO 3\n<sos/eos> 4\n";
  }
  auto table = SymbolTable::Load(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->size(), 5);
  EXPECT_EQ(table->Id("▁HE"), 2);

  auto missing = SymbolTable::Load("/nonexistent/units.txt");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/units.txt"), std::string::npos);
}

TEST(SymbolTable, DetokenizeCharModel) {
  const SymbolTable t = MustParse("<blank> 0\n<unk> 1\n你 2\n好 3\n<sos/eos> 4\n");
  const std::vector<int> ids{2, 0, 3, 4, 1, 2, 99, -3};
  // blank and sos/eos are dropped, <unk> stays visible, out-of-range ids are skipped.
  EXPECT_EQ(t.Detokenize(ids), "你好<unk>你");
  EXPECT_EQ(t.Detokenize({}), "");
}

TEST(SymbolTable, DetokenizeBpeWordMarkers) {
  const SymbolTable t = MustParse("<blank> 0\n<unk> 1\n▁HELLO 2\n▁WORLD 3\nS 4\n▁ 5\n<sos/eos> 6\n");
  const std::vector<int> words{2, 3, 4};
  EXPECT_EQ(t.Detokenize(words), "HELLO WORLDS");
  // A bare marker becomes a space; leading and trailing spaces are trimmed, inner ones kept.
  const std::vector<int> spaced{5, 2, 5, 3, 5};
  EXPECT_EQ(t.Detokenize(spaced), "HELLO  WORLD");
  const std::vector<int> only_marker{5, 5};
  EXPECT_EQ(t.Detokenize(only_marker), "");
}

// The fixtures' converted model directories: the table covers the CTC vocabulary and its sos/eos
// agrees with the id the PyTorch reference used (old layout: last line; HEAD layout: id 2).
TEST(SymbolTable, LoadsFixtureTables) {
  int checked = 0;
  for (const std::string& variant : testing::FixtureVariants()) {
    auto table = SymbolTable::Load(testing::FixtureModelDir(variant) + "/units.txt");
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    const nlohmann::json ref = testing::ReadFixtureJson(variant);
    EXPECT_EQ(table->sos_eos_id(), ref.at("sos_id").get<int>()) << variant;
    EXPECT_EQ(table->blank_id(), 0);
    EXPECT_EQ(table->unk_id(), 1);
    const auto fixture = testing::OpenFixture(variant);
    ASSERT_NE(fixture, nullptr);
    auto logp = fixture->Get("u0.ctc_logp");
    ASSERT_TRUE(logp.ok());
    EXPECT_EQ(table->size(), logp->shape.at(1)) << variant;
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no fixtures under " << U2_FIXTURES_DIR;
}

}  // namespace
}  // namespace u2
