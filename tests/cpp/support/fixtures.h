// Helpers for tests that compare against the committed PyTorch fixtures (tests/fixtures/README.md).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "u2/model/model_config.h"
#include "u2/util/safetensors.h"

namespace u2::testing {

// Variant names: the folders under tests/fixtures that hold a ref.safetensors.
std::vector<std::string> FixtureVariants();
std::string FixtureDir(const std::string& variant);
std::string FixtureModelDir(const std::string& variant);
// Opens <variant>/ref.safetensors; fails the calling test (ADD_FAILURE) and returns null if absent.
std::shared_ptr<SafeTensorsFile> OpenFixture(const std::string& variant);
nlohmann::json ReadFixtureJson(const std::string& variant);

// max |a-b| / max(max|b|, floor): the error measure behind our "within 1e-4 relative" checks.
double MaxRelativeError(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-6);
double MaxAbsError(const std::vector<float>& a, const std::vector<float>& b);

// WeNet's chunk-by-chunk feature windows (docs/wenet-numerics.md §4.2) as (start, length): with
// chunk C, subsampling R and right context RC, W = (C−1)·R + RC + 1 frames, stride C·R, while at
// least RC + 1 frames remain; the last window is cut at the end.
std::vector<std::pair<int, int>> ChunkWindows(const ModelConfig& c, int num_frames, int chunk);
// The chunk sizes of `wanted` the model can stream (multiples of c.StreamingChunkUnit()); when none
// is, the unit and twice it.
std::vector<int> StreamableChunks(const ModelConfig& c, std::initializer_list<int> wanted);

}  // namespace u2::testing
