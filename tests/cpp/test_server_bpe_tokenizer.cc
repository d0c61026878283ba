// The BPE tokenizer in a program like u2serve: one with gRPC and the full libprotobuf (the server
// stage) and OpenFst. Linking Debian's libsentencepiece into such a program crashes it at start:
// sentencepiece's own protobuf-lite and Abseil flags (FLAGS_help) get bound to libprotobuf's and
// libfst's. Loaded as our module (decode/sentencepiece/u2_sentencepiece.h), it binds to its own
// and the program keeps running, tokenizing as WeNet does.
#include <dlfcn.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <link.h>

#include <string>
#include <vector>

#include "grpc_service.pb.h"
#include "support/sanitized.h"
#include "u2/decode/bpe_tokenizer.h"
#include "u2/decode/openfst_reader.h"
#include "u2/decode/sentencepiece/u2_sentencepiece.h"
#include "u2/decode/symbol_table.h"

namespace u2 {
namespace {

const std::string kBpeDir = std::string(U2_TEST_DATA_DIR) + "/bpe";

std::vector<std::string> LoadedLibraries() {
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name != nullptr)
          static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
        return 0;
      },
      &names);
  return names;
}

bool IsLoaded(const std::string& file_prefix) {
  for (const std::string& name : LoadedLibraries())
    if (name.find("/" + file_prefix) != std::string::npos) return true;
  return false;
}

TEST(ServerProcessBpeTokenizer, LoadsBesideGrpcProtobufAndOpenFst) {
  // Use each library, so that the process certainly has it.
  inference::ModelInferRequest request;
  request.set_model_name("bpe");
  const std::string wire = request.SerializeAsString();
  EXPECT_FALSE(wire.empty());
  EXPECT_FALSE(grpc::Version().empty());
  openfst::Fst fst;
  std::string error;
  EXPECT_NE(openfst::Read(kBpeDir + "/no_such.fst", &fst, &error), openfst::ReadResult::kOk);
  for (const char* lib : {"libprotobuf.so", "libgrpc++.so", "libfst.so"}) EXPECT_TRUE(IsLoaded(lib)) << lib;
  // What libsentencepiece would otherwise bind to: libfst's FLAGS_help is in the global scope.
  EXPECT_NE(dlsym(RTLD_DEFAULT, "FLAGS_help"), nullptr);

  // The engine's choice (kAuto), and the other isolation, which sanitizer builds use.
  for (const auto isolation :
       {BpeTokenizerOptions::Isolation::kAuto, BpeTokenizerOptions::Isolation::kNamespace}) {
    auto table = SymbolTable::Load(kBpeDir + "/units.txt");
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    BpeTokenizerOptions options;
    options.non_lang_syms = kBpeDir + "/non_lang_syms.txt";
    options.isolation = isolation;
    auto bpe = BpeTokenizer::Load(kBpeDir + "/bpe.model", options);
    ASSERT_TRUE(bpe.ok()) << bpe.status().ToString();
    table->SetBpeTokenizer(*bpe);
    auto ids = table->Tokenize("你好 it's okay <noise>");
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    EXPECT_EQ(*ids, (std::vector<int>{110, 111, 77, 2, 44, 86, 115}));
    // The module's symbols stay out of the program's scope.
    EXPECT_EQ(dlsym(RTLD_DEFAULT, "u2sp_load"), nullptr);
    // A damaged model is an error here too, not a crash.
    auto damaged = BpeTokenizer::Load(kBpeDir + "/units.txt", options);
    EXPECT_FALSE(damaged.ok());
  }

  // The program's protobuf still works after sentencepiece's has run.
  inference::ModelInferRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.model_name(), "bpe");
}

// The control: the same module loaded without isolation, in a fresh process of this program.
// sentencepiece's references then bind to the program's libprotobuf 3.21 instead of its own
// protobuf-lite 3.14: loading a model fails protobuf's version check (elsewhere the same mix-up
// crashes the program outright, e.g. one with libfst but not gRPC).
TEST(ServerProcessBpeTokenizerDeathTest, WithoutIsolationSentencepieceBreaks) {
  if (SANITIZED) GTEST_SKIP() << "no death tests under the sanitizers";
  inference::ModelInferRequest request;  // the program has libprotobuf
  EXPECT_TRUE(request.SerializeAsString().empty());
  BpeTokenizerOptions options;
  options.isolation =
      BpeTokenizerOptions::Isolation::kNamespace;  // finds the module, leaves this scope alone
  auto bpe = BpeTokenizer::Load(kBpeDir + "/bpe.model", options);
  ASSERT_TRUE(bpe.ok()) << bpe.status().ToString();
  const std::string module = (*bpe)->module_path();
  const std::string model = kBpeDir + "/bpe.model";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the module is not loaded yet
  // Exit code 0 only if sentencepiece loads the model and encodes as it should.
  EXPECT_EXIT(
      {
        void* handle = dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle == nullptr) _exit(2);
        const auto load = reinterpret_cast<decltype(&u2sp_load)>(dlsym(handle, "u2sp_load"));
        const auto encode = reinterpret_cast<decltype(&u2sp_encode)>(dlsym(handle, "u2sp_encode"));
        std::string pieces;
        const u2sp_sink print = [](void*, const char* data, size_t size) {
          fprintf(stderr, "%.*s\n", static_cast<int>(size), data);
        };
        const u2sp_sink append = [](void* out, const char* data, size_t size) {
          static_cast<std::string*>(out)->append(data, size).append(" ");
        };
        u2sp_model* m = load(model.c_str(), print, nullptr);
        if (m == nullptr) _exit(1);
        if (encode(m, "HELLO WORLD", 11, append, print, &pieces) != 0) _exit(1);
        _exit(pieces == "\u2581HELLO \u2581WOR LD " ? 0 : 1);
      },
      [](int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }, "");
}

}  // namespace
}  // namespace u2
