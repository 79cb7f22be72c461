// The framing between the daemon and its tokenizer processes (sparsed-tokenizer, see
// tokenizer_process.h): one request frame, one response frame, over a Unix stream socket.
//
//   request:  u32 length | u8 op     | payload (length - 1 bytes)
//   response: u32 length | u8 status | payload (length - 1 bytes)
//
// Integers are little-endian (both ends are the same binary's build on one machine). A status of
// kOk carries the op's result; kError carries a UTF-8 message. Payloads by op:
//   kEncode        text bytes                         -> i32 ids
//   kDecode        i32 ids                            -> text (ids outside the vocabulary skipped)
//   kDecodeAfterEach  i32 count, then per item: i32 n_context, i32 n_ids, i32 context[n_context],
//                  i32 ids[n_ids]                      -> per item: u8 status, u32 length, bytes
//                  (the text of ids as it reads after context, or the item's error message):
//                  one round trip for a whole step, or for one sequence
// On start the process sends one unsolicited response: kOk with i32 vocab_size, bos_id, eos_id,
// max_piece_bytes (the longest piece's UTF-8 length) once the model is loaded, or kError with the
// reason. In `train` mode that first response is the training's outcome (empty payload) and the
// process exits.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sparsed::tokenizer_wire {

enum Op : uint8_t { kEncode = 'E', kDecode = 'D', kDecodeAfterEach = 'M' };
enum Status : uint8_t { kOk = 0, kError = 1 };

// Frames larger than this are refused on both ends (a prompt is bounded far below it).
inline constexpr uint32_t kMaxFrame = 256u << 20;

// Writes all of `data` to `fd` (send(MSG_NOSIGNAL) on a socket: a dead peer is an error, not
// SIGPIPE). False on any error.
bool WriteAll(int fd, const void* data, size_t n);
// Reads exactly n bytes. False on error or end of stream.
bool ReadAll(int fd, void* data, size_t n);

// One frame: the tag byte (op or status) and the payload.
bool WriteFrame(int fd, uint8_t tag, const std::string& payload);
bool ReadFrame(int fd, uint8_t* tag, std::string* payload);

inline void AppendI32(std::string* out, int32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}
inline void AppendIds(std::string* out, const std::vector<int32_t>& ids) {
  out->append(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
}
// Reads i32s from `p` (its size must be a multiple of 4).
inline std::vector<int32_t> ToIds(const char* p, size_t bytes) {
  std::vector<int32_t> ids(bytes / 4);
  if (!ids.empty()) std::memcpy(ids.data(), p, ids.size() * 4);
  return ids;
}

}  // namespace sparsed::tokenizer_wire
