// The mixture-of-experts layer on CUDA (bf16 storage, fp32 accumulation), in the stages of the CPU
// kernels (kernels/cpu/moe.h) and with their routing rules (kernels/moe_routing.h):
//   MoeRoute      router logits -> top-k expert ids and weights per token
//   MoeAlign      the num_tokens * top_k assignments grouped by expert (counts, offsets, permuted
//                 order, row_of) and the grouped GEMM's tile schedule, all computed on the device
//   MoeGatherRows rows of x in permuted order
//   MoeExperts    the grouped GEMM: each expert's SwiGLU MLP over its rows (tensor cores)
//   MoeCombine    out[t] = sum_j weight[t, j] * y[row_of[t, j]]
// and MoeForward running them all from one caller-provided workspace.
//
// Like ops.h: each launcher checks its arguments (INVALID_ARGUMENT naming the field) and enqueues
// its kernels on `stream`; nothing synchronises, allocates or copies to the host, so a whole layer
// can be captured in a CUDA graph. Only num_tokens is a host value (a captured graph uses the
// batch bucket's token count; padded tokens are routed like any other); how many rows each expert
// gets is known only on the device, so the GEMM grid is sized from an upper bound
// (MoeMaxTiles) and blocks past the device's tile count exit at once.
#ifndef KVASIR_KERNELS_CUDA_MOE_H_
#define KVASIR_KERNELS_CUDA_MOE_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/moe_args.h"
#include "kernels/moe_routing.h"

namespace kvasir::cuda {

// Routes num_tokens tokens as kernels/moe_routing.h describes, with cpu::MoeRoute's rules: scores
// in float (softmax: max subtracted, exp, sum in expert order), choice = score + bias (NaN ->
// -inf), group-limited routing (group max or top-2 sum; the best topk_groups groups, lower group
// index on ties), top_k by choice, largest first, lower expert index on ties; weights are the
// scores (never the bias), renormalised if asked, times scaling. One warp per token.
//   logits          [num_tokens, E] float32
//   selection_bias  [E] float32 or null
//   expert_ids      [num_tokens, top_k] int32 out
//   weights         [num_tokens, top_k] float32 out
// E <= kMoeMaxExperts (256).
absl::Status MoeRoute(const float* logits, int32_t num_tokens, const MoeRouting& routing,
                      const float* selection_bias, int32_t* expert_ids, float* weights,
                      cudaStream_t stream);

// Groups the n = num_tokens * top_k assignments expert_ids [n] by expert, on the device, in one
// block (cpu::MoePermute's counting sort: tokens ascending within an expert), and writes the
// grouped GEMM's tile schedule for tiles of block_m rows (MoeAlignOut in moe_args.h). An id outside
// [0, num_experts) is left out: its row_of is -1 (MoeCombine then writes a NaN row for its
// token) and the unused permuted rows at the end get source_token -1. block_m is 16 or 64
// (kMoeBlockMSmall / kMoeBlockMLarge), the tile height of the MoeExperts call that follows.
absl::Status MoeAlign(const int32_t* expert_ids, int32_t num_tokens, int32_t top_k,
                      int32_t num_experts, int32_t block_m, const MoeAlignOut& out,
                      cudaStream_t stream);

// An upper bound on the tiles of n assignments over num_experts experts: sum over experts of
// ceil(rows / block_m) <= min(n, (n + num_experts * (block_m - 1)) / block_m). The tile arrays
// need this many entries; the MoeExperts grid has this many rows of blocks.
int64_t MoeMaxTiles(int64_t n, int32_t num_experts, int32_t block_m);

// xs[r] = x[source_token[r]] for r < num_rows; x [*, hidden], xs [num_rows, hidden] bf16. A token
// outside [0, num_tokens) (source_token -1: an unused row) gives a NaN row. hidden % 8 == 0,
// x and xs 16-byte aligned.
absl::Status MoeGatherRows(const bf16* x, int32_t num_tokens, int64_t hidden,
                           const int32_t* source_token, int32_t num_rows, bf16* xs,
                           cudaStream_t stream);

// The grouped GEMM over MoeAlign's schedule: for each tile (expert e, rows [row, min(row +
// block_m, expert_offsets[e + 1]))) of xs,
//   h  = bf16(silu(bf16(xs gate_e^T)) * bf16(xs up_e^T))   [rows, inter] (gate/up GEMM, fused)
//   ys = bf16(h down_e^T)                                  [rows, hidden]
// with bf16 mma.sync tensor cores (WMMA) and fp32 accumulation. Rows of experts without
// assignments are never touched, nor are their weights. See MoeExpertsArgs (moe_args.h).
absl::Status MoeExperts(const MoeExpertsArgs& args, cudaStream_t stream);

// out[t] = bf16(sum over j < top_k of weights[t*k+j] * ys[row_of[t*k+j]]), summed in j order in
// float (cpu::MoeCombine's order). ys [*, hidden], out [num_tokens, hidden] bf16, hidden % 8 == 0,
// 16-byte aligned; out must not overlap ys. row_of -1 gives a NaN row.
absl::Status MoeCombine(const bf16* ys, int64_t hidden, const int32_t* row_of, const float* weights,
                        int32_t num_tokens, int32_t top_k, bf16* out, cudaStream_t stream);

// Device bytes MoeForward needs for up to max_tokens tokens (256-byte aligned pieces: expert ids
// and weights, the MoeAlignOut arrays, xs, h and ys).
size_t MoeWorkspaceBytes(int64_t max_tokens, int32_t top_k, int32_t num_experts, int64_t hidden,
                         int64_t inter);

// The whole layer: MoeRoute -> MoeAlign -> MoeGatherRows -> MoeExperts -> MoeCombine, in the
// workspace (at least MoeWorkspaceBytes(num_tokens, ...) bytes, 256-byte aligned). The tile
// height is chosen on the host from num_tokens * top_k / num_experts (16 for decode-sized
// batches, 64 otherwise). See MoeForwardArgs (moe_args.h).
absl::Status MoeForward(const MoeForwardArgs& args, cudaStream_t stream);

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_MOE_H_
