// CUDA kernels of a transformer forward pass: bf16 storage, fp32 accumulation. Each launcher
// checks its arguments (INVALID_ARGUMENT naming the field), enqueues its kernels on `stream` and
// returns; a launch failure is INTERNAL naming the kernel. Nothing here synchronises, allocates
// or copies to the host, so every launcher can be captured in a CUDA graph. Device pointers are
// plain pointers; int32 index arrays are the StepBatch arrays (scheduler/batch.h) copied to the
// device. Row-major throughout; "[a, b]" is a shape.
//
// The paged KV cache is FlashInfer's CSR page table with our StepBatch's names:
//   k_cache, v_cache   [num_blocks, block_size, num_kv_heads, head_dim] bf16, one pair per layer
//   kv_indptr          [num_seqs + 1]   block_table_indptr: sequence s owns pages
//   kv_indices         [kv_indptr[num_seqs]]  block_table[kv_indptr[s] .. kv_indptr[s + 1])
//   seq_lens           [num_seqs]       context length after this step's tokens; FlashInfer's
//                                       last_page_len is seq_len - (num_pages - 1) * block_size
//   slot_mapping       [num_tokens] int64 block * block_size + offset (-1: not written)
// Position p of sequence s is slot kv_indices[kv_indptr[s] + p / block_size] * block_size +
// p % block_size.
#ifndef KVASIR_KERNELS_CUDA_OPS_H_
#define KVASIR_KERNELS_CUDA_OPS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/kernel_args.h"

namespace kvasir::cuda {

// out[t] = table[ids[t]] for t < num_tokens; table [vocab, dim], out [num_tokens, dim]. An id
// outside [0, vocab) gives a row of NaN (loud, never another token's row).
absl::Status Embedding(const bf16* table, int64_t vocab, int64_t dim, const int32_t* ids,
                       int64_t num_tokens, bf16* out, cudaStream_t stream);

// RMSNorm as transformers computes it in bf16: v = float(x); out = bf16(w * bf16(v * rsqrt(
// mean(v^2) + eps))). x, out [rows, dim], w [dim]; out may be x.
absl::Status RmsNorm(const bf16* x, const bf16* w, int64_t rows, int64_t dim, float eps, bf16* out,
                     cudaStream_t stream);

// The pre-norm residual step fused: residual = bf16(residual + x) (in place), then out =
// RmsNorm(residual). x, residual, out [rows, dim]; out may be x, not residual.
absl::Status AddRmsNorm(const bf16* x, bf16* residual, const bf16* w, int64_t rows, int64_t dim,
                        float eps, bf16* out, cudaStream_t stream);

// out[r, i] = bf16(silu(gate[r, i]) * up[r, i]) for i < inter, computed in float; gate and up
// rows are in_row_stride elements apart (a fused [rows, 2 * inter] gate|up GEMM output: up =
// gate + inter, in_row_stride = 2 * inter). out [rows, inter] contiguous; may be gate when
// in_row_stride == inter.
absl::Status SiluMul(const bf16* gate, const bf16* up, int64_t in_row_stride, int64_t rows,
                     int64_t inter, bf16* out, cudaStream_t stream);

// RoPE on this step's q and k in place, then k (rotated) and v stored into the paged cache.
// cos_sin is the table of kernels/cuda/rope_table.h, uploaded once per model.
absl::Status RopeAndWriteKv(const RopeKvArgs& args, cudaStream_t stream);

// One layer's paged KV cache for attention is a PagedKv (kernel_args.h: caches, block_size,
// num_kv_heads, head_dim 16, 32, 64, 128 or 256, kv_indptr, kv_indices, seq_lens).
//
// Decode attention, one query token per sequence at position seq_lens[s] - 1, over positions
// [0, seq_lens[s]) (its own K/V already written by RopeAndWriteKv). GQA: head h reads kv head
// h / (num_heads / num_kv_heads). Long contexts are split across blocks (flash-decoding): each
// block attends one partition of partition_tokens positions and a second kernel merges the
// partial results by their log-sum-exp. A sequence of length 0 gets zeros.
//
// Plan once per step on the host (like FlashInfer's plan/run), reuse for every layer.
// max_seq_len bounds every seq_lens[s] (a CUDA graph captured for a bound serves any step under
// it); num_sms is the device's multiprocessor count (partitions are sized to fill it).
DecodeAttentionPlan PlanDecodeAttention(int32_t num_seqs, int32_t num_heads, int32_t num_kv_heads,
                                        int32_t head_dim, int32_t max_seq_len, int32_t num_sms);
absl::Status DecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);

// Prefill (and mixed) attention: sequence s's q_len = query_start[s + 1] - query_start[s] queries
// are the last q_len positions of its context, causal: query i attends to positions
// [0, seq_lens[s] - q_len + i], i.e. the cached prefix and the chunk up to itself. GQA as above.
// A flash-attention-2 style tiled kernel (online softmax over 32-position tiles, fp32 SIMT).
absl::Status PrefillAttention(const PrefillAttentionArgs& args, cudaStream_t stream);

// The engine's glue (glue.cu), each one pass over its data:
// a[i] = bf16(a[i] + b[i]) for i < n (the residual add); b may not overlap a unless equal.
absl::Status AddInPlace(bf16* a, const bf16* b, int64_t n, cudaStream_t stream);
// out[i] = x[rows[i]] for i < num_rows; x [*, dim], out [num_rows, dim], not overlapping.
absl::Status GatherRows(const bf16* x, int64_t dim, const int32_t* rows, int64_t num_rows,
                        bf16* out, cudaStream_t stream);
// out[i] = float(x[i]) for i < n.
absl::Status ToFloat(const bf16* x, int64_t n, float* out, cudaStream_t stream);
// The RoPE table of num_tokens positions: row t is the cos of the rot_dim / 2 angles, then their
// sin, both times attention_factor. Angles are float(p) * inv_freq[i], or with recurrence
// llama.cpp's theta_0 = p, theta_i = theta_{i-1} * inv_freq[1] (as kernels/cpu RopeCosSin).
absl::Status RopeTable(const int32_t* positions, int64_t num_tokens, const float* inv_freq,
                       int32_t rot_dim, bool recurrence, float attention_factor, float* cos_sin,
                       cudaStream_t stream);
// Rotates dims [rot_offset, rot_offset + rot_dim) of every head of x ([num_tokens, num_heads *
// head_dim], in place) by row t of cos_sin (RopeTable), computed in float.
absl::Status RopeApply(bf16* x, int64_t num_tokens, int32_t num_heads, int32_t head_dim,
                       int32_t rot_offset, int32_t rot_dim, const float* cos_sin, RopeStyle style,
                       cudaStream_t stream);
// Stores row t of k and v ([num_tokens, row] each, row = num_kv_heads * head_dim) into slot
// slot_mapping[t] of the caches ([slots, row]); a slot of -1 is skipped.
absl::Status WriteKvCache(const bf16* k, const bf16* v, int64_t num_tokens, int64_t row,
                          const int64_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                          cudaStream_t stream);

// A dummy weight made on the device (engine/weights/dummy_weights.h): out[i] = bf16 of 1 when
// ones, else (2u_i - 1) * amplitude, u_i the top 53 bits of splitmix64(seed + (i + 1) *
// 0x9E3779B97F4A7C15) over 2^53 — the host's DummyWeightSource values, bit for bit.
absl::Status FillDummy(bf16* out, int64_t n, uint64_t seed, bool ones, double amplitude,
                       cudaStream_t stream);

// ids[r] = argmax of logits row r ([rows, vocab] float32): the lowest index on ties, NaNs
// skipped (0 when a row is all NaN) — the CPU sampler's rule (kernels/cpu/ops.h Argmax).
absl::Status Argmax(const float* logits, int32_t rows, int32_t vocab, int32_t* ids,
                    cudaStream_t stream);

// Log-softmax of each logits row (max subtracted, sum of exp in float), read out at a few places:
//   top_ids, top_logprobs [rows, top_k]: the top_k largest logits, largest first, the lower
//     index first on ties (NaNs never chosen); top_k in [0, 64]
//   chosen_logprob [rows]: the log-probability of chosen[r] (the sampled token); both null to skip
absl::Status Logprobs(const LogprobsArgs& args, cudaStream_t stream);

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_OPS_H_
