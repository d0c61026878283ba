#include "support/fixtures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace u2::testing {

std::vector<std::string> FixtureVariants() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(U2_FIXTURES_DIR, ec)) {
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "ref.safetensors")) {
      out.push_back(entry.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string FixtureDir(const std::string& variant) { return std::string(U2_FIXTURES_DIR) + "/" + variant; }
std::string FixtureModelDir(const std::string& variant) { return FixtureDir(variant) + "/model"; }

std::shared_ptr<SafeTensorsFile> OpenFixture(const std::string& variant) {
  auto file = SafeTensorsFile::Open(FixtureDir(variant) + "/ref.safetensors");
  if (!file.ok()) {
    ADD_FAILURE() << file.status().ToString();
    return nullptr;
  }
  return *file;
}

nlohmann::json ReadFixtureJson(const std::string& variant) {
  std::ifstream in(FixtureDir(variant) + "/ref.json");
  if (!in) {
    ADD_FAILURE() << "missing " << FixtureDir(variant) << "/ref.json";
    return {};
  }
  return nlohmann::json::parse(in);
}

double MaxAbsError(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

double MaxRelativeError(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  if (a.size() != b.size()) return INFINITY;
  double scale = floor;
  for (float v : b) scale = std::max(scale, std::abs(double(v)));
  return MaxAbsError(a, b) / scale;
}

std::vector<std::pair<int, int>> ChunkWindows(const ModelConfig& c, int num_frames, int chunk) {
  const int R = c.SubsamplingRate(), RC = c.RightContext();
  const int window = (chunk - 1) * R + RC + 1, stride = chunk * R;
  std::vector<std::pair<int, int>> out;
  for (int start = 0; start + RC + 1 <= num_frames; start += stride) {
    out.push_back({start, std::min(window, num_frames - start)});
  }
  return out;
}

std::vector<int> StreamableChunks(const ModelConfig& c, std::initializer_list<int> wanted) {
  const int unit = c.StreamingChunkUnit();
  std::vector<int> out;
  for (int chunk : wanted) {
    if (chunk % unit == 0) out.push_back(chunk);
  }
  if (out.empty()) out = {unit, 2 * unit};
  return out;
}

}  // namespace u2::testing
