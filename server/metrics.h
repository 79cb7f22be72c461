// Prometheus metrics of the daemon (prefix sparsed_, base units). The registry is injected.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <vector>

#include "scheduler/engine_loop.h"
#include "scheduler/request.h"

namespace sparsed::server {

// Thread-safety: all methods may be called from any thread (prometheus-cpp metrics are atomic).
class Metrics {
 public:
  // `model` labels every series (e.g. {{"model_name", "sparsed-tiny"}}), so one Prometheus can
  // tell the models of several daemons apart.
  Metrics(prometheus::Registry& registry, int num_layers, const std::string& sparsity_mode,
          const prometheus::Labels& model);

  void OnStep(const StepReport& r);
  void OnFinished(FinishReason reason, const RequestStats& st);
  void OnRejected();
  void OnInterToken(double seconds);
  // When the first token is produced (not when the request ends), so a long stream's TTFT shows
  // while it runs.
  void OnFirstToken(double seconds_since_submission);

 private:
  prometheus::Histogram& queue_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& e2e_;
  prometheus::Histogram& prompt_len_;
  prometheus::Histogram& generated_len_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generated_tokens_;
  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& kv_used_;
  prometheus::Gauge& kv_total_;
  prometheus::Gauge& kv_usage_;
  prometheus::Counter& preemptions_;
  prometheus::Gauge& kv_cached_;
  prometheus::Counter& prefix_queries_;
  prometheus::Counter& prefix_hits_;
  prometheus::Gauge& engine_healthy_;
  prometheus::Counter& step_failures_;
  prometheus::Histogram& batch_size_;
  prometheus::Histogram& batch_tokens_;
  prometheus::Family<prometheus::Histogram>& step_phase_;
  prometheus::Histogram* phase_schedule_;
  prometheus::Histogram* phase_forward_;
  prometheus::Histogram* phase_sample_;
  std::vector<prometheus::Gauge*> layer_active_;
  std::vector<prometheus::Gauge*> layer_union_;
  struct LayerCounters {
    prometheus::Counter *active, *token_neurons, *union_neurons, *step_neurons;
  };
  std::vector<LayerCounters> layer_counters_;
  prometheus::Histogram& union_ratio_;
  prometheus::Counter& rows_skipped_;
  prometheus::Counter& rows_total_;
};

}  // namespace sparsed::server
