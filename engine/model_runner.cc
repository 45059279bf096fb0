#include "engine/model_runner.h"

#include <algorithm>

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
  // The model's own bytes per token (MLA caches a latent, not K and V per head).
  const int64_t token_bytes = r->kv_spec_.bytes_per_token();
  const int64_t block_bytes = token_bytes * options.block_size;
  const int64_t pool_bytes =
      options.kv_cache_bytes > 0
          ? options.kv_cache_bytes
          : std::min(options.max_default_kv_bytes, options.default_kv_tokens * token_bytes);
  const int64_t num_blocks = pool_bytes / block_bytes;
  if (num_blocks < 1 || num_blocks > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache of ", pool_bytes, " bytes cannot hold between 1 and 2^31 blocks of ",
                     block_bytes, " bytes"));
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
