// Multi-head latent attention (DeepSeek-V2/V3) on CUDA over a paged latent cache: the function of
// kernels/cpu/mla.h (see there for the math) with bf16 storage and fp32 accumulation. Same
// conventions as ops.h: each launcher checks its arguments (INVALID_ARGUMENT naming the field),
// enqueues its kernels on `stream` and returns; nothing here synchronises, allocates or copies to
// the host, so every launcher can be captured in a CUDA graph.
//
// Cache of one layer: [num_blocks * block_size slots, kv_lora_rank + rope_dim] bf16, per token
// the latent c (after kv_a_layernorm) then the rotated RoPE key k_r, shared by every head. The
// page table is ops.h's CSR (kv_indptr, kv_indices, seq_lens; slot_mapping int64).
//
// Form: absorbed for every query, decode and prefill alike (kernels/cpu/mla.h's kAbsorbed):
//   1. q_lat[t, h] = W_UK_h^T q_nope[t, h] (fp32, kv_lora_rank wide), and q_rope copied beside
//      it: a per-head GEMM over all query rows, W_UK_h read once per 32 rows;
//   2. attention over the latent itself: a block serves one query row, 16 heads and one
//      partition of the context; each cache row is loaded to shared memory once and used by all
//      16 heads (score q_lat . c + q_rope . k_r, online softmax in base 2, o_lat += p c);
//      long contexts are split over partitions (flash-decoding) and merged by log-sum-exp;
//   3. out[t, h] = W_UV_h o_lat[t, h]: a per-head GEMM, W_UV_h read once per 16 rows.
// Prefill queries use the same path with a causal bound per query (query i of a q_len chunk
// attends to positions [0, seq_lens[s] - q_len + i]): correct for any query count but it reads
// the context once per query row and does kv_lora_rank-wide dot products, so long prompts cost
// more than the expanded form would (a tensor-core expanded prefill kernel is the next step).
// Arithmetic is fp32 SIMT (no tensor cores yet).
#ifndef KVASIR_KERNELS_CUDA_MLA_H_
#define KVASIR_KERNELS_CUDA_MLA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/mla_args.h"

namespace kvasir::cuda {

// Stores latent[t] and k_rope[t] into cache slot slot_mapping[t] (= page * block_size + offset)
// for each of the step's tokens; slot -1 is skipped, and no other slot is touched.
absl::Status MlaWriteCache(const MlaWriteCacheArgs& args, cudaStream_t stream);

// Plans MlaAttention once per step on the host, reused for every layer (like
// PlanDecodeAttention). max_tokens bounds the query rows of a run (its workspace is laid out
// for it), max_seq_len the context length of every sequence (partitions are sized from it; a
// longer context is still attended in full, its last partition simply runs longer), num_sms is
// the device's multiprocessor count. The returned plan's workspace_bytes is the workspace
// function: the device scratch MlaAttention needs for the shape and bounds.
MlaPlan PlanMla(const MlaShape& shape, int32_t max_tokens, int32_t max_seq_len, int32_t num_sms);

// Causal MLA of args.q over each sequence's cached context (its own step's latents already
// written by MlaWriteCache): out[t, h] = sum_j softmax_j(scale * (q_nope . W_UK_h c_j + q_rope .
// k_r_j)) W_UV_h c_j over positions j in [0, seq_lens[s] - q_len + i] for query i of sequence s
// (see MlaAttentionArgs::query_start). A query with an empty context (a decode row with
// seq_lens[s] == 0) gets zeros. Needs a plan from PlanMla with num_tokens <= plan.max_tokens.
absl::Status MlaAttention(const MlaAttentionArgs& args, cudaStream_t stream);

// Decode: MlaAttention for one query per sequence (args.query_start must be null).
absl::Status MlaDecode(const MlaAttentionArgs& args, cudaStream_t stream);

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_MLA_H_
