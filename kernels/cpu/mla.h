// Multi-head latent attention (DeepSeek-V2/V3) over a block-paged cache of compressed latents.
//
// The cache of one layer is [num_blocks * block_size slots, kv_lora_rank + rope_dim]: per token
// the latent c (kv_a_proj's first kv_lora_rank outputs after kv_a_layernorm) and the RoPE key
// k_r (its last rope_dim outputs, rotated), one for all heads. kv_b_proj holds, per head h, the
// nope_dim rows of W_UK_h then the v_dim rows of W_UV_h ([kv_lora_rank] columns each). Head h of
// a query q_h = [q_nope ; q_rope] scores context position j as
//   s_j = scale * (q_nope . (W_UK_h c_j) + q_rope . k_r_j)
// and returns sum_j softmax(s)_j W_UV_h c_j. Two forms compute it:
//   expanded  K/V per head are made for the whole context (c_j times kv_b_proj), then ordinary
//             attention with key [W_UK_h c_j ; k_r_j] and value W_UV_h c_j (prefill: compute-bound,
//             head dims nope + rope and v instead of kv_lora_rank);
//   absorbed  W_UK_h is folded into the query (q_lat = W_UK_h^T q_nope, kv_lora_rank wide), the
//             scores are q_lat . c_j + q_rope . k_r_j over the cached latent itself, and W_UV_h
//             is applied once to the attention-weighted latent (decode: reads kv_lora_rank +
//             rope_dim values per context token instead of heads * (nope + rope + v)).
// They agree to float rounding (tests/kernels/mla_test.cc). Each (query, head) is computed from
// its own row and its context in a fixed order, so results do not depend on the other sequences
// of the batch or the thread count; a sequence's form is chosen from its own query count.
#ifndef KVASIR_KERNELS_CPU_MLA_H_
#define KVASIR_KERNELS_CPU_MLA_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"

namespace kvasir::cpu {

struct MlaAttentionArgs {
  const float* q = nullptr;      // [num_tokens, num_heads, nope_dim + rope_dim], RoPE part rotated
  const float* cache = nullptr;  // [slots, kv_lora_rank + rope_dim]
  const void* kv_b = nullptr;    // [num_heads * (nope_dim + v_dim), kv_lora_rank], any DType
  DType kv_b_dtype = DType::kF32;
  int num_heads = 0;
  int nope_dim = 0;
  int rope_dim = 0;
  int v_dim = 0;
  int kv_lora_rank = 0;
  int block_size = 0;
  float scale = 1.0f;
  int num_seqs = 0;
  const int32_t* query_start = nullptr;  // [num_seqs + 1]
  const int32_t* seq_lens = nullptr;     // [num_seqs] context after this step (tokens written)
  const int32_t* block_table_indptr = nullptr;  // [num_seqs + 1] CSR, as PagedAttentionArgs
  const int32_t* block_table = nullptr;
  float* out = nullptr;  // [num_tokens, num_heads * v_dim]
};

enum class MlaForm {
  kAbsorbed,
  kExpanded,
  kByQueryCount,  // per sequence: absorbed for one query (decode), expanded for several
};

// Buffers reused across calls (and layers).
struct MlaScratch {
  std::vector<float> q_lat, o_lat, y, context, kv;
  std::vector<int32_t> tokens, token_seq;
};

// Causal attention as described above: query t of sequence s (q_len queries, the last ones of
// its context) attends to positions [0, seq_lens[s] - q_len + t]. The latents and RoPE keys of
// this step's tokens must already be in the cache (WriteMlaCache). pool may be null.
void MlaAttention(const MlaAttentionArgs& args, MlaForm form, MlaScratch* scratch,
                  ThreadPool* pool);

// Stores latent [num_tokens, kv_lora_rank] and k_rope [num_tokens, rope_dim] into cache slot
// slot_mapping[t] (= block * block_size + offset); tokens with slot -1 are skipped.
void WriteMlaCache(const float* latent, const float* k_rope, int64_t num_tokens, int kv_lora_rank,
                   int rope_dim, const int64_t* slot_mapping, float* cache);

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_MLA_H_
