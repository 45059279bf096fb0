// The Llama family: Llama-2/3 (incl. llama3 RoPE scaling) and SmolLM2, Qwen2 (q/k/v bias),
// Qwen3 (per-head q/k RMSNorm), and their mixture-of-experts variants Mixtral (Llama attention)
// and Qwen3-MoE (Qwen3 attention). One decoder, switched by config flags; a layer's MLP is dense
// or Ops::Moe (IsMoeLayer).
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/models/model.h"
#include "engine/models/moe_weights.h"
#include "engine/util/status_macros.h"

namespace kvasir {
namespace {

struct LayerWeights {
  Weight input_norm, post_attention_norm;
  Weight q, k, v, o, q_bias, k_bias, v_bias, q_norm, k_norm;
  Weight gate, up, down;  // dense MLP
  bool sparse = false;    // experts instead of the dense MLP
  MoeWeights moe;
};

class LlamaModel : public Model {
 public:
  explicit LlamaModel(const ModelConfig& config) : c_(config) {}

  absl::Status Load(const WeightSource& w, Ops& ops) override {
    const int64_t h = c_.hidden_size, q_dim = c_.num_heads * c_.head_dim,
                  kv_dim = c_.num_kv_heads * c_.head_dim, ffn = c_.intermediate_size;
    KV_ASSIGN_OR_RETURN(embed_, Fetch(w, ops, "model.embed_tokens.weight", {c_.vocab_size, h}));
    KV_ASSIGN_OR_RETURN(final_norm_, Fetch(w, ops, "model.norm.weight", {h}));
    if (c_.tie_word_embeddings && !w.Has("lm_head.weight")) {
      lm_head_ = embed_;
    } else {
      KV_ASSIGN_OR_RETURN(lm_head_, Fetch(w, ops, "lm_head.weight", {c_.vocab_size, h}));
    }
    layers_.resize(c_.num_layers);
    for (int64_t i = 0; i < c_.num_layers; ++i) {
      const std::string p = absl::StrCat("model.layers.", i, ".");
      LayerWeights& l = layers_[i];
      KV_ASSIGN_OR_RETURN(l.input_norm, Fetch(w, ops, p + "input_layernorm.weight", {h}));
      KV_ASSIGN_OR_RETURN(l.post_attention_norm,
                          Fetch(w, ops, p + "post_attention_layernorm.weight", {h}));
      KV_ASSIGN_OR_RETURN(l.q, Fetch(w, ops, p + "self_attn.q_proj.weight", {q_dim, h}));
      KV_ASSIGN_OR_RETURN(l.k, Fetch(w, ops, p + "self_attn.k_proj.weight", {kv_dim, h}));
      KV_ASSIGN_OR_RETURN(l.v, Fetch(w, ops, p + "self_attn.v_proj.weight", {kv_dim, h}));
      KV_ASSIGN_OR_RETURN(l.o, Fetch(w, ops, p + "self_attn.o_proj.weight", {h, q_dim}));
      if (c_.attention_bias) {
        KV_ASSIGN_OR_RETURN(l.q_bias, Fetch(w, ops, p + "self_attn.q_proj.bias", {q_dim}));
        KV_ASSIGN_OR_RETURN(l.k_bias, Fetch(w, ops, p + "self_attn.k_proj.bias", {kv_dim}));
        KV_ASSIGN_OR_RETURN(l.v_bias, Fetch(w, ops, p + "self_attn.v_proj.bias", {kv_dim}));
      }
      if (c_.qk_norm) {
        KV_ASSIGN_OR_RETURN(l.q_norm, Fetch(w, ops, p + "self_attn.q_norm.weight", {c_.head_dim}));
        KV_ASSIGN_OR_RETURN(l.k_norm, Fetch(w, ops, p + "self_attn.k_norm.weight", {c_.head_dim}));
      }
      l.sparse = IsMoeLayer(c_, i);
      if (l.sparse) {
        const MoeTensorNames names =
            c_.architecture == "MixtralForCausalLM" ? MixtralMoeNames() : QwenMoeNames();
        KV_ASSIGN_OR_RETURN(l.moe, LoadMoeWeights(w, ops, c_, names, i));
      } else {
        KV_ASSIGN_OR_RETURN(l.gate, Fetch(w, ops, p + "mlp.gate_proj.weight", {ffn, h}));
        KV_ASSIGN_OR_RETURN(l.up, Fetch(w, ops, p + "mlp.up_proj.weight", {ffn, h}));
        KV_ASSIGN_OR_RETURN(l.down, Fetch(w, ops, p + "mlp.down_proj.weight", {h, ffn}));
      }
    }
    KV_ASSIGN_OR_RETURN(inv_freq_, ops.UploadFloats(RopeInvFreq(c_)));
    return absl::OkStatus();
  }

  KvCacheSpec KvSpec() const override {
    KvCacheSpec spec;
    spec.num_layers = static_cast<int32_t>(c_.num_layers);
    spec.num_kv_heads = static_cast<int32_t>(c_.num_kv_heads);
    spec.head_dim = static_cast<int32_t>(c_.head_dim);
    return spec;
  }

  Tensor Forward(const StepBatch& batch, Ops& ops) override {
    const int64_t n = batch.num_tokens();
    const float eps = static_cast<float>(c_.rms_norm_eps);
    Tensor x = ops.Alloc(n, c_.hidden_size);
    Tensor h = ops.Alloc(n, c_.hidden_size);
    // Scratch shared by every layer (the arena hands out a new buffer per Alloc call).
    const int64_t hd = c_.head_dim, ffn = c_.intermediate_size;
    const Scratch s{ops.Alloc(n, c_.num_heads * hd),
                    ops.Alloc(n, c_.num_kv_heads * hd),
                    ops.Alloc(n, c_.num_kv_heads * hd),
                    ops.Alloc(n, c_.num_heads * hd),
                    ops.Alloc(n, ffn),
                    ops.Alloc(n, ffn),
                    ops.Alloc(n, c_.hidden_size)};
    ops.Embedding(embed_, x);
    const Tensor rope =
        ops.RopeTable(inv_freq_, static_cast<int32_t>(c_.rotary_dim), c_.rope_angles,
                      static_cast<float>(c_.rope_scaling.attention_factor));
    for (int32_t i = 0; i < static_cast<int32_t>(layers_.size()); ++i) {
      const LayerWeights& l = layers_[i];
      ops.RmsNorm(x, l.input_norm, eps, h);
      SelfAttention(ops, i, rope, s, h);
      ops.Add(x, h);
      ops.RmsNorm(x, l.post_attention_norm, eps, h);
      ops.Add(x, Mlp(ops, l, s, h));
    }
    return ComputeLogits(ops, batch, x, final_norm_, lm_head_, eps, c_.hidden_size, c_.vocab_size);
  }

 private:
  struct Scratch {
    Tensor q, k, v, attn, gate, up, moe_out;
  };

  // h = o_proj(attention(q, k, v)) of the normed input h, in place.
  void SelfAttention(Ops& ops, int32_t layer, Tensor rope, const Scratch& s, Tensor h) const {
    const LayerWeights& l = layers_[layer];
    const int32_t hd = static_cast<int32_t>(c_.head_dim);
    const float eps = static_cast<float>(c_.rms_norm_eps);
    ops.MatMul(h, l.q, Bias(l.q_bias), s.q);
    ops.MatMul(h, l.k, Bias(l.k_bias), s.k);
    ops.MatMul(h, l.v, Bias(l.v_bias), s.v);
    if (c_.qk_norm) {
      ops.RmsNorm(s.q.View(hd), l.q_norm, eps, s.q.View(hd));
      ops.RmsNorm(s.k.View(hd), l.k_norm, eps, s.k.View(hd));
    }
    ops.Rope(s.q, hd, 0, rope, c_.rope_layout);
    ops.Rope(s.k, hd, 0, rope, c_.rope_layout);
    ops.Attention(layer, s.q, s.k, s.v, 1.0f / std::sqrt(static_cast<float>(hd)), s.attn);
    ops.MatMul(s.attn, l.o, nullptr, h);
  }

  // The layer's MLP (dense SwiGLU or routed experts) of the normed input h; returns where the
  // result is (h itself for the dense MLP).
  Tensor Mlp(Ops& ops, const LayerWeights& l, const Scratch& s, Tensor h) const {
    if (l.sparse) {
      ops.Moe(h, l.moe, s.moe_out);
      return s.moe_out;
    }
    ops.MatMul(h, l.gate, nullptr, s.gate);
    ops.MatMul(h, l.up, nullptr, s.up);
    ops.SiluMul(s.gate, s.up, s.gate);
    ops.MatMul(s.gate, l.down, nullptr, h);
    return h;
  }

  static const Weight* Bias(const Weight& b) { return b.empty() ? nullptr : &b; }

  static absl::StatusOr<Weight> Fetch(const WeightSource& w, Ops& ops, const std::string& name,
                                      std::vector<int64_t> shape) {
    KV_ASSIGN_OR_RETURN(TensorView t, GetChecked(w, name, shape));
    return ops.Upload(t);
  }

  ModelConfig c_;
  Weight embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<LayerWeights> layers_;
};

KVASIR_REGISTER_MODEL("LlamaForCausalLM", LlamaModel);
KVASIR_REGISTER_MODEL("Qwen2ForCausalLM", LlamaModel);
KVASIR_REGISTER_MODEL("Qwen3ForCausalLM", LlamaModel);
KVASIR_REGISTER_MODEL("MixtralForCausalLM", LlamaModel);
KVASIR_REGISTER_MODEL("Qwen3MoeForCausalLM", LlamaModel);

}  // namespace
}  // namespace kvasir
