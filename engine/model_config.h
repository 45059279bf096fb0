// The shape of a model, from a Hugging Face config.json or from GGUF metadata, and what derives
// from it (RoPE inverse frequencies). Supported: LlamaForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM, DeepseekV2ForCausalLM,
// DeepseekV3ForCausalLM.
#ifndef KVASIR_ENGINE_MODEL_CONFIG_H_
#define KVASIR_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/moe_routing.h"

namespace kvasir {

class GgufFile;

enum class RopeLayout {
  kNeox,         // HF rotate-half: pairs (i, i + rotary_dim / 2)
  kInterleaved,  // GGUF llama (Q/K rows permuted by llama.cpp's converter), DeepSeek's q/k RoPE
                 // parts: pairs (2i, 2i + 1)
};

// How RoPE angles are formed: HF's float(p) * inv_freq[i], or llama.cpp's recurrence
// theta_{i+1} = theta_i * theta_scale (used for GGUF files with plain RoPE, so that they
// reproduce llama.cpp bit for bit).
enum class RopeAngles { kProduct, kGgmlRecurrence };

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear", "yarn"; "dynamic" is rejected
  double factor = 1;
  double low_freq_factor = 1;                    // llama3
  double high_freq_factor = 4;                   // llama3
  int64_t original_max_position_embeddings = 0;  // llama3, yarn
  double beta_fast = 32;                         // yarn
  double beta_slow = 1;                          // yarn
  // yarn: cos and sin are multiplied by this (transformers' attention_factor); 1 otherwise.
  double attention_factor = 1;
  // yarn (DeepSeek): mscale_all_dim, 0 when absent. MLA's softmax scale is multiplied by
  // (0.1 * mscale_all_dim * ln(factor) + 1)^2 when it is not 0 and factor > 1.
  double mscale_all_dim = 0;
};

// Mixture of experts; routing.num_experts == 0 for a dense model. Router auxiliary-loss settings
// (output_router_logits, router_aux_loss_coef, router_jitter_noise) only matter for training and
// are ignored.
struct MoeConfig {
  // num_local_experts (or num_experts), num_experts_per_tok, norm_topk_prob (Mixtral: always
  // renormalised); scoring, groups and scaling are DeepSeek's and keep their defaults otherwise.
  MoeRouting routing;
  int64_t expert_intermediate_size = 0;  // moe_intermediate_size (Mixtral: intermediate_size)
  // Layer i has experts iff routing.num_experts > 0, (i + 1) % decoder_sparse_step == 0 and i is
  // not in mlp_only_layers (Qwen3-MoE); the other layers have a dense MLP of intermediate_size.
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  // DeepSeek: layers below first_k_dense_replace are dense, and a later layer i has experts iff
  // i % moe_layer_freq == 0 (DeepSeek's reference code; transformers ignores moe_layer_freq,
  // which is 1 in every released config).
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  // DeepSeek: shared experts, one dense SwiGLU MLP of num_shared_experts * expert_intermediate_size
  // added to the routed experts' output; 0 for none.
  int64_t num_shared_experts = 0;
};

// Multi-head latent attention (DeepSeek-V2/V3); kv_lora_rank == 0 for other models. Query and key
// heads are nope_head_dim + rope_head_dim wide, value heads v_head_dim; every head's key and
// value are up-projected (kv_b_proj) from one latent of kv_lora_rank per token, which is what the
// KV cache holds (with the RoPE key, rope_head_dim, shared by all heads).
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0: q_proj (config null); else q_a_proj -> q_a_layernorm -> q_b_proj
  int64_t kv_lora_rank = 0;
  int64_t nope_head_dim = 0;  // qk_nope_head_dim
  int64_t rope_head_dim = 0;  // qk_rope_head_dim (= rotary_dim = head_dim in ModelConfig)
  int64_t v_head_dim = 0;
  // softmax scale: 1 / sqrt(nope + rope), times YaRN's mscale_all_dim correction (RopeScaling).
  double softmax_scale = 0;
};

struct ModelConfig {
  // "LlamaForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM" | "MixtralForCausalLM" |
  // "Qwen3MoeForCausalLM" | "DeepseekV2ForCausalLM" | "DeepseekV3ForCausalLM"
  std::string architecture;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  // head_dim * partial_rotary_factor; even, <= head_dim
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  // GGUF only: llama.cpp's rope_freqs.weight (Llama 3.x files); inverse frequency i is divided by
  // element i. Empty when absent. Takes the place of rope_scaling "llama3".
  std::vector<float> rope_freq_factors;
  RopeLayout rope_layout = RopeLayout::kNeox;
  RopeAngles rope_angles = RopeAngles::kProduct;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q, k, v projections have a bias
  bool qk_norm = false;         // per-head RMSNorm of q and k (Qwen3)
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json's eos_token_id may be an int or a list
  std::string torch_dtype;             // "" when unknown (GGUF)
  MoeConfig moe;
  MlaConfig mla;
};

// Whether layer `layer` routes to experts (see MoeConfig) rather than running a dense MLP.
bool IsMoeLayer(const ModelConfig& c, int64_t layer);

// The architectures above, for messages: "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM".
std::string SupportedArchitectures();

// Reads a Hugging Face config.json. Defaults follow transformers (LlamaConfig, Qwen2Config,
// Qwen3Config, MixtralConfig, Qwen3MoeConfig, DeepseekV2Config, DeepseekV3Config). DeepSeek: see
// HfDeepseek in model_config.cc for the keys; head_dim and rotary_dim are qk_rope_head_dim (as
// transformers sets them), num_kv_heads is num_heads, rope_layout kInterleaved (rope_interleave
// false: kNeox); multi-token-prediction layers (num_nextn_predict_layers, stored as layers
// >= num_hidden_layers) are ignored. NotFound when the file is absent; InvalidArgument
// naming the file and the key for invalid JSON, an unknown architecture (listing the supported
// ones), a missing or ill-typed required key, or inconsistent values (heads not dividing
// hidden_size or each other, odd head_dim, unsupported rope_scaling, num_experts_per_tok outside
// [1, experts], mlp_only_layers out of range, a Mixtral sliding_window).
absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& config_json_path);

// The same from GGUF metadata (<arch>.* keys for llama, qwen2, qwen3) and the tensors present:
// tie_word_embeddings when there is no output.weight, attention_bias when blk.0.attn_q.bias exists,
// qk_norm when blk.0.attn_q_norm.weight exists; rope_layout kInterleaved for llama, kNeox for
// qwen2/qwen3. Errors name the key and the file.
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& f);

// RoPE inverse frequencies, rotary_dim / 2 of them: theta^(-2i / rotary_dim), then scaled as
// transformers does for "linear", "llama3" (_compute_llama3_parameters) and "yarn", then divided by
// rope_freq_factors when present.
std::vector<float> RopeInvFreq(const ModelConfig& c);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_MODEL_CONFIG_H_
