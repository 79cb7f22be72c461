// tokenizer_bench: what tokenization costs a request, as the server pays it: loading the tokenizer,
// encoding a prompt (short, long), streaming a continuation through the incremental detokenizer
// (one DecodeAfter per generated token), and encoding from several threads at once.
//
//   tokenizer_bench [--model models/sparsed-tiny] [--text models/corpus/heldout.txt] [--reps 5]
//
// Prints one markdown table: min and median over --reps repetitions of each case.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/tokenizer.h"
#include "scheduler/detokenizer.h"

ABSL_FLAG(std::string, model, "models/sparsed-tiny", "Model directory with tokenizer.model.");
ABSL_FLAG(std::string, text, "models/corpus/heldout.txt", "Text to tokenize.");
ABSL_FLAG(int, reps, 5, "Repetitions of each case.");

namespace sparsed {
namespace {

double Seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Row {
  std::string name;
  std::vector<double> s;  // seconds per unit, one per repetition
  std::string unit;
};

void Print(const std::vector<Row>& rows) {
  std::printf("| case | unit | min | median |\n|---|---|---:|---:|\n");
  for (Row r : rows) {
    std::sort(r.s.begin(), r.s.end());
    std::printf("| %s | %s | %.1f µs | %.1f µs |\n", r.name.c_str(), r.unit.c_str(),
                r.s.front() * 1e6, r.s[r.s.size() / 2] * 1e6);
  }
}

int Main() {
  const std::string model = absl::GetFlag(FLAGS_model) + "/tokenizer.model";
  std::ifstream in(absl::GetFlag(FLAGS_text));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.size() < 20000) {
    std::fprintf(stderr, "error: %s: need at least 20000 bytes of text\n",
                 absl::GetFlag(FLAGS_text).c_str());
    return 1;
  }
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  const std::string prompt = text.substr(0, 400);         // ~100 tokens
  const std::string long_prompt = text.substr(0, 20000);  // ~5K tokens
  std::vector<Row> rows;

  Row load{"load tokenizer", {}, "per load"};
  std::unique_ptr<Tokenizer> tok;
  for (int r = 0; r < reps; ++r) {
    load.s.push_back(Seconds([&] {
      auto t = Tokenizer::Load(model);
      if (!t.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(t.status().message()).c_str());
        std::exit(1);
      }
      tok = *std::move(t);
    }));
  }
  rows.push_back(load);

  const int n_prompt = static_cast<int>(tok->Encode(prompt)->size());
  const int n_long = static_cast<int>(tok->Encode(long_prompt)->size());
  Row enc{absl::StrFormat("encode a %d-token prompt", n_prompt), {}, "per request"};
  Row enc_long{absl::StrFormat("encode a %d-token prompt", n_long), {}, "per request"};
  for (int r = 0; r < reps; ++r) {
    enc.s.push_back(Seconds([&] {
                      for (int i = 0; i < 100; ++i) (void)tok->Encode(prompt);
                    }) /
                    100);
    enc_long.s.push_back(Seconds([&] { (void)tok->Encode(long_prompt); }));
  }
  rows.push_back(enc);
  rows.push_back(enc_long);

  // A 128-token stream: the continuation of the prompt, pushed one id at a time.
  const std::vector<int32_t> ids = *tok->Encode(text.substr(400, 2000));
  const std::vector<int32_t> stream(ids.begin(), ids.begin() + std::min<size_t>(128, ids.size()));
  Row detok{absl::StrFormat("detokenize a %zu-token stream", stream.size()), {}, "per token"};
  for (int r = 0; r < reps; ++r) {
    detok.s.push_back(Seconds([&] {
                        IncrementalDetokenizer d(tok.get(), {}, {ids.front()});
                        for (int32_t id : stream) (void)d.Push({id});
                        (void)d.Flush();
                      }) /
                      stream.size());
  }
  rows.push_back(detok);

  // A decode step of 64 sequences, each 32 tokens into its stream: the engine loop's
  // detokenization, one DecodeAfter per sequence vs one DecodeAfterEach for the step.
  {
    const std::vector<int32_t> context = {ids.front()};
    std::vector<std::vector<int32_t>> seqs;
    for (int i = 0; i < 64; ++i) {
      const size_t from = (static_cast<size_t>(i) * 7) % (ids.size() - 40);
      seqs.push_back(std::vector<int32_t>(ids.begin() + from, ids.begin() + from + 32));
    }
    std::vector<Tokenizer::DecodeAfterItem> items;
    for (const auto& q : seqs) items.push_back({&context, &q});
    Row one{"detokenize a 64-sequence step, one call per sequence", {}, "per step"};
    Row each{"detokenize a 64-sequence step, one call (DecodeAfterEach)", {}, "per step"};
    for (int r = 0; r < reps; ++r) {
      one.s.push_back(Seconds([&] {
                        for (const auto& q : seqs) (void)tok->DecodeAfter(context, q);
                      }) /
                      1);
      each.s.push_back(Seconds([&] { (void)tok->DecodeAfterEach(items); }));
    }
    rows.push_back(one);
    rows.push_back(each);
  }

  // Two threads encoding short prompts at once (the gRPC threads of concurrent requests).
  Row conc{absl::StrFormat("encode %d-token prompts, 2 threads", n_prompt), {}, "per request"};
  for (int r = 0; r < reps; ++r) {
    conc.s.push_back(Seconds([&] {
                       std::vector<std::thread> ts;
                       for (int t = 0; t < 2; ++t)
                         ts.emplace_back([&] {
                           for (int i = 0; i < 100; ++i) (void)tok->Encode(prompt);
                         });
                       for (auto& t : ts) t.join();
                     }) /
                     200);
  }
  rows.push_back(conc);
  Print(rows);
  return 0;
}

}  // namespace
}  // namespace sparsed

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return sparsed::Main();
}
