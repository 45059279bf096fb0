// Host launchers of ops.h: argument checks, then the device launchers of launch.h, their
// cudaError_t turned into a Status naming the kernel.
#include "kernels/cuda/ops.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/arg_check.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/launch.h"

namespace kvasir::cuda {
namespace {

using internal::Aligned;

absl::Status CheckPagedKv(const char* op, const PagedKv& kv, int32_t num_heads) {
  KV_CUDA_REQUIRE(kv.k_cache != nullptr && kv.v_cache != nullptr, op, "kv caches are null");
  KV_CUDA_REQUIRE(kv.kv_indptr != nullptr && kv.kv_indices != nullptr && kv.seq_lens != nullptr, op,
                  "kv_indptr, kv_indices and seq_lens must be set");
  KV_CUDA_REQUIRE(
      kv.head_dim == 16 || kv.head_dim == 32 || kv.head_dim == 64 || kv.head_dim == 128 ||
          kv.head_dim == 256,
      op, absl::StrCat("head_dim ", kv.head_dim, " is not supported (16, 32, 64, 128 or 256)"));
  KV_CUDA_REQUIRE(kv.block_size >= 1, op, absl::StrCat("block_size ", kv.block_size, " < 1"));
  KV_CUDA_REQUIRE(kv.num_kv_heads >= 1 && num_heads >= 1 && num_heads % kv.num_kv_heads == 0, op,
                  absl::StrCat("num_heads ", num_heads, " is not a multiple of num_kv_heads ",
                               kv.num_kv_heads));
  KV_CUDA_REQUIRE(Aligned(kv.k_cache, 16) && Aligned(kv.v_cache, 16), op,
                  "kv caches must be 16-byte aligned");
  return absl::OkStatus();
}

}  // namespace

absl::Status Embedding(const bf16* table, int64_t vocab, int64_t dim, const int32_t* ids,
                       int64_t num_tokens, bf16* out, cudaStream_t stream) {
  KV_CUDA_REQUIRE(vocab > 0 && dim > 0 && num_tokens >= 0, "Embedding",
                  absl::StrCat("bad shape vocab ", vocab, " dim ", dim, " tokens ", num_tokens));
  KV_CUDA_REQUIRE(num_tokens == 0 || (table && ids && out), "Embedding", "null pointer");
  return CudaStatus(internal::LaunchEmbedding(table, vocab, dim, ids, num_tokens, out, stream),
                    "EmbeddingKernel");
}

absl::Status RmsNorm(const bf16* x, const bf16* w, int64_t rows, int64_t dim, float eps, bf16* out,
                     cudaStream_t stream) {
  KV_CUDA_REQUIRE(rows >= 0 && dim > 0, "RmsNorm", absl::StrCat("bad shape ", rows, " x ", dim));
  KV_CUDA_REQUIRE(rows == 0 || (x && w && out), "RmsNorm", "null pointer");
  return CudaStatus(internal::LaunchRmsNorm(x, nullptr, w, rows, dim, eps, out, stream),
                    "RmsNormKernel");
}

absl::Status AddRmsNorm(const bf16* x, bf16* residual, const bf16* w, int64_t rows, int64_t dim,
                        float eps, bf16* out, cudaStream_t stream) {
  KV_CUDA_REQUIRE(rows >= 0 && dim > 0, "AddRmsNorm", absl::StrCat("bad shape ", rows, " x ", dim));
  KV_CUDA_REQUIRE(rows == 0 || (x && residual && w && out), "AddRmsNorm", "null pointer");
  KV_CUDA_REQUIRE(out != residual, "AddRmsNorm", "out must not be residual");
  return CudaStatus(internal::LaunchRmsNorm(x, residual, w, rows, dim, eps, out, stream),
                    "RmsNormKernel<residual>");
}

absl::Status SiluMul(const bf16* gate, const bf16* up, int64_t in_row_stride, int64_t rows,
                     int64_t inter, bf16* out, cudaStream_t stream) {
  KV_CUDA_REQUIRE(
      rows >= 0 && inter > 0 && in_row_stride >= inter, "SiluMul",
      absl::StrCat("bad shape rows ", rows, " inter ", inter, " stride ", in_row_stride));
  KV_CUDA_REQUIRE(rows == 0 || (gate && up && out), "SiluMul", "null pointer");
  KV_CUDA_REQUIRE(out != gate || in_row_stride == inter, "SiluMul",
                  "in place needs in_row_stride == inter");
  return CudaStatus(internal::LaunchSiluMul(gate, up, in_row_stride, rows, inter, out, stream),
                    "SiluMulKernel");
}

absl::Status RopeAndWriteKv(const RopeKvArgs& a, cudaStream_t stream) {
  const char* op = "RopeAndWriteKv";
  KV_CUDA_REQUIRE(a.num_tokens >= 0 && a.num_heads >= 1 && a.num_kv_heads >= 1, op,
                  "bad head counts");
  KV_CUDA_REQUIRE(a.head_dim >= 2 && a.head_dim <= 512 && a.head_dim % 2 == 0, op,
                  absl::StrCat("head_dim ", a.head_dim, " must be even, in [2, 512]"));
  KV_CUDA_REQUIRE(a.rot_dim >= 2 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, op,
                  absl::StrCat("rot_dim ", a.rot_dim, " must be even, in [2, head_dim]"));
  KV_CUDA_REQUIRE(a.q_row_stride >= int64_t{a.num_heads} * a.head_dim &&
                      a.kv_row_stride >= int64_t{a.num_kv_heads} * a.head_dim,
                  op, "row strides shorter than the heads");
  KV_CUDA_REQUIRE(a.max_positions >= 1, op, "max_positions < 1");
  if (a.num_tokens > 0) {
    KV_CUDA_REQUIRE(a.q && a.k && a.v && a.positions && a.cos_sin, op, "null pointer");
    KV_CUDA_REQUIRE(a.slot_mapping == nullptr || (a.k_cache && a.v_cache), op,
                    "slot_mapping without kv caches");
  }
  return CudaStatus(internal::LaunchRopeKv(a, stream), "RopeKvKernel");
}

DecodeAttentionPlan PlanDecodeAttention(int32_t num_seqs, int32_t num_heads, int32_t num_kv_heads,
                                        int32_t head_dim, int32_t max_seq_len, int32_t num_sms) {
  constexpr int32_t kMinPartition = 64;
  const int32_t group = num_kv_heads > 0 ? std::max(1, num_heads / num_kv_heads) : 1;
  const int64_t chunks =
      (group + internal::kDecodeMaxHeadsPerBlock - 1) / internal::kDecodeMaxHeadsPerBlock;
  const int64_t blocks = std::max<int64_t>(1, int64_t{num_seqs} * num_kv_heads * chunks);
  // Aim for two blocks per multiprocessor; never fewer than kMinPartition positions per block.
  const int64_t want_parts =
      std::max<int64_t>(1, (2 * int64_t{std::max(num_sms, 1)} + blocks - 1) / blocks);
  const int64_t len = std::max(1, max_seq_len);
  int64_t partition = (len + want_parts - 1) / want_parts;
  partition = (partition + 31) / 32 * 32;
  partition = std::clamp<int64_t>(partition, kMinPartition, internal::kDecodeMaxPartitionTokens);
  DecodeAttentionPlan plan;
  plan.partition_tokens = static_cast<int32_t>(partition);
  plan.num_partitions = static_cast<int32_t>((len + partition - 1) / partition);
  if (plan.num_partitions > 1) {
    plan.workspace_bytes = sizeof(float) * static_cast<size_t>(num_seqs) * num_heads *
                           plan.num_partitions * (head_dim + 2);
  }
  return plan;
}

absl::Status DecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  const char* op = "DecodeAttention";
  KV_CUDA_REQUIRE(a.num_seqs >= 0, op, "num_seqs < 0");
  if (a.num_seqs == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(a.q && a.out, op, "null q or out");
  if (absl::Status s = CheckPagedKv(op, a.kv, a.num_heads); !s.ok()) return s;
  KV_CUDA_REQUIRE(Aligned(a.q, 16), op, "q must be 16-byte aligned");
  KV_CUDA_REQUIRE(a.plan.partition_tokens >= 1 &&
                      a.plan.partition_tokens <= internal::kDecodeMaxPartitionTokens &&
                      a.plan.num_partitions >= 1,
                  op, "plan not made by PlanDecodeAttention");
  KV_CUDA_REQUIRE(
      a.plan.num_partitions == 1 || (a.workspace != nullptr && Aligned(a.workspace, 16)), op,
      "the plan needs a 16-byte aligned workspace");
  return CudaStatus(internal::LaunchDecodeAttention(a, stream), "DecodePartitionKernel");
}

absl::Status PrefillAttention(const PrefillAttentionArgs& a, cudaStream_t stream) {
  const char* op = "PrefillAttention";
  KV_CUDA_REQUIRE(a.num_seqs >= 0 && a.max_query_len >= 0, op, "negative sizes");
  if (a.num_seqs == 0 || a.max_query_len == 0) return absl::OkStatus();
  KV_CUDA_REQUIRE(a.q && a.out && a.query_start, op, "null q, out or query_start");
  if (absl::Status s = CheckPagedKv(op, a.kv, a.num_heads); !s.ok()) return s;
  KV_CUDA_REQUIRE(Aligned(a.q, 4) && Aligned(a.out, 4), op, "q and out must be 4-byte aligned");
  KV_CUDA_REQUIRE(a.num_seqs <= 65535 && a.num_heads <= 65535, op,
                  "more than 65535 sequences or heads");
  return CudaStatus(internal::LaunchPrefillAttention(a, stream), "PrefillKernel");
}

absl::Status Argmax(const float* logits, int32_t rows, int32_t vocab, int32_t* ids,
                    cudaStream_t stream) {
  KV_CUDA_REQUIRE(rows >= 0 && vocab >= 1, "Argmax",
                  absl::StrCat("bad shape ", rows, " x ", vocab));
  KV_CUDA_REQUIRE(rows == 0 || (logits && ids), "Argmax", "null pointer");
  return CudaStatus(internal::LaunchArgmax(logits, rows, vocab, ids, stream), "ArgmaxKernel");
}

absl::Status Logprobs(const LogprobsArgs& a, cudaStream_t stream) {
  const char* op = "Logprobs";
  KV_CUDA_REQUIRE(a.rows >= 0 && a.vocab >= 1, op, "bad shape");
  KV_CUDA_REQUIRE(a.top_k >= 0 && a.top_k <= internal::kLogprobsMaxTopK && a.top_k <= a.vocab, op,
                  absl::StrCat("top_k ", a.top_k, " outside [0, min(64, vocab)]"));
  KV_CUDA_REQUIRE((a.chosen == nullptr) == (a.chosen_logprob == nullptr), op,
                  "chosen and chosen_logprob go together");
  KV_CUDA_REQUIRE(a.top_k == 0 || (a.top_ids && a.top_logprobs), op,
                  "null top_ids or top_logprobs");
  KV_CUDA_REQUIRE(a.rows == 0 || a.logits, op, "null logits");
  return CudaStatus(internal::LaunchLogprobs(a, stream), "LogprobsKernel");
}

absl::Status AddInPlace(bf16* a, const bf16* b, int64_t n, cudaStream_t stream) {
  KV_CUDA_REQUIRE(n >= 0, "AddInPlace", "n < 0");
  KV_CUDA_REQUIRE(n == 0 || (a && b), "AddInPlace", "null pointer");
  return CudaStatus(internal::LaunchAdd(a, b, n, stream), "AddKernel");
}

absl::Status GatherRows(const bf16* x, int64_t dim, const int32_t* rows, int64_t num_rows,
                        bf16* out, cudaStream_t stream) {
  KV_CUDA_REQUIRE(dim > 0 && num_rows >= 0, "GatherRows", "bad shape");
  KV_CUDA_REQUIRE(num_rows <= INT32_MAX, "GatherRows", "more than 2^31 rows");
  KV_CUDA_REQUIRE(num_rows == 0 || (x && rows && out), "GatherRows", "null pointer");
  return CudaStatus(internal::LaunchGatherRows(x, dim, rows, num_rows, out, stream),
                    "GatherRowsKernel");
}

absl::Status ToFloat(const bf16* x, int64_t n, float* out, cudaStream_t stream) {
  KV_CUDA_REQUIRE(n >= 0, "ToFloat", "n < 0");
  KV_CUDA_REQUIRE(n == 0 || (x && out), "ToFloat", "null pointer");
  return CudaStatus(internal::LaunchToFloat(x, n, out, stream), "ToFloatKernel");
}

absl::Status RopeTable(const int32_t* positions, int64_t num_tokens, const float* inv_freq,
                       int32_t rot_dim, bool recurrence, float attention_factor, float* cos_sin,
                       cudaStream_t stream) {
  KV_CUDA_REQUIRE(num_tokens >= 0, "RopeTable", "num_tokens < 0");
  KV_CUDA_REQUIRE(rot_dim >= 2 && rot_dim % 2 == 0 && rot_dim <= 512, "RopeTable",
                  absl::StrCat("rot_dim ", rot_dim, " must be even, in [2, 512]"));
  KV_CUDA_REQUIRE(num_tokens == 0 || (positions && inv_freq && cos_sin), "RopeTable",
                  "null pointer");
  return CudaStatus(internal::LaunchRopeTable(positions, num_tokens, inv_freq, rot_dim, recurrence,
                                              attention_factor, cos_sin, stream),
                    "RopeTableKernel");
}

absl::Status RopeApply(bf16* x, int64_t num_tokens, int32_t num_heads, int32_t head_dim,
                       int32_t rot_offset, int32_t rot_dim, const float* cos_sin, RopeStyle style,
                       cudaStream_t stream) {
  const char* op = "RopeApply";
  KV_CUDA_REQUIRE(num_tokens >= 0 && num_heads >= 1 && head_dim >= 2, op, "bad shape");
  KV_CUDA_REQUIRE(
      rot_dim >= 2 && rot_dim % 2 == 0 && rot_offset >= 0 && rot_offset + rot_dim <= head_dim, op,
      absl::StrCat("rot_dim ", rot_dim, " at offset ", rot_offset,
                   " must be even and inside head_dim ", head_dim));
  KV_CUDA_REQUIRE(num_tokens == 0 || (x && cos_sin), op, "null pointer");
  return CudaStatus(internal::LaunchRopeApply(x, num_tokens, num_heads, head_dim, rot_offset,
                                              rot_dim, cos_sin, style == RopeStyle::kNeox, stream),
                    "RopeApplyKernel");
}

absl::Status FillDummy(bf16* out, int64_t n, uint64_t seed, bool ones, double amplitude,
                       cudaStream_t stream) {
  KV_CUDA_REQUIRE(n >= 0, "FillDummy", "n < 0");
  KV_CUDA_REQUIRE(n == 0 || out, "FillDummy", "null pointer");
  return CudaStatus(internal::LaunchFillDummy(out, n, seed, ones, amplitude, stream),
                    "FillDummyKernel");
}

absl::Status WriteKvCache(const bf16* k, const bf16* v, int64_t num_tokens, int64_t row,
                          const int64_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                          cudaStream_t stream) {
  const char* op = "WriteKvCache";
  KV_CUDA_REQUIRE(num_tokens >= 0 && row > 0, op, "bad shape");
  KV_CUDA_REQUIRE(num_tokens <= INT32_MAX, op, "more than 2^31 tokens");
  KV_CUDA_REQUIRE(num_tokens == 0 || (k && v && slot_mapping && k_cache && v_cache), op,
                  "null pointer");
  return CudaStatus(
      internal::LaunchWriteKv(k, v, num_tokens, row, slot_mapping, k_cache, v_cache, stream),
      "WriteKvKernel");
}

}  // namespace kvasir::cuda
