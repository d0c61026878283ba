#include "u2/util/table_file.h"

#include <filesystem>
#include <fstream>
#include <unordered_map>

namespace u2 {

StatusOr<std::vector<TableEntry>> ReadTableFile(const std::string& path, bool allow_empty_value) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  std::vector<TableEntry> entries;
  std::unordered_map<std::string, int> first_line;
  std::string line;
  int line_number = 0;
  const char* space = " \t\r\n";
  while (std::getline(in, line)) {
    ++line_number;
    const size_t key_begin = line.find_first_not_of(space);
    if (key_begin == std::string::npos) continue;
    const size_t key_end = line.find_first_of(space, key_begin);
    TableEntry e;
    e.key = line.substr(key_begin, key_end - key_begin);
    if (key_end != std::string::npos) {
      const size_t value_begin = line.find_first_not_of(space, key_end);
      if (value_begin != std::string::npos) {
        const size_t value_end = line.find_last_not_of(space);
        e.value = line.substr(value_begin, value_end - value_begin + 1);
      }
    }
    const std::string where = path + ":" + std::to_string(line_number);
    if (e.value.empty() && !allow_empty_value)
      return InvalidArgument(where + ": key '" + e.key + "' has no value");
    auto [it, inserted] = first_line.emplace(e.key, line_number);
    if (!inserted) {
      return InvalidArgument(where + ": duplicate key '" + e.key + "' (first on line " +
                             std::to_string(it->second) + ")");
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

StatusOr<std::vector<TableEntry>> ReadWavScp(const std::string& path) {
  U2_ASSIGN_OR_RETURN(std::vector<TableEntry> entries, ReadTableFile(path, /*allow_empty_value=*/false));
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  for (TableEntry& e : entries) {
    const std::filesystem::path p(e.value);
    if (p.is_relative()) e.value = (folder / p).lexically_normal().string();
  }
  return entries;
}

}  // namespace u2
