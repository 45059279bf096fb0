// Runs a model on one device: owns the backend ops, the model's weights and the KV cache.
// Used by the engine loop thread only.
#ifndef KVASIR_ENGINE_MODEL_RUNNER_H_
#define KVASIR_ENGINE_MODEL_RUNNER_H_

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/models/model.h"
#include "engine/ops.h"
#include "engine/weights/weight_source.h"
#include "scheduler/batch.h"

namespace kvasir {

enum class Device { kCpu, kCuda };

struct RunnerOptions {
  Device device = Device::kCpu;
  int cuda_device = 0;
  // CUDA: the share of the device's memory this process may fill (weights, activations, KV
  // pool); the pool takes what the rest leaves, unless kv_cache_bytes is set.
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;
  // The scheduler's bounds of a step: a backend with a fixed arena reserves for them.
  int32_t max_num_seqs = 64;
  int32_t max_batched_tokens = 512;
  int32_t max_model_len = 8192;
  int num_threads = 0;
  int32_t block_size = 16;
  int64_t kv_cache_bytes = 0;  // the whole pool; must hold at least one block. 0: enough for
                               // default_kv_tokens tokens, at most max_default_kv_bytes
  int64_t default_kv_tokens = 0;
  int64_t max_default_kv_bytes = 0;
};

class ModelRunner {
 public:
  // Creates the model for config.architecture, uploads its weights (which must outlive the
  // runner: the CPU backend reads them in place) and allocates the KV pool.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(const ModelConfig& config,
                                                             const WeightSource& weights,
                                                             const RunnerOptions& options);

  // Runs one step; returns the logits of batch.logits_indices, row-major [rows, vocab], valid
  // until the next Execute.
  std::span<const float> Execute(const StepBatch& batch);
  // Runs one step whose logits rows all sample, and samples them on the backend (Ops::SampleRows):
  // only token ids and log-probabilities come back. Valid until the next Execute*.
  SampledRows ExecuteAndSample(const StepBatch& batch, const SampleRowsRequest& sampling);
  bool CanSampleRows(int64_t vocab) const { return ops_->CanSampleRows(vocab); }

  const KvCacheSpec& kv_spec() const { return kv_spec_; }
  std::string Describe() const { return ops_->Describe(); }

 private:
  ModelRunner() = default;
  std::unique_ptr<Ops> ops_;
  std::unique_ptr<Model> model_;
  KvCacheSpec kv_spec_;
};

}  // namespace kvasir

#endif  // KVASIR_ENGINE_MODEL_RUNNER_H_
