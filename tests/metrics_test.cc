// The daemon's Prometheus metrics (server/metrics.cc) fed known step reports and finishes, read
// back from the registry: names, labels, values, histogram counts and sums.
#include "server/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

namespace sparsed::server {
namespace {

// The value of the series `name` whose labels include every pair of `want` (counter or gauge
// value; a histogram's sample count); fails the test when there is none.
double Value(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
             const std::vector<std::pair<std::string, std::string>>& want = {},
             double* histogram_sum = nullptr) {
  for (const auto& f : families) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      bool match = true;
      for (const auto& [k, v] : want) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (!match) continue;
      switch (f.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          if (histogram_sum != nullptr) *histogram_sum = m.histogram.sample_sum;
          return static_cast<double>(m.histogram.sample_count);
        default:
          break;
      }
    }
  }
  ADD_FAILURE() << "no series " << name;
  return -1;
}

TEST(MetricsTest, StepReportsAndFinishesReadBack) {
  prometheus::Registry registry;
  Metrics m(registry, 2, "exact", {{"model_name", "tiny"}});
  auto families = registry.Collect();
  EXPECT_EQ(Value(families, "sparsed_sparsity_mode_info", {{"mode", "exact"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_engine_healthy", {{"model_name", "tiny"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "finished"}}), 0);

  StepReport r;
  r.sequences = 3;
  r.tokens = 10;
  r.running = 3;
  r.waiting = 2;
  r.kv_blocks_used = 7;
  r.kv_blocks_total = 64;
  r.kv_blocks_cached = 4;
  r.preempted = 1;
  r.prefix_query_tokens = 40;
  r.prefix_hit_tokens = 16;
  r.schedule_time = absl::Microseconds(50);
  r.forward_time = absl::Milliseconds(20);
  r.sample_time = absl::Microseconds(300);
  FfnStats l0;
  l0.tokens = 10;
  l0.neurons = 100;
  l0.active_sum = 50;  // 5% active
  l0.union_size = 20;
  l0.rows_skipped = 80;
  FfnStats l1 = l0;
  l1.union_size = 40;
  l1.rows_skipped = 60;
  r.layer_stats = {l0, l1};
  m.OnStep(r);
  r.engine_healthy = false;
  r.step_failed = true;
  r.sequences = 0;  // an idle iteration: gauges only
  m.OnStep(r);

  families = registry.Collect();
  EXPECT_EQ(Value(families, "sparsed_running_sequences"), 3);
  EXPECT_EQ(Value(families, "sparsed_waiting_sequences"), 2);
  EXPECT_EQ(Value(families, "sparsed_kv_blocks_used"), 7);
  EXPECT_EQ(Value(families, "sparsed_kv_blocks_capacity"), 64);
  EXPECT_DOUBLE_EQ(Value(families, "sparsed_kv_cache_usage_ratio"), 7.0 / 64);
  EXPECT_EQ(Value(families, "sparsed_kv_blocks_cached"), 4);
  EXPECT_EQ(Value(families, "sparsed_preemptions_total"), 2);
  EXPECT_EQ(Value(families, "sparsed_prefix_cache_queries_total"), 80);
  EXPECT_EQ(Value(families, "sparsed_prefix_cache_hits_total"), 32);
  EXPECT_EQ(Value(families, "sparsed_engine_healthy"), 0);
  EXPECT_EQ(Value(families, "sparsed_engine_step_failures_total"), 1);
  double sum = 0;
  EXPECT_EQ(Value(families, "sparsed_batch_sequences", {}, &sum), 1);  // the idle one not seen
  EXPECT_EQ(sum, 3);
  EXPECT_EQ(Value(families, "sparsed_step_phase_seconds", {{"phase", "forward"}}, &sum), 1);
  EXPECT_DOUBLE_EQ(sum, 0.02);
  EXPECT_DOUBLE_EQ(Value(families, "sparsed_ffn_active_ratio", {{"layer", "0"}}), 0.05);
  EXPECT_DOUBLE_EQ(Value(families, "sparsed_ffn_layer_union_ratio", {{"layer", "1"}}), 0.4);
  EXPECT_EQ(Value(families, "sparsed_ffn_active_neurons_total", {{"layer", "1"}}), 50);
  EXPECT_EQ(Value(families, "sparsed_ffn_token_neurons_total", {{"layer", "0"}}), 1000);
  EXPECT_EQ(Value(families, "sparsed_ffn_union_neurons_total", {{"layer", "1"}}), 40);
  EXPECT_EQ(Value(families, "sparsed_ffn_step_neurons_total", {{"layer", "0"}}), 100);
  // Up and down rows: two per neuron.
  EXPECT_EQ(Value(families, "sparsed_ffn_rows_skipped_total"), 2 * (80 + 60));
  EXPECT_EQ(Value(families, "sparsed_ffn_rows_total"), 2 * 200);
  EXPECT_EQ(Value(families, "sparsed_ffn_union_ratio", {}, &sum), 1);
  EXPECT_DOUBLE_EQ(sum, 0.3);  // mean over layers of 0.2 and 0.4

  RequestStats st;
  st.queue_time = absl::Milliseconds(5);
  st.total_time = absl::Milliseconds(900);
  st.first_scheduled = absl::Now();
  st.prompt_tokens = 12;
  st.generated_tokens = 30;
  m.OnFinished(FinishReason::kLength, st);
  m.OnFinished(FinishReason::kShutdown, st);
  RequestStats never;  // never scheduled: its whole life counts as queue time
  never.total_time = absl::Seconds(2);
  m.OnFinished(FinishReason::kDeadline, never);
  m.OnRejected();
  m.OnFirstToken(0.25);
  m.OnInterToken(0.01);
  m.OnInterToken(0.03);
  families = registry.Collect();
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "finished"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "cancelled"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "deadline"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "rejected"}}), 1);
  EXPECT_EQ(Value(families, "sparsed_requests_total", {{"outcome", "error"}}), 0);
  EXPECT_EQ(Value(families, "sparsed_prompt_tokens_total"), 24);
  EXPECT_EQ(Value(families, "sparsed_generated_tokens_total"), 60);
  EXPECT_EQ(Value(families, "sparsed_queue_time_seconds", {}, &sum), 3);
  EXPECT_DOUBLE_EQ(sum, 0.005 + 0.005 + 2.0);
  EXPECT_EQ(Value(families, "sparsed_request_duration_seconds", {}, &sum), 3);
  EXPECT_DOUBLE_EQ(sum, 0.9 + 0.9 + 2.0);
  EXPECT_EQ(Value(families, "sparsed_time_to_first_token_seconds", {}, &sum), 1);
  EXPECT_DOUBLE_EQ(sum, 0.25);
  EXPECT_EQ(Value(families, "sparsed_inter_token_latency_seconds", {}, &sum), 2);
  EXPECT_DOUBLE_EQ(sum, 0.04);
}

}  // namespace
}  // namespace sparsed::server
