#include "server/metrics.h"

#include <string>

namespace sparsed::server {
namespace {

// One bucket set per latency, spanning what serving sees (vLLM's ranges): a 2 s boundary for the
// time-to-first-token alert, end-to-end up to two hours.
prometheus::Histogram::BucketBoundaries QueueBuckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600};
}
prometheus::Histogram::BucketBoundaries TtftBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1,
          2,     2.5,   5,    7.5,  10,   20,   40,   80,  160,  640, 2560};
}
prometheus::Histogram::BucketBoundaries ItlBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
          0.4,   0.5,    0.75,  1,    2.5,   5,    7.5,   10,  20,   40,  80};
}
prometheus::Histogram::BucketBoundaries E2eBuckets() {
  return {0.1, 0.3, 0.5, 0.8, 1,  1.5, 2,   2.5, 5,   10,   15,
          20,  30,  40,  50,  60, 120, 240, 480, 960, 1920, 7680};
}
prometheus::Histogram::BucketBoundaries LengthBuckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
}

}  // namespace

Metrics::Metrics(prometheus::Registry& reg, int num_layers, const std::string& sparsity_mode,
                 const prometheus::Labels& model)
    : queue_(prometheus::BuildHistogram()
                 .Name("sparsed_queue_time_seconds")
                 .Help("Time from submission to first scheduling")
                 .Labels(model)
                 .Register(reg)
                 .Add({}, QueueBuckets())),
      ttft_(prometheus::BuildHistogram()
                .Name("sparsed_time_to_first_token_seconds")
                .Help("Time from submission to the first generated token")
                .Labels(model)
                .Register(reg)
                .Add({}, TtftBuckets())),
      itl_(prometheus::BuildHistogram()
               .Name("sparsed_inter_token_latency_seconds")
               .Help("Time between consecutive streamed tokens of a request")
               .Labels(model)
               .Register(reg)
               .Add({}, ItlBuckets())),
      e2e_(prometheus::BuildHistogram()
               .Name("sparsed_request_duration_seconds")
               .Help("Time from submission to the end of a request")
               .Labels(model)
               .Register(reg)
               .Add({}, E2eBuckets())),
      prompt_len_(prometheus::BuildHistogram()
                      .Name("sparsed_request_prompt_tokens")
                      .Help("Prompt length of finished requests, in tokens")
                      .Labels(model)
                      .Register(reg)
                      .Add({}, LengthBuckets())),
      generated_len_(prometheus::BuildHistogram()
                         .Name("sparsed_request_generated_tokens")
                         .Help("Tokens generated per finished request")
                         .Labels(model)
                         .Register(reg)
                         .Add({}, LengthBuckets())),
      requests_(prometheus::BuildCounter()
                    .Name("sparsed_requests_total")
                    .Help("Requests by outcome")
                    .Labels(model)
                    .Register(reg)),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("sparsed_prompt_tokens_total")
                         .Help("Prompt tokens of finished requests")
                         .Labels(model)
                         .Register(reg)
                         .Add({})),
      generated_tokens_(prometheus::BuildCounter()
                            .Name("sparsed_generated_tokens_total")
                            .Help("Generated tokens")
                            .Labels(model)
                            .Register(reg)
                            .Add({})),
      running_(prometheus::BuildGauge()
                   .Name("sparsed_running_sequences")
                   .Help("Sequences in the running batch")
                   .Labels(model)
                   .Register(reg)
                   .Add({})),
      waiting_(prometheus::BuildGauge()
                   .Name("sparsed_waiting_sequences")
                   .Help("Sequences waiting for admission")
                   .Labels(model)
                   .Register(reg)
                   .Add({})),
      kv_used_(prometheus::BuildGauge()
                   .Name("sparsed_kv_blocks_used")
                   .Help("KV cache blocks in use")
                   .Labels(model)
                   .Register(reg)
                   .Add({})),
      kv_total_(prometheus::BuildGauge()
                    .Name("sparsed_kv_blocks_capacity")
                    .Help("KV cache blocks")
                    .Labels(model)
                    .Register(reg)
                    .Add({})),
      kv_usage_(prometheus::BuildGauge()
                    .Name("sparsed_kv_cache_usage_ratio")
                    .Help("Fraction of the KV cache held by requests, in [0, 1] (blocks only in "
                          "the prefix cache count as free): what a cluster's endpoint picker "
                          "reads as KV-cache utilization")
                    .Labels(model)
                    .Register(reg)
                    .Add({})),
      preemptions_(prometheus::BuildCounter()
                       .Name("sparsed_preemptions_total")
                       .Help("Sequences preempted for lack of KV blocks")
                       .Labels(model)
                       .Register(reg)
                       .Add({})),
      kv_cached_(prometheus::BuildGauge()
                     .Name("sparsed_kv_blocks_cached")
                     .Help("KV cache blocks in the prefix cache (in use or reclaimable)")
                     .Labels(model)
                     .Register(reg)
                     .Add({})),
      prefix_queries_(prometheus::BuildCounter()
                          .Name("sparsed_prefix_cache_queries_total")
                          .Help("Prompt tokens looked up in the prefix cache at admission")
                          .Labels(model)
                          .Register(reg)
                          .Add({})),
      prefix_hits_(prometheus::BuildCounter()
                       .Name("sparsed_prefix_cache_hits_total")
                       .Help("Prompt tokens found in the prefix cache (prefill skipped)")
                       .Labels(model)
                       .Register(reg)
                       .Add({})),
      engine_healthy_(
          prometheus::BuildGauge()
              .Name("sparsed_engine_healthy")
              .Help("1 while engine steps succeed; 0 after --unhealthy_after_failed_steps "
                    "failures in a row (health then says NOT_SERVING)")
              .Labels(model)
              .Register(reg)
              .Add({})),
      step_failures_(prometheus::BuildCounter()
                         .Name("sparsed_engine_step_failures_total")
                         .Help("Engine steps that failed (their sequences ended in errors)")
                         .Labels(model)
                         .Register(reg)
                         .Add({})),
      batch_size_(
          prometheus::BuildHistogram()
              .Name("sparsed_batch_sequences")
              .Help("Sequences per engine step")
              .Labels(model)
              .Register(reg)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128})),
      batch_tokens_(
          prometheus::BuildHistogram()
              .Name("sparsed_batch_tokens")
              .Help("Tokens per engine step")
              .Labels(model)
              .Register(reg)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                               512, 1024, 2048})),
      step_phase_(prometheus::BuildHistogram()
                      .Name("sparsed_step_phase_seconds")
                      .Help("Engine step time by phase")
                      .Labels(model)
                      .Register(reg)),
      union_ratio_(
          prometheus::BuildHistogram()
              .Name("sparsed_ffn_union_ratio")
              .Help(
                  "Union of active FFN neurons per step over layers, as a fraction of the neurons")
              .Labels(model)
              .Register(reg)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                                               0.6, 0.7, 0.8, 0.9, 0.95, 1.0})),
      rows_skipped_(prometheus::BuildCounter()
                        .Name("sparsed_ffn_rows_skipped_total")
                        .Help("FFN up/down weight rows not read thanks to sparsity")
                        .Labels(model)
                        .Register(reg)
                        .Add({})),
      rows_total_(prometheus::BuildCounter()
                      .Name("sparsed_ffn_rows_total")
                      .Help("FFN up/down weight rows a dense step would read")
                      .Labels(model)
                      .Register(reg)
                      .Add({})) {
  engine_healthy_.Set(1);
  const prometheus::Histogram::BucketBoundaries phase_buckets{0.0001, 0.0005, 0.001, 0.005, 0.01,
                                                              0.05,   0.1,    0.5,   1,     5};
  phase_schedule_ = &step_phase_.Add({{"phase", "schedule"}}, phase_buckets);
  phase_forward_ = &step_phase_.Add({{"phase", "forward"}}, phase_buckets);
  phase_sample_ = &step_phase_.Add({{"phase", "sample"}}, phase_buckets);
  auto& active =
      prometheus::BuildGauge()
          .Name("sparsed_ffn_active_ratio")
          .Help("Mean fraction of FFN neurons active per token in the last step, by layer")
          .Labels(model)
          .Register(reg);
  auto& uni = prometheus::BuildGauge()
                  .Name("sparsed_ffn_layer_union_ratio")
                  .Help("Union of active FFN neurons in the last step, by layer")
                  .Labels(model)
                  .Register(reg);
  // Counters beside the gauges: rates over a window stay right on an idle daemon, whose gauges
  // keep their last step's values.
  auto counter = [&](const char* name,
                     const char* help) -> prometheus::Family<prometheus::Counter>& {
    return prometheus::BuildCounter().Name(name).Help(help).Labels(model).Register(reg);
  };
  auto& active_n = counter("sparsed_ffn_active_neurons_total",
                           "Σ over tokens of active FFN neurons, by layer (÷ "
                           "sparsed_ffn_token_neurons_total: activation ratio)");
  auto& token_n =
      counter("sparsed_ffn_token_neurons_total", "Σ over tokens of FFN neurons, by layer");
  auto& union_n = counter("sparsed_ffn_union_neurons_total",
                          "Σ over steps of the union of active FFN neurons, by layer (÷ "
                          "sparsed_ffn_step_neurons_total: union ratio)");
  auto& step_n = counter("sparsed_ffn_step_neurons_total", "Σ over steps of FFN neurons, by layer");
  for (int l = 0; l < num_layers; ++l) {
    const prometheus::Labels layer = {{"layer", std::to_string(l)}};
    layer_active_.push_back(&active.Add(layer));
    layer_union_.push_back(&uni.Add(layer));
    layer_counters_.push_back(
        {&active_n.Add(layer), &token_n.Add(layer), &union_n.Add(layer), &step_n.Add(layer)});
  }
  prometheus::BuildGauge()
      .Name("sparsed_sparsity_mode_info")
      .Help("The FFN sparsity mode (value 1)")
      .Labels(model)
      .Register(reg)
      .Add({{"mode", sparsity_mode}})
      .Set(1);
  for (const char* outcome :
       {"finished", "stopped", "cancelled", "deadline", "rejected", "error"}) {
    requests_.Add({{"outcome", outcome}});
  }
}

void Metrics::OnStep(const StepReport& r) {
  running_.Set(r.running);
  waiting_.Set(r.waiting);
  kv_used_.Set(r.kv_blocks_used);
  kv_total_.Set(r.kv_blocks_total);
  kv_usage_.Set(r.kv_blocks_total > 0 ? static_cast<double>(r.kv_blocks_used) / r.kv_blocks_total
                                      : 0.0);
  if (r.preempted) preemptions_.Increment(r.preempted);
  kv_cached_.Set(r.kv_blocks_cached);
  engine_healthy_.Set(r.engine_healthy ? 1 : 0);
  if (r.step_failed) step_failures_.Increment();
  if (r.prefix_query_tokens) prefix_queries_.Increment(static_cast<double>(r.prefix_query_tokens));
  if (r.prefix_hit_tokens) prefix_hits_.Increment(static_cast<double>(r.prefix_hit_tokens));
  if (r.sequences == 0) return;  // an idle iteration that only freed blocks
  batch_size_.Observe(r.sequences);
  batch_tokens_.Observe(r.tokens);
  phase_schedule_->Observe(absl::ToDoubleSeconds(r.schedule_time));
  phase_forward_->Observe(absl::ToDoubleSeconds(r.forward_time));
  phase_sample_->Observe(absl::ToDoubleSeconds(r.sample_time));
  double uni_mean = 0;
  for (size_t l = 0; l < r.layer_stats.size() && l < layer_active_.size(); ++l) {
    const FfnStats& s = r.layer_stats[l];
    layer_active_[l]->Set(s.active_ratio());
    layer_union_[l]->Set(s.union_ratio());
    const LayerCounters& c = layer_counters_[l];
    c.active->Increment(static_cast<double>(s.active_sum));
    c.token_neurons->Increment(static_cast<double>(s.tokens) * static_cast<double>(s.neurons));
    c.union_neurons->Increment(static_cast<double>(s.union_size));
    c.step_neurons->Increment(static_cast<double>(s.neurons));
    uni_mean += s.union_ratio() / r.layer_stats.size();
    rows_skipped_.Increment(2.0 * s.rows_skipped);
    rows_total_.Increment(2.0 * s.neurons);
  }
  if (!r.layer_stats.empty()) union_ratio_.Observe(uni_mean);
}

void Metrics::OnFinished(FinishReason reason, const RequestStats& st) {
  const char* outcome = "error";
  switch (reason) {
    case FinishReason::kLength:
      outcome = "finished";
      break;
    case FinishReason::kStop:
      outcome = "stopped";
      break;
    case FinishReason::kCancelled:
    case FinishReason::kShutdown:
      outcome = "cancelled";
      break;
    case FinishReason::kDeadline:
      outcome = "deadline";
      break;
    case FinishReason::kError:
      break;
  }
  requests_.Add({{"outcome", outcome}}).Increment();
  // A request that never left the queue (its deadline passed, it was cancelled) waited all along.
  const bool scheduled = st.first_scheduled != absl::InfinitePast();
  queue_.Observe(absl::ToDoubleSeconds(scheduled ? st.queue_time : st.total_time));
  e2e_.Observe(absl::ToDoubleSeconds(st.total_time));
  prompt_tokens_.Increment(static_cast<double>(st.prompt_tokens));
  generated_tokens_.Increment(static_cast<double>(st.generated_tokens));
  prompt_len_.Observe(static_cast<double>(st.prompt_tokens));
  generated_len_.Observe(static_cast<double>(st.generated_tokens));
}

void Metrics::OnRejected() { requests_.Add({{"outcome", "rejected"}}).Increment(); }

void Metrics::OnInterToken(double seconds) { itl_.Observe(seconds); }

void Metrics::OnFirstToken(double seconds) { ttft_.Observe(seconds); }

}  // namespace sparsed::server
