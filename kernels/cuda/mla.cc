// Host launchers of mla.h: argument checks, then the device launchers of mla_args.h, their
// cudaError_t turned into a Status naming the kernel.
#include "kernels/cuda/mla.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/arg_check.h"
#include "kernels/cuda/cuda_status.h"

namespace kvasir::cuda {
namespace {

using internal::Aligned;

absl::Status CheckShape(const char* op, const MlaShape& s) {
  KV_CUDA_REQUIRE(s.num_heads >= 1 && s.num_heads <= 65535, op,
                  absl::StrCat("num_heads ", s.num_heads, " outside [1, 65535]"));
  KV_CUDA_REQUIRE(
      s.kv_lora_rank >= 8 && s.kv_lora_rank <= internal::kMlaMaxRank && s.kv_lora_rank % 8 == 0, op,
      absl::StrCat("kv_lora_rank ", s.kv_lora_rank, " must be a multiple of 8 in [8, ",
                   internal::kMlaMaxRank, "]"));
  KV_CUDA_REQUIRE(s.rope_dim >= 8 && s.rope_dim <= internal::kMlaMaxRope && s.rope_dim % 8 == 0, op,
                  absl::StrCat("rope_dim ", s.rope_dim, " must be a multiple of 8 in [8, ",
                               internal::kMlaMaxRope, "]"));
  KV_CUDA_REQUIRE(
      s.nope_dim >= 1 && s.nope_dim <= internal::kMlaMaxNope, op,
      absl::StrCat("nope_dim ", s.nope_dim, " outside [1, ", internal::kMlaMaxNope, "]"));
  KV_CUDA_REQUIRE(s.v_dim >= 1, op, absl::StrCat("v_dim ", s.v_dim, " < 1"));
  return absl::OkStatus();
}

}  // namespace

absl::Status MlaWriteCache(const MlaWriteCacheArgs& a, cudaStream_t stream) {
  const char* op = "MlaWriteCache";
  KV_CUDA_REQUIRE(a.num_tokens >= 0, op, "num_tokens < 0");
  KV_CUDA_REQUIRE(
      a.kv_lora_rank >= 1 && a.rope_dim >= 0, op,
      absl::StrCat("bad widths kv_lora_rank ", a.kv_lora_rank, " rope_dim ", a.rope_dim));
  KV_CUDA_REQUIRE(a.latent_row_stride >= a.kv_lora_rank && a.k_rope_row_stride >= a.rope_dim, op,
                  "row strides shorter than the rows");
  if (a.num_tokens == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(a.latent && a.k_rope && a.slot_mapping && a.cache, op,
                  "null latent, k_rope, slot_mapping or cache");
  return CudaStatus(internal::LaunchMlaWriteCache(a, stream), "MlaWriteCacheKernel");
}

MlaPlan PlanMla(const MlaShape& shape, int32_t max_tokens, int32_t max_seq_len, int32_t num_sms) {
  constexpr int64_t kMinPartition = 2 * internal::kMlaTileTokens;
  const int64_t head_groups = (std::max(1, shape.num_heads) + internal::kMlaHeadsPerBlock - 1) /
                              internal::kMlaHeadsPerBlock;
  const int64_t blocks = std::max<int64_t>(1, int64_t{max_tokens} * head_groups);
  // Aim for two blocks per multiprocessor; never fewer than two tiles per block.
  const int64_t want_parts =
      std::max<int64_t>(1, (2 * int64_t{std::max(num_sms, 1)} + blocks - 1) / blocks);
  const int64_t len = std::max(1, max_seq_len);
  int64_t partition = (len + want_parts - 1) / want_parts;
  partition = (partition + internal::kMlaTileTokens - 1) / internal::kMlaTileTokens *
              internal::kMlaTileTokens;
  partition = std::max(partition, kMinPartition);
  MlaPlan plan;
  plan.max_tokens = std::max(0, max_tokens);
  plan.partition_tokens = static_cast<int32_t>(partition);
  plan.num_partitions = static_cast<int32_t>((len + partition - 1) / partition);
  plan.workspace_bytes = internal::MlaLayout(shape, plan.max_tokens, plan.num_partitions).total;
  return plan;
}

absl::Status MlaAttention(const MlaAttentionArgs& a, cudaStream_t stream) {
  const char* op = "MlaAttention";
  KV_CUDA_REQUIRE(a.num_seqs >= 0 && a.num_tokens >= 0, op, "negative sizes");
  KV_CUDA_REQUIRE(a.query_start != nullptr || a.num_tokens == a.num_seqs, op,
                  absl::StrCat("decode (null query_start) needs num_tokens ", a.num_tokens,
                               " == num_seqs ", a.num_seqs));
  if (a.num_tokens == 0) return absl::OkStatus();
  if (absl::Status s = CheckShape(op, a.shape); !s.ok()) return s;
  KV_CUDA_REQUIRE(a.num_seqs >= 1, op, "query rows without sequences");
  KV_CUDA_REQUIRE(a.num_tokens <= internal::kMlaMaxTokens, op,
                  absl::StrCat("num_tokens ", a.num_tokens, " > ", internal::kMlaMaxTokens));
  KV_CUDA_REQUIRE(a.q && a.kv_b && a.out, op, "null q, kv_b or out");
  KV_CUDA_REQUIRE(a.cache && a.kv_indptr && a.kv_indices && a.seq_lens, op,
                  "cache, kv_indptr, kv_indices and seq_lens must be set");
  KV_CUDA_REQUIRE(a.block_size >= 1, op, absl::StrCat("block_size ", a.block_size, " < 1"));
  KV_CUDA_REQUIRE(Aligned(a.cache, 16), op, "cache must be 16-byte aligned");
  KV_CUDA_REQUIRE(Aligned(a.kv_b, 4), op, "kv_b must be 4-byte aligned");
  const MlaPlan& p = a.plan;
  KV_CUDA_REQUIRE(p.partition_tokens >= internal::kMlaTileTokens &&
                      p.partition_tokens % internal::kMlaTileTokens == 0 && p.num_partitions >= 1 &&
                      p.num_partitions <= 65535,
                  op, "plan not made by PlanMla");
  KV_CUDA_REQUIRE(
      a.num_tokens <= p.max_tokens, op,
      absl::StrCat("num_tokens ", a.num_tokens, " > the plan's max_tokens ", p.max_tokens));
  KV_CUDA_REQUIRE(
      p.workspace_bytes >= internal::MlaLayout(a.shape, p.max_tokens, p.num_partitions).total, op,
      "the plan's workspace_bytes is too small for this shape (planned for another?)");
  KV_CUDA_REQUIRE(a.workspace != nullptr && Aligned(a.workspace, 256), op,
                  "the plan needs a 256-byte aligned workspace");
  return CudaStatus(internal::LaunchMlaAttention(a, stream), "MlaAttention kernels");
}

absl::Status MlaDecode(const MlaAttentionArgs& a, cudaStream_t stream) {
  KV_CUDA_REQUIRE(a.query_start == nullptr, "MlaDecode",
                  "query_start must be null (one query each)");
  return MlaAttention(a, stream);
}

}  // namespace kvasir::cuda
