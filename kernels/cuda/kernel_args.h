// Argument structs of the CUDA kernels (plain data, no Abseil), shared by the host launchers
// (ops.h, which documents them) and the device code (launch.h).
#ifndef KVASIR_KERNELS_CUDA_KERNEL_ARGS_H_
#define KVASIR_KERNELS_CUDA_KERNEL_ARGS_H_

#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

namespace kvasir::cuda {

using bf16 = __nv_bfloat16;

enum class RopeStyle {
  kNeox,         // pairs (i, i + rot_dim / 2): transformers' rotate_half
  kInterleaved,  // pairs (2i, 2i + 1): GGUF llama / Meta
};

// See ops.h RopeAndWriteKv.
struct RopeKvArgs {
  bf16* q = nullptr;         // [num_tokens, q_row_stride], heads at q + h * head_dim
  int64_t q_row_stride = 0;  // elements; >= num_heads * head_dim (a fused qkv row is allowed)
  bf16* k = nullptr;         // [num_tokens, kv_row_stride]
  const bf16* v = nullptr;   // [num_tokens, kv_row_stride]
  int64_t kv_row_stride = 0;
  int32_t num_tokens = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // even, <= 512
  int32_t rot_dim = 0;   // even, <= head_dim: the first rot_dim dims of each head rotate
  RopeStyle style = RopeStyle::kNeox;
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* cos_sin = nullptr;      // [max_positions, rot_dim]: cos of the rot_dim / 2 angles,
                                       // then their sin
  int32_t max_positions = 0;  // a position outside [0, max_positions) makes that token's q and
                              // k NaN (loud)
  const int64_t* slot_mapping = nullptr;  // [num_tokens]; null: the cache is not written
  bf16* k_cache = nullptr;                // [num_slots, num_kv_heads, head_dim]
  bf16* v_cache = nullptr;
};

// One layer's paged KV cache and this step's page table (see the top of ops.h).
struct PagedKv {
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  int32_t block_size = 0;  // tokens per page; any value >= 1 (16 is the engine's default)
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // 16, 32, 64, 128 or 256
  const int32_t* kv_indptr = nullptr;
  const int32_t* kv_indices = nullptr;
  const int32_t* seq_lens = nullptr;
};

// See ops.h PlanDecodeAttention.
struct DecodeAttentionPlan {
  int32_t partition_tokens = 0;  // positions per block
  int32_t num_partitions = 0;    // ceil(max_seq_len / partition_tokens); 1: no merge kernel
  size_t workspace_bytes = 0;    // device scratch the run needs (0 when num_partitions == 1)
};

// See ops.h DecodeAttention.
struct DecodeAttentionArgs {
  const bf16* q = nullptr;  // [num_seqs, num_heads, head_dim]
  bf16* out = nullptr;      // [num_seqs, num_heads, head_dim]
  int32_t num_seqs = 0;
  int32_t num_heads = 0;  // a multiple of kv.num_kv_heads
  float scale = 0;        // usually 1 / sqrt(head_dim)
  PagedKv kv;
  DecodeAttentionPlan plan;
  void* workspace = nullptr;  // plan.workspace_bytes of device memory, 16-byte aligned
};

// See ops.h PrefillAttention.
struct PrefillAttentionArgs {
  const bf16* q = nullptr;               // [num_tokens, num_heads, head_dim]
  bf16* out = nullptr;                   // [num_tokens, num_heads, head_dim]
  const int32_t* query_start = nullptr;  // [num_seqs + 1] (StepBatch::query_start)
  int32_t num_seqs = 0;
  int32_t num_heads = 0;
  int32_t max_query_len = 0;  // bounds every q_len (host side; sets the grid)
  float scale = 0;
  PagedKv kv;
};

// See ops.h Logprobs.
struct LogprobsArgs {
  const float* logits = nullptr;  // [rows, vocab]
  int32_t rows = 0;
  int32_t vocab = 0;
  int32_t top_k = 0;
  int32_t* top_ids = nullptr;
  float* top_logprobs = nullptr;
  const int32_t* chosen = nullptr;
  float* chosen_logprob = nullptr;
};

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_KERNEL_ARGS_H_
