#include "engine/model_runner.h"

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace kvasir {

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const ModelConfig& config,
                                                                 const WeightSource& weights,
                                                                 const RunnerOptions& options) {
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  r->ops_ = MakeCpuOps(options.num_threads);
  KV_ASSIGN_OR_RETURN(r->model_, ModelRegistry::Get().Create(config));
  absl::Status loaded = r->model_->Load(weights, *r->ops_);
  if (!loaded.ok()) {
    return absl::Status(loaded.code(), absl::StrCat(weights.Describe(), ": ", loaded.message()));
  }
  r->kv_spec_ = r->model_->KvSpec();
  r->kv_spec_.block_size = options.block_size;
  const int64_t block_bytes = r->kv_spec_.bytes_per_token() * options.block_size;
  const int64_t num_blocks = options.kv_cache_bytes / block_bytes;
  if (num_blocks < 1 || num_blocks > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache of ", options.kv_cache_bytes,
                     " bytes cannot hold between 1 and 2^31 blocks of ", block_bytes, " bytes"));
  }
  r->kv_spec_.num_blocks = static_cast<int32_t>(num_blocks);
  KV_RETURN_IF_ERROR(r->ops_->AllocateKvCache(r->kv_spec_));
  return r;
}

const std::vector<float>& ModelRunner::Execute(const StepBatch& batch) {
  ops_->BeginStep(batch);
  Tensor logits = model_->Forward(batch, *ops_);
  logits_.resize(logits.numel());
  ops_->CopyToHost(logits, logits_.data());
  return logits_;
}

}  // namespace kvasir
