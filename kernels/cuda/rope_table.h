// The RoPE cos/sin table the CUDA kernels read, built once per model on the host and uploaded.
// Frequencies come from the model config (engine/model_config.h RopeInvFreq: theta, partial
// rotary, and transformers' "linear", "llama3" and "yarn" scaling); YaRN's attention factor
// scales cos and sin, as transformers does.
#ifndef KVASIR_KERNELS_CUDA_ROPE_TABLE_H_
#define KVASIR_KERNELS_CUDA_ROPE_TABLE_H_

#include <cstdint>
#include <vector>

namespace kvasir::cuda {

// Returns [max_positions, rot_dim] floats: row p holds cos(p * inv_freq[i]) * attention_factor
// for i < rot_dim / 2, then the sines likewise; rot_dim = 2 * inv_freq.size(). Angles are
// formed as transformers does (float(p) * inv_freq[i] in float32) and cos/sin taken in double.
std::vector<float> RopeCosSinTable(const std::vector<float>& inv_freq, int32_t max_positions,
                                   float attention_factor);

}  // namespace kvasir::cuda

#endif  // KVASIR_KERNELS_CUDA_ROPE_TABLE_H_
