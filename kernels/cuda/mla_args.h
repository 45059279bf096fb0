// Argument structs of the CUDA multi-head latent attention kernels (plain data, no Abseil), shared
// by the host launchers (mla.h, which documents them) and the device code (mla.cu), and the
// device launchers of mla.cu (FlashInfer style: they return the cudaError_t of the launch and
// trust their arguments; mla.cc checks them first).
#ifndef KVASIR_KERNELS_CUDA_MLA_ARGS_H_
#define KVASIR_KERNELS_CUDA_MLA_ARGS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/kernel_args.h"

namespace kvasir::cuda {

// One layer's MLA geometry (engine/ops.h MlaDims).
struct MlaShape {
  int32_t num_heads = 0;
  int32_t nope_dim = 0;      // qk_nope_head_dim, in [1, 256]
  int32_t rope_dim = 0;      // qk_rope_head_dim, a multiple of 8 in [8, 128]
  int32_t v_dim = 0;         // v_head_dim, >= 1
  int32_t kv_lora_rank = 0;  // a multiple of 8 in [8, 512]
};

// See mla.h MlaWriteCache.
struct MlaWriteCacheArgs {
  const bf16* latent = nullptr;   // [num_tokens, latent_row_stride]
  int64_t latent_row_stride = 0;  // elements, >= kv_lora_rank
  const bf16* k_rope = nullptr;   // [num_tokens, k_rope_row_stride], rotated
  int64_t k_rope_row_stride = 0;  // elements, >= rope_dim
  int32_t num_tokens = 0;
  int32_t kv_lora_rank = 0;
  int32_t rope_dim = 0;
  const int64_t* slot_mapping = nullptr;  // [num_tokens]; -1: not written
  bf16* cache = nullptr;                  // [num_slots, kv_lora_rank + rope_dim]
};

// See mla.h PlanMla.
struct MlaPlan {
  int32_t max_tokens = 0;        // bounds num_tokens; the workspace layout is sized for it
  int32_t partition_tokens = 0;  // context positions per attention block (a multiple of 32)
  int32_t num_partitions = 0;    // 1: no merge kernel
  size_t workspace_bytes = 0;    // device scratch the run needs
};

// See mla.h MlaAttention.
struct MlaAttentionArgs {
  const bf16* q = nullptr;     // [num_tokens, num_heads * (nope_dim + rope_dim)], per head nope
                               // then rope (rotated)
  const bf16* kv_b = nullptr;  // [num_heads * (nope_dim + v_dim), kv_lora_rank]: per head the
                               // nope_dim rows of W_UK_h, then the v_dim rows of W_UV_h
  bf16* out = nullptr;         // [num_tokens, num_heads * v_dim]
  MlaShape shape;
  float scale = 0;  // softmax scale (MlaConfig::softmax_scale)
  int32_t num_seqs = 0;
  int32_t num_tokens = 0;  // query rows; == num_seqs when query_start is null
  // [num_seqs + 1] (StepBatch::query_start): sequence s's queries are rows [query_start[s],
  // query_start[s + 1]), the last ones of its context. Null: decode, row s is sequence s's single
  // query at position seq_lens[s] - 1.
  const int32_t* query_start = nullptr;
  // The paged latent cache of this layer and the step's page table (ops.h, top).
  const bf16* cache = nullptr;          // [num_blocks * block_size, kv_lora_rank + rope_dim]
  int32_t block_size = 0;               // tokens per page, >= 1
  const int32_t* kv_indptr = nullptr;   // [num_seqs + 1]
  const int32_t* kv_indices = nullptr;  // [kv_indptr[num_seqs]]
  const int32_t* seq_lens = nullptr;    // [num_seqs] context after this step's tokens
  MlaPlan plan;
  void* workspace = nullptr;  // plan.workspace_bytes of device memory, 256-byte aligned
};

namespace internal {

cudaError_t LaunchMlaWriteCache(const MlaWriteCacheArgs& args, cudaStream_t stream);
cudaError_t LaunchMlaAttention(const MlaAttentionArgs& args, cudaStream_t stream);

// Limits the launchers rely on (checked by mla.cc).
inline constexpr int kMlaMaxRank = 512;
inline constexpr int kMlaMaxRope = 128;
inline constexpr int kMlaMaxNope = 256;
inline constexpr int kMlaHeadsPerBlock = 16;  // heads sharing each cache row in one block
inline constexpr int kMlaTileTokens = 32;     // context positions per shared-memory tile
inline constexpr int kMlaMaxTokens = 65535;   // query rows per call (a grid dimension)

// The workspace regions, each at a 256-byte aligned offset, for a plan and shape:
//   q_lat   f32 [max_tokens, num_heads, kv_lora_rank + rope_dim]  absorbed query, RoPE part
//   o_lat   f32 [max_tokens, num_heads, kv_lora_rank]             attention-weighted latent
//   o_part  f32 [max_tokens, num_heads, num_partitions, kv_lora_rank]  (num_partitions > 1)
//   ml      f32 [max_tokens, num_heads, num_partitions, 2]  base-2 max and sum of exp (idem)
struct MlaWorkspaceLayout {
  size_t q_lat = 0, o_lat = 0, o_part = 0, ml = 0, total = 0;
};

inline size_t MlaAlign256(size_t n) { return (n + 255) / 256 * 256; }

inline MlaWorkspaceLayout MlaLayout(const MlaShape& s, int32_t max_tokens, int32_t num_partitions) {
  const size_t rows = static_cast<size_t>(max_tokens) * static_cast<size_t>(s.num_heads);
  const size_t rank = static_cast<size_t>(s.kv_lora_rank);
  MlaWorkspaceLayout l;
  l.q_lat = 0;
  l.o_lat = MlaAlign256(rows * (rank + s.rope_dim) * sizeof(float));
  l.o_part = l.o_lat + MlaAlign256(rows * rank * sizeof(float));
  l.ml = l.o_part;
  if (num_partitions > 1) {
    l.ml += MlaAlign256(rows * num_partitions * rank * sizeof(float));
    l.total = l.ml + MlaAlign256(rows * num_partitions * 2 * sizeof(float));
  } else {
    l.total = l.o_part;
  }
  return l;
}

}  // namespace internal
}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_MLA_ARGS_H_
