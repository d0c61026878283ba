// Kaldi-style list files (wav.scp, text).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "u2/util/table_file.h"

namespace u2 {
namespace {

std::filesystem::path WriteFile(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / "u2_table_file_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path) << content;
  return path;
}

TEST(TableFile, ParsesKeysValuesBlankLinesAndCrlf) {
  const auto path = WriteFile("text", "a hello world  \r\n\n  b   x\tz\nc\n");
  auto entries = ReadTableFile(path.string(), /*allow_empty_value=*/true);
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].key, "a");
  EXPECT_EQ((*entries)[0].value, "hello world");
  EXPECT_EQ((*entries)[1].key, "b");
  EXPECT_EQ((*entries)[1].value, "x\tz");
  EXPECT_EQ((*entries)[2].value, "");
}

TEST(TableFile, ErrorsNameTheLine) {
  const auto empty_value = WriteFile("scp1", "a x.wav\nb\n");
  auto r = ReadTableFile(empty_value.string(), /*allow_empty_value=*/false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(":2:"), std::string::npos) << r.status().message();
  const auto duplicate = WriteFile("scp2", "a x.wav\nb y.wav\na z.wav\n");
  r = ReadTableFile(duplicate.string(), false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("duplicate key 'a' (first on line 1)"), std::string::npos);
  EXPECT_EQ(ReadTableFile("/nonexistent/list", false).status().code(), StatusCode::kNotFound);
}

TEST(TableFile, WavScpPathsAreRelativeToTheList) {
  const auto path = WriteFile("wav.scp", "a sub/x.wav\nb /abs/y.wav\n");
  auto entries = ReadWavScp(path.string());
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ((*entries)[0].value, (path.parent_path() / "sub" / "x.wav").string());
  EXPECT_EQ((*entries)[1].value, "/abs/y.wav");
}

}  // namespace
}  // namespace u2
