// sparsed-tokenizer: the process that holds SentencePiece for the daemon and the tools.
//
// SentencePiece (Debian's libsentencepiece) carries and exports its own protobuf, which cannot
// share a process with gRPC's. It lives here instead, alone, and answers the framed requests of
// tokenizer_wire.h on an inherited socket. Started by engine/tokenizer/tokenizer_process.cc:
//   sparsed-tokenizer serve FD MODEL_FILE    answer requests on FD until it closes
//   sparsed-tokenizer train FD TRAINER_FLAGS train a model, report on FD, exit
// A crash here (a malformed model, a library bug reached by hostile text) ends this process and
// fails one request; the daemon starts another.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer_wire.h"

namespace sparsed::tokenizer_wire {
namespace {

bool Error(int fd, const std::string& message) { return WriteFrame(fd, kError, message); }

// The text of ids the vocabulary knows (others are skipped, as Tokenizer::Decode promises).
bool DecodeKnown(const sentencepiece::SentencePieceProcessor& sp, const std::vector<int32_t>& ids,
                 std::string* text) {
  std::vector<int> known;
  known.reserve(ids.size());
  const int vocab = sp.GetPieceSize();
  for (int32_t id : ids) {
    if (id >= 0 && id < vocab) known.push_back(id);
  }
  return sp.Decode(known, text).ok();
}

// Decoded together with the context, minus the context's own text; plain decoding when the two
// merge (byte pieces) or there is no context.
bool DecodeAfter(const sentencepiece::SentencePieceProcessor& sp,
                 const std::vector<int32_t>& context, const std::vector<int32_t>& ids,
                 std::string* text) {
  if (!context.empty()) {
    std::string prefix, full;
    std::vector<int32_t> all = context;
    all.insert(all.end(), ids.begin(), ids.end());
    if (!DecodeKnown(sp, context, &prefix) || !DecodeKnown(sp, all, &full)) return false;
    if (full.compare(0, prefix.size(), prefix) == 0) {
      *text = full.substr(prefix.size());
      return true;
    }
  }
  return DecodeKnown(sp, ids, text);
}

bool Answer(const sentencepiece::SentencePieceProcessor& sp, int fd, uint8_t op,
            const std::string& in) {
  switch (op) {
    case kEncode: {
      std::vector<int> ids;
      const auto s = sp.Encode(in, &ids);
      if (!s.ok()) return Error(fd, "text could not be tokenized: " + s.ToString());
      std::string out;
      out.reserve(ids.size() * 4);
      for (int id : ids) AppendI32(&out, id);
      return WriteFrame(fd, kOk, out);
    }
    case kDecode: {
      if (in.size() % 4 != 0) return Error(fd, "decode: payload is not a list of int32 ids");
      std::string text;
      if (!DecodeKnown(sp, ToIds(in.data(), in.size()), &text))
        return Error(fd, "token ids could not be decoded");
      return WriteFrame(fd, kOk, text);
    }
    case kDecodeAfterEach: {
      // Reads one i32 at `*at`; false past the end.
      size_t at = 0;
      auto next = [&](int32_t* v) {
        if (in.size() - at < 4) return false;
        std::memcpy(v, in.data() + at, 4);
        at += 4;
        return true;
      };
      int32_t count = 0;
      if (!next(&count) || count < 0) return Error(fd, "decode_after_each: malformed payload");
      std::string out;
      for (int32_t i = 0; i < count; ++i) {
        int32_t nc = 0, ni = 0;
        if (!next(&nc) || !next(&ni) || nc < 0 || ni < 0 ||
            (in.size() - at) / 4 < static_cast<size_t>(nc) + static_cast<size_t>(ni))
          return Error(fd, "decode_after_each: malformed payload");
        const std::vector<int32_t> context = ToIds(in.data() + at, 4 * static_cast<size_t>(nc));
        at += 4 * static_cast<size_t>(nc);
        const std::vector<int32_t> ids = ToIds(in.data() + at, 4 * static_cast<size_t>(ni));
        at += 4 * static_cast<size_t>(ni);
        std::string text;
        const bool ok = DecodeAfter(sp, context, ids, &text);
        if (!ok) text = "token ids could not be decoded";
        out.push_back(static_cast<char>(ok ? kOk : kError));
        AppendI32(&out, static_cast<int32_t>(text.size()));
        out += text;
      }
      return WriteFrame(fd, kOk, out);
    }
    default:
      return Error(fd, "unknown request");
  }
}

int Serve(int fd, const char* model) {
  sentencepiece::SentencePieceProcessor sp;
  const auto s = sp.Load(model);
  if (!s.ok()) {
    Error(fd, s.ToString());
    return 1;
  }
  std::string hello;
  AppendI32(&hello, sp.GetPieceSize());
  AppendI32(&hello, sp.bos_id());
  AppendI32(&hello, sp.eos_id());
  int32_t longest = 1;
  for (int i = 0; i < sp.GetPieceSize(); ++i)
    longest = std::max<int32_t>(longest, static_cast<int32_t>(sp.IdToPiece(i).size()));
  AppendI32(&hello, longest);
  if (!WriteFrame(fd, kOk, hello)) return 1;
  uint8_t op = 0;
  std::string in;
  while (ReadFrame(fd, &op, &in)) {
    if (!Answer(sp, fd, op, in)) return 1;
  }
  return 0;  // the daemon closed its end
}

int Train(int fd, const char* flags) {
  const auto s = sentencepiece::SentencePieceTrainer::Train(flags);
  if (!s.ok()) {
    Error(fd, s.ToString());
    return 1;
  }
  return WriteFrame(fd, kOk, "") ? 0 : 1;
}

}  // namespace
}  // namespace sparsed::tokenizer_wire

int main(int argc, char** argv) {
  const std::string mode = argc == 4 ? argv[1] : "";
  if (mode != "serve" && mode != "train") {
    std::fprintf(stderr,
                 "sparsed-tokenizer is started by sparsed and its tools, not by hand:\n"
                 "  sparsed-tokenizer serve FD MODEL_FILE | train FD TRAINER_FLAGS\n");
    return 1;
  }
  const int fd = std::atoi(argv[2]);
  if (fd < 3) return 1;
  return mode == "serve" ? sparsed::tokenizer_wire::Serve(fd, argv[3])
                         : sparsed::tokenizer_wire::Train(fd, argv[3]);
}
