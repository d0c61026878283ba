#include "u2/decode/bpe_tokenizer.h"

#include <dlfcn.h>
#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>

#include "u2/decode/sentencepiece/u2_sentencepiece.h"

// AddressSanitizer and ThreadSanitizer end the process on dlopen(RTLD_DEEPBIND).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define U2_BPE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define U2_BPE_SANITIZED 1
#endif
#endif
#ifndef U2_BPE_SANITIZED
#define U2_BPE_SANITIZED 0
#endif

namespace u2 {
namespace {

using Isolation = BpeTokenizerOptions::Isolation;

constexpr char kModuleFile[] = "libu2_sentencepiece.so";
constexpr char kModuleEnv[] = "U2_SENTENCEPIECE_MODULE";

struct Module {
  std::string path;
  decltype(&u2sp_load) load = nullptr;
  decltype(&u2sp_encode) encode = nullptr;
  decltype(&u2sp_free) free = nullptr;
};

template <typename F>
F Symbol(void* handle, const char* name) {
  void* p = dlsym(handle, name);
  F f = nullptr;
  static_assert(sizeof f == sizeof p);
  std::memcpy(&f, &p, sizeof f);
  return f;
}

bool IsFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// The module file to load: the one asked for, else $U2_SENTENCEPIECE_MODULE, else the first that
// exists of ../lib/ and the folder of the running program, and the build's own output.
StatusOr<std::string> FindModule(const std::string& requested) {
  std::string path = requested;
  std::string what = "sentencepiece module " + path;
  if (path.empty()) {
    if (const char* env = std::getenv(kModuleEnv); env != nullptr && *env != '\0') {
      path = env;
      what = "sentencepiece module " + path + " ($" + kModuleEnv + ")";
    }
  }
  if (!path.empty()) {
    if (!IsFile(path)) return NotFound(what + ": no such file");
    // dlopen searches the library path for a name without a '/': make it a path.
    std::error_code ec;
    const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
    return ec ? path : absolute.string();
  }
  std::vector<std::string> candidates;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back((exe.parent_path() / ".." / "lib" / kModuleFile).lexically_normal().string());
    candidates.push_back((exe.parent_path() / kModuleFile).string());
  }
#ifdef U2_SENTENCEPIECE_MODULE_PATH
  candidates.push_back(U2_SENTENCEPIECE_MODULE_PATH);
  const char* const hint = "";
#else
  const char* const hint = "; this build has no module: install libsentencepiece-dev and reconfigure";
#endif
  for (const std::string& c : candidates)
    if (IsFile(c)) return c;
  std::string looked;
  for (const std::string& c : candidates) looked += (looked.empty() ? "" : ", ") + c;
  return NotFound(std::string("the sentencepiece module ") + kModuleFile + " was not found (looked at " +
                  looked + "; $" + kModuleEnv + " names it)" + hint);
}

// Loads the module once per file and isolation and keeps it for the life of the process: it is
// small, and unloading sentencepiece's static state under live models is not worth the risk.
StatusOr<const Module*> OpenModule(const std::string& path, Isolation isolation) {
  static std::mutex mu;
  static auto* loaded = new std::map<std::pair<std::string, Isolation>, std::unique_ptr<Module>>();
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(path, isolation);
  if (const auto it = loaded->find(key); it != loaded->end()) return it->second.get();
  dlerror();
  // RTLD_LOCAL keeps sentencepiece's symbols out of the program's; RTLD_DEEPBIND (or a namespace
  // of its own) makes sentencepiece bind to its own protobuf-lite and flags, not the program's
  // libprotobuf and libfst (decode/sentencepiece/u2_sentencepiece.h).
  void* handle = isolation == Isolation::kNamespace
                     ? dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL)
                     : dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) {
    const char* e = dlerror();
    return FailedPrecondition("sentencepiece module " + path +
                              ": cannot load it: " + (e ? e : "unknown error"));
  }
  const auto version = Symbol<decltype(&u2sp_abi_version)>(handle, "u2sp_abi_version");
  auto m = std::make_unique<Module>();
  m->path = path;
  m->load = Symbol<decltype(&u2sp_load)>(handle, "u2sp_load");
  m->encode = Symbol<decltype(&u2sp_encode)>(handle, "u2sp_encode");
  m->free = Symbol<decltype(&u2sp_free)>(handle, "u2sp_free");
  if (version == nullptr || m->load == nullptr || m->encode == nullptr || m->free == nullptr) {
    dlclose(handle);
    return FailedPrecondition("sentencepiece module " + path +
                              ": not a u2serve sentencepiece module (u2sp_* functions missing)");
  }
  if (const int v = version(); v != U2_SENTENCEPIECE_ABI_VERSION) {
    dlclose(handle);
    return FailedPrecondition("sentencepiece module " + path + " has interface version " + std::to_string(v) +
                              ", this program needs " + std::to_string(U2_SENTENCEPIECE_ABI_VERSION) +
                              ": rebuild it (target u2_sentencepiece) with the program");
  }
  const Module* out = m.get();
  loaded->emplace(key, std::move(m));
  return out;
}

// Receives what the module reports; nothing may throw back into it.
struct Received {
  std::vector<std::string> pieces;
  std::string error;
  bool out_of_memory = false;
};

void ReceivePiece(void* context, const char* data, size_t size) noexcept {
  auto* r = static_cast<Received*>(context);
  try {
    r->pieces.emplace_back(data, size);
  } catch (...) {
    r->out_of_memory = true;
  }
}

void ReceiveError(void* context, const char* data, size_t size) noexcept {
  auto* r = static_cast<Received*>(context);
  try {
    r->error.assign(data, size);
  } catch (...) {
    r->out_of_memory = true;
  }
}

// ---- Text as Python sees it: code points, its whitespace, its str.upper.

// Python's str of UTF-8 bytes; false (with the offending byte's offset in `bad`) if they are not UTF-8.
bool DecodeUtf8(std::string_view s, std::u32string* out, size_t* bad = nullptr) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    if (bad != nullptr) *bad = i;
    const auto b = static_cast<unsigned char>(s[i]);
    char32_t c = 0;
    size_t n = 0;
    if (b < 0x80) {
      c = b, n = 1;
    } else if (b >= 0xC2 && b < 0xE0) {
      c = b & 0x1F, n = 2;
    } else if (b >= 0xE0 && b < 0xF0) {
      c = b & 0x0F, n = 3;
    } else if (b >= 0xF0 && b < 0xF5) {
      c = b & 0x07, n = 4;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      c = (c << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000))
      return false;
    out->push_back(c);
    i += n;
  }
  return true;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string Utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

// Python's str.isspace, which str.strip() strips.
bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool IsBlank(std::u32string_view s) { return std::all_of(s.begin(), s.end(), IsPythonSpace); }

std::u32string_view Strip(std::u32string_view s) {
  while (!s.empty() && IsPythonSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsPythonSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsCjk(char32_t c) { return c >= 0x4E00 && c <= 0x9FFF; }

// Unicode's unconditional one-to-many upper-case mappings (SpecialCasing.txt), which Python's
// str.upper applies and towupper cannot express. Writes up to 3 code points; returns how many
// (0: none applies).
int SpecialUpper(char32_t c, char32_t out[3]) {
  if (c >= 0x1F80 && c <= 0x1FAF) {  // Greek with ypogegrammeni: the capital without it, then IOTA
    static constexpr char32_t kBase[] = {0x1F08, 0x1F28, 0x1F68};
    out[0] = kBase[(c - 0x1F80) >> 4] + (c & 7);
    out[1] = 0x399;
    return 2;
  }
  struct Entry {
    char32_t from;
    char32_t to[3];
  };
  static constexpr Entry kTable[] = {
      {0x00DF, {0x53, 0x53}},          {0x0149, {0x2BC, 0x4E}},         {0x01F0, {0x4A, 0x30C}},
      {0x0390, {0x399, 0x308, 0x301}}, {0x03B0, {0x3A5, 0x308, 0x301}}, {0x0587, {0x535, 0x552}},
      {0x1E96, {0x48, 0x331}},         {0x1E97, {0x54, 0x308}},         {0x1E98, {0x57, 0x30A}},
      {0x1E99, {0x59, 0x30A}},         {0x1E9A, {0x41, 0x2BE}},         {0x1F50, {0x3A5, 0x313}},
      {0x1F52, {0x3A5, 0x313, 0x300}}, {0x1F54, {0x3A5, 0x313, 0x301}}, {0x1F56, {0x3A5, 0x313, 0x342}},
      {0x1FB2, {0x1FBA, 0x399}},       {0x1FB3, {0x391, 0x399}},        {0x1FB4, {0x386, 0x399}},
      {0x1FB6, {0x391, 0x342}},        {0x1FB7, {0x391, 0x342, 0x399}}, {0x1FBC, {0x391, 0x399}},
      {0x1FC2, {0x1FCA, 0x399}},       {0x1FC3, {0x397, 0x399}},        {0x1FC4, {0x389, 0x399}},
      {0x1FC6, {0x397, 0x342}},        {0x1FC7, {0x397, 0x342, 0x399}}, {0x1FCC, {0x397, 0x399}},
      {0x1FD2, {0x399, 0x308, 0x300}}, {0x1FD3, {0x399, 0x308, 0x301}}, {0x1FD6, {0x399, 0x342}},
      {0x1FD7, {0x399, 0x308, 0x342}}, {0x1FE2, {0x3A5, 0x308, 0x300}}, {0x1FE3, {0x3A5, 0x308, 0x301}},
      {0x1FE4, {0x3A1, 0x313}},        {0x1FE6, {0x3A5, 0x342}},        {0x1FE7, {0x3A5, 0x308, 0x342}},
      {0x1FF2, {0x1FFA, 0x399}},       {0x1FF3, {0x3A9, 0x399}},        {0x1FF4, {0x38F, 0x399}},
      {0x1FF6, {0x3A9, 0x342}},        {0x1FF7, {0x3A9, 0x342, 0x399}}, {0x1FFC, {0x3A9, 0x399}},
      {0xFB00, {0x46, 0x46}},          {0xFB01, {0x46, 0x49}},          {0xFB02, {0x46, 0x4C}},
      {0xFB03, {0x46, 0x46, 0x49}},    {0xFB04, {0x46, 0x46, 0x4C}},    {0xFB05, {0x53, 0x54}},
      {0xFB06, {0x53, 0x54}},          {0xFB13, {0x544, 0x546}},        {0xFB14, {0x544, 0x535}},
      {0xFB15, {0x544, 0x53B}},        {0xFB16, {0x54E, 0x546}},        {0xFB17, {0x544, 0x53D}},
  };
  const auto it = std::lower_bound(std::begin(kTable), std::end(kTable), c,
                                   [](const Entry& e, char32_t v) { return e.from < v; });
  if (it == std::end(kTable) || it->from != c) return 0;
  int n = 0;
  for (char32_t t : it->to) {
    if (t == 0) break;
    out[n++] = t;
  }
  return n;
}

// The C.UTF-8 locale's case mapping is Unicode's simple one, the same as Python's for every code
// point that upper-cases to one code point (checked against Python 3.11 for all of them).
locale_t Utf8Locale() {
  static const locale_t locale = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    if (l == static_cast<locale_t>(nullptr))
      l = newlocale(LC_CTYPE_MASK, "C.utf8", static_cast<locale_t>(nullptr));
    return l;
  }();
  return locale;
}

std::u32string PythonUpper(std::u32string_view s) {
  const locale_t locale = Utf8Locale();
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
      continue;
    }
    char32_t special[3];
    if (const int n = SpecialUpper(c, special); n > 0) {
      out.append(special, static_cast<size_t>(n));
    } else if (locale != static_cast<locale_t>(nullptr)) {
      out.push_back(static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), locale)));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Python's re.split(r"(\[[^\[\]]+\]|<[^<>]+>|{[^{}]+})", s): the text between symbols and the
// symbols themselves, in order (empty strings included, as re.split gives them).
std::vector<std::u32string_view> SplitAtSymbols(std::u32string_view s) {
  std::vector<std::u32string_view> parts;
  size_t last = 0, i = 0;
  while (i < s.size()) {
    const char32_t open = s[i];
    const char32_t close = open == '[' ? ']' : open == '<' ? '>' : open == '{' ? '}' : 0;
    if (close != 0) {
      size_t j = i + 1;
      while (j < s.size() && s[j] != open && s[j] != close) ++j;
      if (j < s.size() && s[j] == close && j > i + 1) {
        parts.push_back(s.substr(last, i - last));
        parts.push_back(s.substr(i, j + 1 - i));
        i = last = j + 1;
        continue;
      }
    }
    ++i;
  }
  parts.push_back(s.substr(last));
  return parts;
}

}  // namespace

struct BpeTokenizer::Impl {
  const Module* module = nullptr;
  u2sp_model* model = nullptr;
  std::string model_path;
  bool has_symbols = false;  // a symbols file was given (WeNet then splits at [..] <..> {..})
  std::vector<std::string> symbols;

  ~Impl() {
    if (model != nullptr) module->free(model);
  }

  // WeNet's tokenize_by_bpe_model on one part.
  Status Encode(std::u32string_view part, std::vector<std::string>* tokens) const {
    const std::u32string upper = PythonUpper(part);
    const std::u32string_view text = upper;
    size_t start = 0;
    auto flush = [&](size_t end) -> Status {
      const std::u32string_view chunk = text.substr(start, end - start);
      if (IsBlank(chunk)) return Status::Ok();
      const std::string utf8 = Utf8(chunk);
      Received r;
      if (module->encode(model, utf8.data(), utf8.size(), ReceivePiece, ReceiveError, &r) != 0) {
        return Internal("bpe model " + model_path + ": sentencepiece cannot encode '" + utf8 +
                        "': " + r.error);
      }
      if (r.out_of_memory) return ResourceExhausted("bpe model " + model_path + ": out of memory");
      for (std::string& p : r.pieces) tokens->push_back(std::move(p));
      return Status::Ok();
    };
    for (size_t i = 0; i < text.size(); ++i) {
      if (!IsCjk(text[i])) continue;
      U2_RETURN_IF_ERROR(flush(i));
      tokens->push_back(Utf8(text.substr(i, 1)));
      start = i + 1;
    }
    return flush(text.size());
  }
};

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::~BpeTokenizer() = default;

const std::string& BpeTokenizer::module_path() const { return impl_->module->path; }

StatusOr<std::shared_ptr<const BpeTokenizer>> BpeTokenizer::Load(const std::string& model_path,
                                                                 const BpeTokenizerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->model_path = model_path;
  if (!options.non_lang_syms.empty()) {
    std::ifstream in(options.non_lang_syms, std::ios::binary);
    if (!in || !IsFile(options.non_lang_syms))
      return NotFound("non-language symbols " + options.non_lang_syms + ": cannot open file");
    impl->has_symbols = true;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::u32string decoded;
      if (!DecodeUtf8(line, &decoded)) {
        return InvalidArgument("non-language symbols " + options.non_lang_syms + " line " +
                               std::to_string(n) + ": not UTF-8");
      }
      // WeNet reads each line stripped; a blank line can never equal a part of the text.
      const std::u32string_view symbol = Strip(decoded);
      if (!symbol.empty()) impl->symbols.push_back(Utf8(symbol));
    }
    if (in.bad()) return DataLoss("non-language symbols " + options.non_lang_syms + ": read error");
  }
  if (!IsFile(model_path) || !std::ifstream(model_path, std::ios::binary))
    return NotFound("bpe model " + model_path + ": cannot open file");

  Isolation isolation = options.isolation;
  if (isolation == Isolation::kAuto)
    isolation = U2_BPE_SANITIZED ? Isolation::kNamespace : Isolation::kDeepBind;
  U2_ASSIGN_OR_RETURN(const std::string module_path, FindModule(options.module));
  U2_ASSIGN_OR_RETURN(impl->module, OpenModule(module_path, isolation));
  Received r;
  impl->model = impl->module->load(model_path.c_str(), ReceiveError, &r);
  if (impl->model == nullptr) {
    return InvalidArgument("bpe model " + model_path + ": sentencepiece cannot load it: " + r.error);
  }
  return std::shared_ptr<const BpeTokenizer>(new BpeTokenizer(std::move(impl)));
}

StatusOr<std::vector<std::string>> BpeTokenizer::Pieces(std::string_view text) const {
  std::u32string decoded;
  // The text itself stays out of the message: it is not UTF-8, and messages go out as JSON.
  if (size_t bad = 0; !DecodeUtf8(text, &decoded, &bad))
    return InvalidArgument("the text is not UTF-8 (byte " + std::to_string(bad) + ")");
  const std::u32string_view line = Strip(decoded);
  std::vector<std::string> tokens;
  if (!impl_->has_symbols) {
    U2_RETURN_IF_ERROR(impl_->Encode(line, &tokens));
    return tokens;
  }
  const std::u32string upper = PythonUpper(line);
  for (const std::u32string_view part : SplitAtSymbols(upper)) {
    if (IsBlank(part)) continue;
    std::string utf8 = Utf8(part);
    if (std::find(impl_->symbols.begin(), impl_->symbols.end(), utf8) != impl_->symbols.end()) {
      tokens.push_back(std::move(utf8));
    } else {
      U2_RETURN_IF_ERROR(impl_->Encode(part, &tokens));
    }
  }
  return tokens;
}

}  // namespace u2
