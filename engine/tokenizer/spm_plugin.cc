// The SentencePiece plugin: the C interface of spm_plugin_api.h over libsentencepiece.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/tokenizer/spm_plugin_api.h"

namespace {

void WriteError(const std::string& msg, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(msg.size(), err_len - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

int CopyOut(const std::string& s, char* out, int cap) {
  if (static_cast<int>(s.size()) <= cap && out != nullptr) std::memcpy(out, s.data(), s.size());
  return static_cast<int>(s.size());
}

}  // namespace

extern "C" {

void* spd_load(const char* path, char* err, size_t err_len) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    WriteError(status.ToString(), err, err_len);
    delete sp;
    return nullptr;
  }
  return sp;
}

void spd_free(void* handle) { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

int spd_encode(void* handle, const char* text, size_t text_len, int32_t* out, int cap) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  std::vector<int> ids;
  if (!sp->Encode(std::string(text, text_len), &ids).ok()) return -1;
  if (static_cast<int>(ids.size()) <= cap && out != nullptr) {
    for (size_t i = 0; i < ids.size(); ++i) out[i] = ids[i];
  }
  return static_cast<int>(ids.size());
}

int spd_decode(void* handle, const int32_t* ids, int n, char* out, int cap) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  std::vector<int> v(ids, ids + n);
  std::string text;
  if (!sp->Decode(v, &text).ok()) return -1;
  return CopyOut(text, out, cap);
}

int spd_id_to_piece(void* handle, int32_t id, char* out, int cap) {
  auto* sp = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  if (id < 0 || id >= sp->GetPieceSize()) return -1;
  return CopyOut(sp->IdToPiece(id), out, cap);
}

int spd_vocab_size(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
}
int spd_bos_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->bos_id();
}
int spd_eos_id(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->eos_id();
}

int spd_train(const char* args, char* err, size_t err_len) {
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    WriteError(status.ToString(), err, err_len);
    return 1;
  }
  return 0;
}

}  // extern "C"
