// Loading the routed experts of a mixture-of-experts layer (Ops::Moe's weights) from Hugging Face
// tensor names, in the two layouts checkpoints use.
#ifndef KVASIR_ENGINE_MODELS_MOE_WEIGHTS_H_
#define KVASIR_ENGINE_MODELS_MOE_WEIGHTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/ops.h"
#include "engine/weights/weight_source.h"

namespace kvasir {

// The names of one architecture's MoE block, relative to "model.layers.<i>.".
struct MoeTensorNames {
  std::string block;  // "mlp" (Qwen3-MoE, DeepSeek) or "block_sparse_moe" (Mixtral)
  std::string gate = "gate_proj", up = "up_proj", down = "down_proj";  // Mixtral: w1, w3, w2
};

// Mixtral's and Qwen-MoE's names.
MoeTensorNames MixtralMoeNames();
MoeTensorNames QwenMoeNames();

// Loads layer `layer`'s router (<block>.gate.weight [E, hidden]), the optional
// <block>.gate.e_score_correction_bias [E] (F32 or BF16, uploaded as float32) and the experts,
// either
//   per expert (what transformers saves): <block>.experts.<e>.<gate|up|down>.weight
//     [inter, hidden], [inter, hidden], [hidden, inter]; or
//   stacked (transformers 5's in-memory layout): <block>.experts.gate_up_proj [E, 2 * inter,
//     hidden] (each expert's gate rows, then its up rows) and <block>.experts.down_proj
//     [E, hidden, inter], used when gate_up_proj is present.
// Errors name the tensor and the expected shape.
absl::StatusOr<MoeWeights> LoadMoeWeights(const WeightSource& w, Ops& ops, const ModelConfig& c,
                                          const MoeTensorNames& names, int64_t layer);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_MODELS_MOE_WEIGHTS_H_
