// C interface of the SentencePiece plugin (libsparsed_spm.so). The plugin is the only code that
// links libsentencepiece; it is loaded with dlopen(RTLD_LOCAL|RTLD_DEEPBIND) so SentencePiece's
// bundled protobuf never meets gRPC's in one symbol space. Plain C types only.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {
// Loads a tokenizer.model; returns NULL and writes a message into err on failure.
void* spd_load(const char* path, char* err, size_t err_len);
void spd_free(void* handle);
// Encodes text to ids. Returns the number of ids (written only when <= cap), or -1 on error.
int spd_encode(void* handle, const char* text, size_t text_len, int32_t* out, int cap);
// Decodes ids to UTF-8. Returns the byte length (written only when <= cap), or -1 on error.
int spd_decode(void* handle, const int32_t* ids, int n, char* out, int cap);
// The piece string of one id. Same return convention as spd_decode.
int spd_id_to_piece(void* handle, int32_t id, char* out, int cap);
int spd_vocab_size(void* handle);
int spd_bos_id(void* handle);
int spd_eos_id(void* handle);
// Trains a model with SentencePieceTrainer flags ("--input=... --model_prefix=..."). 0 on success.
int spd_train(const char* args, char* err, size_t err_len);
}
