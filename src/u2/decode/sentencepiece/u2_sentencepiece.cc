// libu2_sentencepiece.so: the C interface of u2_sentencepiece.h over Debian's libsentencepiece.
// Built as its own module (CMake target u2_sentencepiece) and never linked into a program; see
// the header for why.
#include "u2/decode/sentencepiece/u2_sentencepiece.h"

#include <sentencepiece_processor.h>

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece::logging {
// Exported by libsentencepiece but not declared in its public header: weak, so a release without
// it still loads (then sentencepiece keeps its default log level).
void SetMinLogLevel(int v) __attribute__((weak));
}  // namespace sentencepiece::logging

struct u2sp_model {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

void Send(u2sp_sink sink, void* context, std::string_view s) { sink(context, s.data(), s.size()); }

// sentencepiece logs with std::cerr. Loaded with RTLD_DEEPBIND into a program that has its own copy
// of std::cerr (a copy relocation in the executable), sentencepiece would bind to libstdc++'s
// unconstructed original and crash on its first message (e.g. a model whose self-test fails). It
// returns every error we need as a status, so its messages up to ERROR are switched off; FATAL
// still prints and ends the process, as it would anyway.
void QuietLogging() {
  constexpr int kLogFatal = 3;  // sentencepiece::logging::LOG_FATAL
  if (sentencepiece::logging::SetMinLogLevel != nullptr) sentencepiece::logging::SetMinLogLevel(kLogFatal);
}

// fn(), or `failed` with the exception's message on `error`: no exception may cross the C interface.
template <typename Result, typename Fn>
Result Guarded(u2sp_sink error, void* context, Result failed, Fn&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    Send(error, context, "out of memory");
  } catch (const std::exception& e) {
    Send(error, context, e.what());
  } catch (...) {
    Send(error, context, "unknown exception");
  }
  return failed;
}

}  // namespace

extern "C" {

int u2sp_abi_version(void) { return U2_SENTENCEPIECE_ABI_VERSION; }

u2sp_model* u2sp_load(const char* path, u2sp_sink error, void* context) {
  return Guarded(error, context, static_cast<u2sp_model*>(nullptr), [&]() -> u2sp_model* {
    QuietLogging();
    auto model = std::make_unique<u2sp_model>();
    const sentencepiece::util::Status status = model->processor.Load(path);
    if (!status.ok()) {
      Send(error, context, status.ToString());
      return nullptr;
    }
    return model.release();
  });
}

int u2sp_encode(const u2sp_model* model, const char* text, size_t size, u2sp_sink piece, u2sp_sink error,
                void* context) {
  return Guarded(error, context, -1, [&]() {
    std::vector<std::string> pieces;
    const sentencepiece::util::Status status = model->processor.Encode(std::string_view(text, size), &pieces);
    if (!status.ok()) {
      Send(error, context, status.ToString());
      return -1;
    }
    for (const std::string& p : pieces) Send(piece, context, p);
    return 0;
  });
}

void u2sp_free(u2sp_model* model) { delete model; }

}  // extern "C"
