// The mixture-of-experts layer on CPU, in the stages every backend shares:
//   MoeRoute    router logits -> top-k expert ids and weights per token
//   MoePermute  the num_tokens * top_k (token, expert) assignments grouped by expert
//   MoeGatherRows / MoeExpertsSwiGlu   rows of x in permuted order -> each expert's SwiGLU MLP
//               over its contiguous rows (one MatMul per expert and projection)
//   MoeCombine  un-permute: out[t] = sum_j weight[t, j] * y[row of (t, j)]
// Expert parallelism puts its all-to-all between MoePermute and the expert MLP (dispatch) and
// between the MLP and MoeCombine (return).
//
// Batch invariance: each stage computes a token's values from that token's inputs only, in a
// fixed order (MatMul rows are independent of m; the combine sums j = 0..top_k-1 in routing
// order), so results do not depend on the batch, how rows are grouped or the thread count.
#ifndef KVASIR_KERNELS_CPU_MOE_H_
#define KVASIR_KERNELS_CPU_MOE_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/dtype.h"
#include "kernels/moe_routing.h"

namespace kvasir::cpu {

// Routes num_tokens tokens as kernels/moe_routing.h describes. logits [num_tokens, E];
// selection_bias [E] or null; writes expert_ids and weights [num_tokens, top_k], each row
// ordered by choice score, largest first. Scores are computed in float (softmax: max subtracted,
// exp, sum in expert order). pool may be null.
void MoeRoute(const float* logits, int64_t num_tokens, const MoeRouting& routing,
              const float* selection_bias, int32_t* expert_ids, float* weights, ThreadPool* pool);

// Where each assignment goes once grouped by expert.
struct MoePermutation {
  std::vector<int32_t> expert_offsets;  // [E + 1]: expert e owns permuted rows [off[e], off[e+1])
  std::vector<int32_t> source_token;    // [num_tokens * top_k]: the token of each permuted row
  std::vector<int32_t> row_of;          // [num_tokens * top_k]: permuted row of assignment t*k+j
};

// Counting sort of expert_ids [num_tokens, top_k] by expert, tokens ascending within an expert.
// Ids must be in [0, num_experts). Reuses perm's storage.
void MoePermute(const int32_t* expert_ids, int64_t num_tokens, int32_t top_k, int32_t num_experts,
                MoePermutation* perm);

// out[r] = x[rows[r]] for r < num_rows; x and out are [*, dim]. pool may be null.
void MoeGatherRows(const float* x, int64_t dim, const int32_t* rows, int64_t num_rows, float* out,
                   ThreadPool* pool);

// One expert's SwiGLU MLP weights: gate and up [inter, hidden], down [hidden, inter], row-major
// in the layouts of kernels/dtype.h (the three may differ in type).
struct ExpertWeights {
  const void* gate = nullptr;
  const void* up = nullptr;
  const void* down = nullptr;
  DType gate_dtype = DType::kF32, up_dtype = DType::kF32, down_dtype = DType::kF32;
};

// The grouped GEMM: for each expert e with rows [off[e], off[e+1]) of xs [rows, hidden],
// y = down_e(silu(gate_e xs) * up_e xs) into ys [rows, hidden]. Experts without rows are skipped
// (their weights are never touched). scratch_gate and scratch_up are [rows, inter].
struct MoeExpertsArgs {
  const float* xs = nullptr;
  const int32_t* expert_offsets = nullptr;  // [num_experts + 1]
  int32_t num_experts = 0;
  int64_t hidden = 0;
  int64_t inter = 0;
  const ExpertWeights* experts = nullptr;  // [num_experts]
  float* scratch_gate = nullptr;
  float* scratch_up = nullptr;
  float* ys = nullptr;
};
void MoeExpertsSwiGlu(const MoeExpertsArgs& args, ThreadPool* pool);

// out[t] = sum over j < top_k of weights[t*k+j] * ys[row_of[t*k+j]], summed in j order.
// out is [num_tokens, dim] and must not overlap ys. pool may be null.
void MoeCombine(const float* ys, int64_t dim, const int32_t* row_of, const float* weights,
                int64_t num_tokens, int32_t top_k, float* out, ThreadPool* pool);

}  // namespace kvasir::cpu

#endif  // KVASIR_KERNELS_CPU_MOE_H_
