// model.json validation and model-directory loading errors: every bad input gives a clear error
// that names the key/tensor, and never a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/fixtures.h"
#include "u2/model/asr_model.h"
#include "u2/model/model_config.h"

namespace u2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The variant the broken-directory tests break (their tensor names are a Conformer's).
std::string ConformerVariant() { return "conformer_relpos_bn_noncausal_bi"; }

json FixtureConfigJson(const std::string& variant) {
  std::ifstream in(testing::FixtureModelDir(variant) + "/model.json");
  return json::parse(in);
}

Status ParseError(const json& j) {
  auto c = ModelConfig::FromJson(j);
  return c.ok() ? Status::Ok() : c.status();
}

void ExpectErrorMentions(const Status& s, std::initializer_list<std::string> words) {
  EXPECT_FALSE(s.ok());
  for (const std::string& w : words) EXPECT_NE(s.message().find(w), std::string::npos) << s.ToString();
}

TEST(ModelConfig, ParsesEveryFixtureAndPrints) {
  for (const std::string& v : testing::FixtureVariants()) {
    auto c = ModelConfig::FromFile(testing::FixtureModelDir(v) + "/model.json");
    ASSERT_TRUE(c.ok()) << v << ": " << c.status().ToString();
    EXPECT_GT(c->vocab_size, 0);
    const std::string s = c->ToString();
    EXPECT_NE(s.find("vocab_size=" + std::to_string(c->vocab_size)), std::string::npos) << s;
    EXPECT_NE(s.find(InputLayerName(c->encoder.input_layer)), std::string::npos) << s;
  }
}

TEST(ModelConfig, DerivedConstants) {
  ModelConfig c;
  c.encoder.input_layer = InputLayer::kConv2d;
  EXPECT_EQ(c.SubsamplingRate(), 4);
  EXPECT_EQ(c.RightContext(), 6);
  EXPECT_EQ(c.NumEncoderFrames(6), 0);
  EXPECT_EQ(c.NumEncoderFrames(7), 1);
  EXPECT_EQ(c.NumEncoderFrames(67),
            16);  // (C−1)·R + RC + 1 frames give C outputs (docs/wenet-numerics.md §1.6)
  EXPECT_EQ(c.SubsampledFeatureDim(), 19);
  c.encoder.input_layer = InputLayer::kConv2d2;
  EXPECT_EQ(c.SubsamplingRate(), 2);
  EXPECT_EQ(c.RightContext(), 2);
  EXPECT_EQ(c.NumEncoderFrames(2), 0);
  EXPECT_EQ(c.NumEncoderFrames(3), 1);
  EXPECT_EQ(c.NumEncoderFrames(33), 16);
  EXPECT_EQ(c.SubsampledFeatureDim(), 39);
  c.encoder.input_layer = InputLayer::kConv2d6;
  EXPECT_EQ(c.SubsamplingRate(), 6);
  EXPECT_EQ(c.RightContext(), 10);
  EXPECT_EQ(c.NumEncoderFrames(10), 0);
  EXPECT_EQ(c.NumEncoderFrames(11), 1);
  EXPECT_EQ(c.NumEncoderFrames(101), 16);
  EXPECT_EQ(c.SubsampledFeatureDim(), 12);
  c.encoder.input_layer = InputLayer::kConv2d8;
  EXPECT_EQ(c.SubsamplingRate(), 8);
  EXPECT_EQ(c.RightContext(), 14);
  EXPECT_EQ(c.NumEncoderFrames(14), 0);
  EXPECT_EQ(c.NumEncoderFrames(15), 1);
  EXPECT_EQ(c.NumEncoderFrames(135), 16);
  EXPECT_EQ(c.SubsampledFeatureDim(), 9);
}

TEST(ModelConfig, BranchformerKeysAreReadAndValidated) {
  const json branch = FixtureConfigJson("branchformer_fixed_ave_abspos");
  auto c = ModelConfig::FromJson(branch);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->encoder.type, EncoderType::kBranchformer);
  EXPECT_EQ(c->encoder.merge_method, MergeMethod::kFixedAverage);
  EXPECT_EQ(c->encoder.gate_activation, Activation::kGelu);
  EXPECT_TRUE(c->encoder.use_linear_after_conv);
  ASSERT_EQ(static_cast<int>(c->encoder.cgmlp_weight.size()), c->encoder.num_blocks);
  EXPECT_NE(c->ToString().find("branchformer"), std::string::npos);

  json j = branch;
  j["encoder"]["merge_method"] = "learned_ave";
  ExpectErrorMentions(ParseError(j), {"encoder.merge_method", "learned_ave", "concat"});
  j = branch;
  j["encoder"]["gate_activation"] = "tanh";
  ExpectErrorMentions(ParseError(j), {"encoder.gate_activation", "tanh", "identity"});
  j = branch;
  j["encoder"]["cgmlp_linear_units"] = 129;
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_linear_units", "129", "even"});
  j = branch;
  j["encoder"]["cgmlp_conv_kernel"] = 6;  // the fixture is non-causal
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_conv_kernel", "6", "odd"});
  j = branch;
  j["encoder"]["cgmlp_weight"] = json::array({0.5});
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_weight", "1 values", "blocks"});
  j = branch;
  j["encoder"]["cgmlp_weight"] = 1.5;
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_weight", "[0, 1]"});
  j = branch;
  j["encoder"]["cgmlp_weight"] = "half";
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_weight", "number"});
  j = branch;
  j["encoder"]["use_attn"] = false;
  j["encoder"]["use_cgmlp"] = false;
  ExpectErrorMentions(ParseError(j), {"encoder.use_attn", "no branch"});
  j = branch;
  j["encoder"]["normalize_before"] = false;
  ExpectErrorMentions(ParseError(j), {"encoder.normalize_before", "branchformer"});
  j = branch;
  j["encoder"].erase("cgmlp_linear_units");
  ExpectErrorMentions(ParseError(j), {"encoder.cgmlp_linear_units", "missing"});

  const json ebranch = FixtureConfigJson("e_branchformer_noncausal");
  c = ModelConfig::FromJson(ebranch);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->encoder.type, EncoderType::kEBranchformer);
  EXPECT_FALSE(c->encoder.StreamsExactly());
  j = ebranch;
  j["encoder"]["merge_conv_kernel"] = 4;
  ExpectErrorMentions(ParseError(j), {"encoder.merge_conv_kernel", "4", "odd"});
  j["encoder"]["causal"] = true;  // a causal conv may have an even kernel
  EXPECT_TRUE(ParseError(j).ok());
  j = ebranch;
  j["encoder"].erase("merge_conv_kernel");
  ExpectErrorMentions(ParseError(j), {"encoder.merge_conv_kernel", "missing"});
  j = ebranch;
  j["encoder"]["type"] = "dual_conformer";
  ExpectErrorMentions(ParseError(j), {"encoder.type", "dual_conformer", "efficientConformer"});
  c = ModelConfig::FromJson(FixtureConfigJson("e_branchformer_causal_u2pp"));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->encoder.StreamsExactly());
}

TEST(ModelConfig, SqueezeformerTimeGridAndKeys) {
  const json sq = FixtureConfigJson("squeezeformer_stream_u2pp");
  auto c = ModelConfig::FromJson(sq);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // Reduction before block 1, recovery before block 3: blocks 1 and 2 run at half the rate.
  EXPECT_EQ(c->LayerTimeStride(0), 1);
  EXPECT_EQ(c->LayerTimeStride(1), 2);
  EXPECT_EQ(c->LayerTimeStride(2), 2);
  EXPECT_EQ(c->LayerTimeStride(3), 1);
  EXPECT_EQ(c->OutputTimeStride(), 1);
  EXPECT_EQ(c->StreamingChunkUnit(), 2);
  EXPECT_EQ(c->encoder.width(), 64);
  EXPECT_EQ(c->encoder.output_size, 48);
  EXPECT_EQ(c->NumEncoderFrames(135), c->NumEmbeddingFrames(135));

  json j = sq;
  j["encoder"]["reduce_idx"] = json::array({3});
  j["encoder"]["recover_idx"] = json::array({1});
  ExpectErrorMentions(ParseError(j), {"encoder.recover_idx", "before its reduction"});
  j = sq;
  j["encoder"]["recover_idx"] = json::array({2, 3});
  ExpectErrorMentions(ParseError(j), {"encoder.recover_idx", "one entry per reduce_idx"});
  j = sq;
  j["encoder"]["reduce_idx"] = json::array({7});
  j["encoder"]["recover_idx"] = json::array();
  ExpectErrorMentions(ParseError(j), {"encoder.reduce_idx", "7", "out of range"});
  j = sq;
  j["encoder"]["time_reduction_layer_type"] = "conv2d";
  ExpectErrorMentions(ParseError(j), {"encoder.time_reduction_layer_type", "conv2d", "stream"});
  j = sq;
  j["encoder"]["concat_after"] = true;
  ExpectErrorMentions(ParseError(j), {"encoder.concat_after"});
  j = sq;
  j["encoder"]["input_layer"] = "conv2d";
  ExpectErrorMentions(ParseError(j), {"encoder.input_layer", "dw_conv2d4"});
  j = sq;
  j["encoder"]["reduce_idx"] = "one";
  ExpectErrorMentions(ParseError(j), {"encoder.reduce_idx", "integer"});
}

TEST(ModelConfig, EfficientConformerTimeGridAndKeys) {
  const json ec = FixtureConfigJson("efficient_conformer_v2_stream");
  auto c = ModelConfig::FromJson(ec);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // Stride blocks 1 and 2 (stride 2 each), grouped blocks 1 and 2 (group 3).
  EXPECT_EQ(c->LayerTimeStride(1), 1);
  EXPECT_EQ(c->LayerTimeStride(2), 2);
  EXPECT_EQ(c->LayerTimeStride(3), 4);
  EXPECT_EQ(c->OutputTimeStride(), 4);
  EXPECT_EQ(c->StreamingChunkUnit(), 12);  // lcm(4, 3·1, 3·2)
  EXPECT_EQ(c->OutputFrameShiftMs(), 10 * c->SubsamplingRate() * 4);
  const int emb = c->NumEmbeddingFrames(101);
  EXPECT_EQ(c->NumEncoderFrames(101), (emb + 3) / 4);
  EXPECT_EQ(c->encoder.BlockGroupSize(1), 3);
  EXPECT_EQ(c->encoder.BlockGroupSize(0), 1);

  json j = ec;
  j["encoder"]["stride"] = json::array({2});
  ExpectErrorMentions(ParseError(j), {"encoder.stride", "one stride per"});
  j = ec;
  j["encoder"]["cnn_module_kernels"] = json::array({8, 8});
  ExpectErrorMentions(ParseError(j), {"encoder.cnn_module_kernels", "one kernel per block"});
  j = ec;
  j["encoder"]["group_size"] = 0;
  ExpectErrorMentions(ParseError(j), {"encoder.group_size", "out of range"});
  j = ec;
  j["encoder"]["stride_layer_idx"] = json::array({2, 1});
  ExpectErrorMentions(ParseError(j), {"encoder.stride_layer_idx", "ascending"});
  j = ec;
  j["encoder"]["causal"] = false;  // the base kernel is odd, a block's even
  j["encoder"]["cnn_module_kernel"] = 9;
  j["encoder"]["cnn_module_kernels"] = json::array({9, 9, 4, 4});
  ExpectErrorMentions(ParseError(j), {"encoder.cnn_module_kernels", "4", "odd"});
}

TEST(ModelConfig, BadKeysGiveNamedErrors) {
  const std::string v = ConformerVariant();
  ASSERT_FALSE(v.empty());
  const json good = FixtureConfigJson(v);
  ASSERT_TRUE(ParseError(good).ok());

  json j = good;
  j.erase("vocab_size");
  ExpectErrorMentions(ParseError(j), {"vocab_size", "missing"});

  j = good;
  j["encoder"].erase("output_size");
  ExpectErrorMentions(ParseError(j), {"encoder.output_size", "missing"});

  j = good;
  j["encoder"]["output_size"] = "abc";
  ExpectErrorMentions(ParseError(j), {"encoder.output_size", "integer", "abc"});

  j = good;
  j["encoder"]["input_layer"] = "linear";
  ExpectErrorMentions(ParseError(j), {"encoder.input_layer", "linear", "conv2d6"});

  j = good;
  j["encoder"]["pos_enc_layer_type"] = "rope";
  ExpectErrorMentions(ParseError(j), {"encoder.pos_enc_layer_type", "rope"});

  j = good;
  j["encoder"]["activation_type"] = "gelu";
  ExpectErrorMentions(ParseError(j), {"encoder.activation_type", "gelu"});

  j = good;
  j["encoder"]["attention_heads"] = 5;
  ExpectErrorMentions(ParseError(j), {"encoder.attention_heads", "5"});

  j = good;
  j["format_version"] = 7;
  ExpectErrorMentions(ParseError(j), {"format_version", "7"});

  j = good;
  j["format"] = "onnx";
  ExpectErrorMentions(ParseError(j), {"format", "onnx"});

  j = good;
  j["eos_id"] = j["vocab_size"];
  ExpectErrorMentions(ParseError(j), {"eos_id"});

  j = good;
  j["decoder"]["type"] = "rnn";
  ExpectErrorMentions(ParseError(j), {"decoder.type", "rnn"});

  j = good;
  j["decoding"]["reverse_weight"] = 2.0;
  ExpectErrorMentions(ParseError(j), {"decoding.reverse_weight"});

  j = good;
  j["encoder"]["norm_eps"] = -1.0;
  ExpectErrorMentions(ParseError(j), {"encoder.norm_eps"});

  j = good;
  j["encoder"]["causal"] = false;
  j["encoder"]["cnn_module_kernel"] = 8;
  j["encoder"]["type"] = "conformer";
  j["encoder"]["use_cnn_module"] = true;
  ExpectErrorMentions(ParseError(j), {"encoder.cnn_module_kernel", "odd"});

  j = good;
  j["encoder"] = 3;
  ExpectErrorMentions(ParseError(j), {"encoder", "object"});

  ExpectErrorMentions(ModelConfig::FromJsonText("{not json").status(), {"JSON"});
  ExpectErrorMentions(ModelConfig::FromJsonText("[1, 2]").status(), {"object"});
  EXPECT_EQ(ModelConfig::FromFile("/nonexistent/model.json").status().code(), StatusCode::kNotFound);
}

// --- model directories with broken weights ---------------------------------------------------

// Writes a safetensors file from (name, dtype, shape, bytes) entries.
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

void WriteSafetensors(const std::string& path, const std::vector<Entry>& entries) {
  json header = json::object();
  size_t offset = 0;
  for (const Entry& e : entries) {
    header[e.name] = {
        {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const Entry& e : entries) out.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
}

std::vector<Entry> ReadEntries(const std::string& path) {
  auto f = SafeTensorsFile::Open(path);
  EXPECT_TRUE(f.ok());
  std::vector<Entry> out;
  for (const std::string& name : (*f)->Names()) {
    auto v = *(*f)->Get(name);
    Entry e{name, SafeTensorDTypeName(v.dtype), v.shape,
            std::vector<char>(reinterpret_cast<const char*>(v.bytes.data()),
                              reinterpret_cast<const char*>(v.bytes.data()) + v.bytes.size())};
    out.push_back(std::move(e));
  }
  return out;
}

class BrokenModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    variant_ = ConformerVariant();
    ASSERT_FALSE(variant_.empty());
    dir_ = fs::temp_directory_path() / ("u2_model_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"model.json", "model.safetensors", "units.txt"}) {
      fs::copy_file(fs::path(testing::FixtureModelDir(variant_)) / f, dir_ / f);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }

  std::string variant_;
  fs::path dir_;
};

TEST_F(BrokenModelDir, IntactCopyLoads) {
  auto m = AsrModel::Load(dir());
  EXPECT_TRUE(m.ok()) << m.status().ToString();
}

TEST_F(BrokenModelDir, ShapeMismatchNamesTheTensor) {
  json j = FixtureConfigJson(variant_);
  j["encoder"]["linear_units"] = j["encoder"]["linear_units"].get<int>() + 8;
  std::ofstream(dir_ / "model.json") << j.dump();
  auto m = AsrModel::Load(dir());
  ExpectErrorMentions(m.status(), {"feed_forward", "w_1.weight", "shape"});
}

TEST_F(BrokenModelDir, MissingTensorIsNamed) {
  auto entries = ReadEntries(dir() + "/model.safetensors");
  const std::string victim = "encoder.encoders.1.self_attn.linear_out.weight";
  std::erase_if(entries, [&](const Entry& e) { return e.name == victim; });
  WriteSafetensors(dir() + "/model.safetensors", entries);
  auto m = AsrModel::Load(dir());
  ExpectErrorMentions(m.status(), {victim, "missing"});
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
}

TEST_F(BrokenModelDir, TruncatedWeightsAreDataLoss) {
  const auto size = fs::file_size(dir_ / "model.safetensors");
  fs::resize_file(dir_ / "model.safetensors", size / 2);
  auto m = AsrModel::Load(dir());
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kDataLoss) << m.status().ToString();
  fs::resize_file(dir_ / "model.safetensors", 5);
  EXPECT_FALSE(AsrModel::Load(dir()).ok());
}

TEST_F(BrokenModelDir, WrongDtypeIsNamed) {
  auto entries = ReadEntries(dir() + "/model.safetensors");
  for (Entry& e : entries) {
    if (e.name == "ctc.ctc_lo.bias") {
      e.dtype = e.dtype == "F16" ? "I16" : "I32";  // same byte size, wrong type
    }
  }
  WriteSafetensors(dir() + "/model.safetensors", entries);
  ExpectErrorMentions(AsrModel::Load(dir()).status(), {"ctc.ctc_lo.bias", "dtype"});
}

TEST_F(BrokenModelDir, MissingFilesAreNotFound) {
  fs::remove(dir_ / "model.safetensors");
  auto m = AsrModel::Load(dir());
  EXPECT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos) << m.status().ToString();
  fs::remove(dir_ / "model.json");
  EXPECT_EQ(AsrModel::Load(dir()).status().code(), StatusCode::kNotFound);
}

// The fixtures store most weights as float16; widening them to float32 on disk must change
// nothing (float16 → float32 is exact), and exercises the zero-copy float32 path.
TEST_F(BrokenModelDir, Float32AndFloat16WeightsAgree) {
  auto entries = ReadEntries(dir() + "/model.safetensors");
  int converted = 0;
  for (Entry& e : entries) {
    if (e.dtype != "F16") continue;
    std::vector<char> wide(e.bytes.size() * 2);
    for (size_t i = 0; i < e.bytes.size() / 2; ++i) {
      uint16_t h;
      std::memcpy(&h, e.bytes.data() + 2 * i, 2);
      const float f = HalfToFloat(h);
      std::memcpy(wide.data() + 4 * i, &f, 4);
    }
    e.bytes = std::move(wide);
    e.dtype = "F32";
    ++converted;
  }
  EXPECT_GT(converted, 0) << "fixture has no float16 weights";
  WriteSafetensors(dir() + "/model.safetensors", entries);
  auto wide_model = AsrModel::Load(dir());
  ASSERT_TRUE(wide_model.ok()) << wide_model.status().ToString();
  auto half_model = AsrModel::Load(testing::FixtureModelDir(variant_));
  ASSERT_TRUE(half_model.ok());
  auto ref = testing::OpenFixture(variant_);
  ASSERT_TRUE(ref);
  const auto fbank = *ref->ReadFloat32("u0.fbank");
  FeatureView f{fbank.data(), static_cast<int>(fbank.size() / 80), 80};
  auto a = (*wide_model)->Encode({&f, 1});
  auto b = (*half_model)->Encode({&f, 1});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->EncoderFrames(0), b->EncoderFrames(0));
  EXPECT_EQ(a->ctc_log_probs[0], b->ctc_log_probs[0]);
}

}  // namespace
}  // namespace u2
