#include "engine/model_runner.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace kvasir {
namespace {

// The largest steps the scheduler can make under the runner's bounds: a whole-budget prefill
// (in sequences of at most max_model_len tokens) that wants logits for every position (prompt
// logprobs), and decode steps of as many sequences as fit, at the context limit (decode
// attention's workspace grows with both).
// Their page tables point at block 0: the backend only counts while it runs them.
class WorstCaseBatches {
 public:
  explicit WorstCaseBatches(const RunnerOptions& o) {
    const int32_t len = std::max(1, o.max_model_len);
    // The whole token budget in prefill chunks of at most len tokens, every position wanting
    // its logits (prompt logprobs).
    const int32_t budget = std::max(1, o.max_batched_tokens);
    prefill_.query_start.push_back(0);
    prefill_.block_table_indptr.push_back(0);
    for (int32_t left = budget; left > 0; left -= len) {
      Add(std::min(left, len), len, /*all_logits=*/true, &prefill_);
    }
    decode_.query_start.push_back(0);
    decode_.block_table_indptr.push_back(0);
    const int32_t seqs = std::max(1, std::min(o.max_num_seqs, budget));
    for (int32_t s = 0; s < seqs; ++s) Add(1, len, false, &decode_);
    decode_one_.query_start.push_back(0);
    decode_one_.block_table_indptr.push_back(0);
    Add(1, len, false, &decode_one_);
  }
  std::vector<const StepBatch*> all() const { return {&prefill_, &decode_, &decode_one_}; }

 private:
  // Appends a sequence computing its last `tokens` positions of a seq_len context.
  static void Add(int32_t tokens, int32_t seq_len, bool all_logits, StepBatch* b) {
    b->seqs.push_back({.uid = static_cast<uint64_t>(b->seqs.size()) + 1,
                       .start_position = seq_len - tokens,
                       .num_new_tokens = tokens,
                       .samples = true,
                       .num_prompt_logit_rows = all_logits ? tokens - 1 : 0});
    for (int32_t t = 0; t < tokens; ++t) {
      if (all_logits || t == tokens - 1) b->logits_indices.push_back(b->num_tokens());
      b->token_ids.push_back(0);
      b->positions.push_back(seq_len - tokens + t);
      b->slot_mapping.push_back(-1);
    }
    b->query_start.push_back(b->num_tokens());
    b->seq_lens.push_back(seq_len);
    b->block_table.push_back(0);
    b->block_table_indptr.push_back(static_cast<int32_t>(b->block_table.size()));
  }
  StepBatch prefill_, decode_, decode_one_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(const ModelConfig& config,
                                                                 const WeightSource& weights,
                                                                 const RunnerOptions& options) {
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  if (options.device == Device::kCuda) {
    KV_ASSIGN_OR_RETURN(r->ops_, MakeCudaOps({.device = options.cuda_device,
                                              .max_num_seqs = options.max_num_seqs,
                                              .max_batched_tokens = options.max_batched_tokens,
                                              .max_model_len = options.max_model_len,
                                              .cuda_graphs = options.cuda_graphs}));
  } else {
    r->ops_ = MakeCpuOps(options.num_threads);
  }
  KV_ASSIGN_OR_RETURN(r->model_, ModelRegistry::Get().Create(config));
  absl::Status loaded = r->model_->Load(weights, *r->ops_);
  if (!loaded.ok()) {
    return absl::Status(loaded.code(), absl::StrCat(weights.Describe(), ": ", loaded.message()));
  }
  r->kv_spec_ = r->model_->KvSpec();
  r->kv_spec_.block_size = options.block_size;
  r->kv_spec_.dtype = r->ops_->KvCacheDType();

  // Activations first (a device backend reserves its arena for the largest steps), then the KV
  // pool from what is left.
  const WorstCaseBatches worst(options);
  KV_RETURN_IF_ERROR(r->ops_->ReserveActivations(
      r->kv_spec_, worst.all(),
      [&r](const StepBatch& b) { return r->model_->Forward(b, *r->ops_); }));

  // The model's own bytes per token (MLA caches a latent, not K and V per head).
  const int64_t token_bytes = r->kv_spec_.bytes_per_token();
  const int64_t block_bytes = token_bytes * options.block_size;
  int64_t pool_bytes = options.kv_cache_bytes;
  if (pool_bytes <= 0) {
    const std::optional<int64_t> budget = r->ops_->KvCacheBudget(options.gpu_memory_utilization);
    pool_bytes = budget.has_value() ? *budget
                                    : std::min(options.max_default_kv_bytes,
                                               options.default_kv_tokens * token_bytes);
  }
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

std::span<const float> ModelRunner::Execute(const StepBatch& batch) {
  const Tensor logits =
      ops_->RunStep(batch, [this](const StepBatch& b) { return model_->Forward(b, *ops_); });
  return ops_->ToHost(logits);
}

SampledRows ModelRunner::ExecuteAndSample(const StepBatch& batch,
                                          const SampleRowsRequest& sampling) {
  const Tensor logits =
      ops_->RunStep(batch, [this](const StepBatch& b) { return model_->Forward(b, *ops_); });
  return ops_->SampleRows(logits, sampling);
}

}  // namespace kvasir
