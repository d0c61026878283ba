// The C interface of libu2_sentencepiece.so: Debian's libsentencepiece behind a plain C API, loaded
// by decode/bpe_tokenizer.cc at run time with dlopen instead of linked into the engine.
//
// Why a separate module: Debian's libsentencepiece0 (0.1.97) carries its own copy of
// protobuf-lite and of Abseil's flags and exports their symbols (google::protobuf::*, FLAGS_help,
// ...). Linked into a program that also has libprotobuf (through gRPC) and libfst, the dynamic
// linker binds sentencepiece's references to those libraries' definitions instead of its own,
// and the program crashes at start. Loaded with RTLD_DEEPBIND (or into its own link namespace),
// sentencepiece binds to its own copies; the engine sees only these C functions.
//
// Nothing allocated on one side is freed on the other: strings reach the caller through `u2sp_sink`
// callbacks, valid for the duration of the call only. No function throws.
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a signature below changes, so a stale module file is refused, not called.
#define U2_SENTENCEPIECE_ABI_VERSION 1

// Receives `size` bytes at `data`, owned by the module and valid only during the call.
typedef void (*u2sp_sink)(void* context, const char* data, size_t size);

typedef struct u2sp_model u2sp_model;

int u2sp_abi_version(void);

// Loads the sentencepiece model file at `path`. Null on failure, after passing the reason (with
// sentencepiece's own message) to `error`.
u2sp_model* u2sp_load(const char* path, u2sp_sink error, void* context);

// Splits UTF-8 `text` into pieces exactly as sentencepiece's Encode (Python's
// SentencePieceProcessor.encode_as_pieces) does, passing each to `piece` in order. 0 on success;
// -1 after passing the reason to `error`.
int u2sp_encode(const u2sp_model* model, const char* text, size_t size, u2sp_sink piece, u2sp_sink error,
                void* context);

void u2sp_free(u2sp_model* model);

#ifdef __cplusplus
}  // extern "C"
#endif
