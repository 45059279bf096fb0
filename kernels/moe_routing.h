// How a mixture-of-experts layer picks experts for a token: the parameters shared by every
// backend's MoE op (engine/ops.h `Ops::Moe`) and by model configs. Header-only, no device code.
//
// For one token with router logits l[0..E):
//   1. scores s = softmax(l) (Mixtral, Qwen3-MoE, DeepSeek-V2) or sigmoid(l) per expert
//      (DeepSeek-V3).
//   2. choice c = s + selection_bias (DeepSeek-V3's e_score_correction_bias; 0 without one). The
//      bias decides which experts are picked, never how much they weigh.
//   3. Group-limited routing (num_groups > 1): the E experts form num_groups contiguous groups;
//      a group scores the max of its c (DeepSeek-V2) or the sum of its two largest c
//      (DeepSeek-V3); only experts in the topk_groups best groups stay eligible.
//   4. top_k eligible experts by c, largest first; ties go to the lower expert index.
//   5. weight_j = s[expert_j]; if renormalize, divided by their sum; then times scaling
//      (routed_scaling_factor).
#ifndef KVASIR_KERNELS_MOE_ROUTING_H_
#define KVASIR_KERNELS_MOE_ROUTING_H_

#include <cstdint>

namespace kvasir {

enum class MoeScoring { kSoftmax, kSigmoid };

enum class MoeGroupScore {
  kMax,      // DeepSeek-V2 group_limited_greedy: the group's best expert
  kTop2Sum,  // DeepSeek-V3 noaux_tc: the sum of the group's two best experts
};

struct MoeRouting {
  int32_t num_experts = 0;
  int32_t top_k = 0;  // in [1, num_experts]
  MoeScoring scoring = MoeScoring::kSoftmax;
  // Group-limited top-k; num_groups == 1 turns it off. num_groups divides num_experts,
  // topk_groups in [1, num_groups], and top_k <= topk_groups * experts per group.
  int32_t num_groups = 1;
  int32_t topk_groups = 1;
  MoeGroupScore group_score = MoeGroupScore::kMax;
  bool renormalize = false;  // norm_topk_prob (always on for Mixtral)
  float scaling = 1.0f;      // routed_scaling_factor
};

}  // namespace kvasir

#endif  // KVASIR_KERNELS_MOE_ROUTING_H_
