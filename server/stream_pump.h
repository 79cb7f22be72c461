// The server-streaming generating call that every protocol's streaming Generate shares: the engine
// loop hands it token events, it writes them as fast as the client takes them, and it guards the
// daemon against a client that stops reading. What goes on the wire is the protocol's Codec's.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "scheduler/request.h"
#include "server/call_state.h"
#include "server/tsan_handoff.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {

// How a request ended, for the codec's last messages.
struct StreamEnd {
  FinishReason reason = FinishReason::kError;
  RequestStats stats;
  bool ok = false;  // the call ends with status OK (length or stop)
};

// A Codec turns events into messages:
//   void Encode(const v1::GenerateRequest& req, const std::vector<TokenEvent>& events,
//               const StreamEnd* end, std::vector<grpc::ByteBuffer>* out);
// `events` arrived since its last call (possibly none); `end` is set on its last call. It appends
// zero or more serialized messages (zero: nothing to send yet, e.g. a protocol that answers once
// at the end). Called under the call's lock, one call at a time.
//
// The call writes one message at a time; events that arrive while a write is in flight are merged
// into the next Encode, so a slow reader gets fewer, larger messages. A reader that takes no write
// for stream_write_timeout while tokens wait, or lets stream_max_pending_tokens pile up, has its
// request cancelled (its KV blocks freed) and its call ended.
template <class Codec>
class StreamingGenerate final
    : public GeneratingReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  StreamingGenerate(const CallEnv& env, grpc::CallbackServerContext* ctx,
                    absl::StatusOr<v1::GenerateRequest> req, Codec codec)
      : GeneratingReactor(env, ctx), codec_(std::move(codec)) {
    Admit(this, std::move(req));
  }
  void OnWriteDone(bool ok) override {
    TakeOver(this);
    std::unique_lock<std::mutex> l(mu_);
    writing_ = false;
    if (!out_.empty()) out_.pop_front();
    if (!ok) write_failed_ = true;
    if (!ok && !finished_) {
      l.unlock();
      call_.Cancel();  // the engine then finishes the request, and Finished ends the call
      return;
    }
    Pump(l);
  }

  // Engine-loop thread.
  void Tokens(const TokenEvent& e) {
    std::unique_lock<std::mutex> l(mu_);
    pending_.push_back(e);
    pending_tokens_ += static_cast<int64_t>(e.token_ids.size());
    if (writing_ && !stalled_ &&
        (pending_tokens_ > call_.env().stream_max_pending_tokens ||
         absl::Now() - write_started_ > call_.env().stream_write_timeout)) {
      stalled_ = true;
      const int64_t pending = pending_tokens_;
      l.unlock();
      call_.env().log_stalled(*call_.ctx(), pending);
      call_.Cancel();
      // Also end the write the client is not taking, so the call can finish.
      call_.ctx()->TryCancel();
      return;
    }
    Pump(l);
  }
  void Finished(FinishReason reason, const absl::Status& status, const RequestStats& st) {
    std::unique_lock<std::mutex> l(mu_);
    finished_ = true;
    status_ = FinalStatus(reason, status);
    end_.reason = reason;
    end_.stats = st;
    end_.ok = status_.ok();
    Pump(l);  // last: may end the call
  }

 private:
  // Starts the next write, or ends the call once everything is written; called with `l` held,
  // returns with it released. Ending the call is the last thing it does.
  void Pump(std::unique_lock<std::mutex>& l) {
    if (writing_ || done_) return l.unlock();
    if (write_failed_) {
      if (!finished_) return l.unlock();  // Finished will end it
      return End(l, nullptr);
    }
    if (out_.empty() && !encoded_end_ && (!pending_.empty() || finished_)) {
      std::vector<grpc::ByteBuffer> msgs;
      codec_.Encode(call_.request(), pending_, finished_ ? &end_ : nullptr, &msgs);
      pending_.clear();
      pending_tokens_ = 0;
      encoded_end_ = finished_;
      for (grpc::ByteBuffer& m : msgs) out_.push_back(std::move(m));
    }
    if (out_.empty()) {
      if (!encoded_end_) return l.unlock();
      return End(l, nullptr);
    }
    if (encoded_end_ && out_.size() == 1) return End(l, &out_.front());
    writing_ = true;
    write_started_ = absl::Now();
    grpc::ByteBuffer* next = &out_.front();
    l.unlock();
    HandOff(this);
    StartWrite(next);
  }
  // Ends the call with its final status, writing `last` first when given.
  void End(std::unique_lock<std::mutex>& l, grpc::ByteBuffer* last) {
    done_ = true;
    const grpc::Status st = status_;
    l.unlock();
    HandOff(this);
    if (last != nullptr) return StartWriteAndFinish(last, grpc::WriteOptions(), st);
    Finish(st);
  }

  std::mutex mu_;  // guards everything below
  Codec codec_;
  std::vector<TokenEvent> pending_;  // not yet encoded
  int64_t pending_tokens_ = 0;
  std::deque<grpc::ByteBuffer> out_;  // encoded, not yet written; the front is in flight
  bool writing_ = false, write_failed_ = false, stalled_ = false;
  bool finished_ = false, encoded_end_ = false, done_ = false;
  absl::Time write_started_ = absl::InfinitePast();
  StreamEnd end_;
  grpc::Status status_;
};

}  // namespace sparsed::server
