// DeepSeek-V2 and DeepSeek-V3: multi-head latent attention (MLA) and DeepSeekMoE.
//
// Attention (per layer): q = q_proj(h) or q_b_proj(q_a_layernorm(q_a_proj(h))), per head
// [nope | rope]; kv_a_proj_with_mqa(h) = [latent | k_rope]; the latent is RMS-normed
// (kv_a_layernorm) and, with the rotated k_rope, is all the KV cache keeps (KvLayout::kMlaLatent);
// Ops::MlaAttention up-projects it with kv_b_proj (expanded or absorbed, the backend's choice);
// o_proj. RoPE pairs are interleaved (2i, 2i + 1): transformers' V2 rotates complex pairs, V3's
// apply_rotary_pos_emb_interleave de-interleaves q and k the same way after rotating, which
// leaves q . k unchanged. YaRN: cos/sin times attention_factor, softmax scale times
// mscale(mscale_all_dim)^2 (MlaConfig::softmax_scale).
//
// MLP: dense SwiGLU below first_k_dense_replace (and off the moe_layer_freq grid), else
// Ops::Moe over the routed experts (routing from MoeConfig) plus the shared experts, a dense
// SwiGLU of n_shared_experts * moe_intermediate_size added to it.
//
// Multi-token-prediction layers (V3's num_nextn_predict_layers, stored as layer
// num_hidden_layers and up) are not loaded: they serve speculative decoding only.
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/models/model.h"
#include "engine/models/moe_weights.h"
#include "engine/util/status_macros.h"

namespace kvasir {
namespace {

struct MlaLayer {
  Weight q, q_a, q_a_norm, q_b;   // q (no q_lora_rank) or q_a -> q_a_norm -> q_b
  Weight kv_a_latent, kv_a_rope;  // kv_a_proj_with_mqa's rows: [kv_lora_rank | rope]
  Weight kv_a_norm, kv_b, o;
};

struct SwiGlu {
  Weight gate, up, down;
};

struct Layer {
  Weight input_norm, post_attention_norm;
  MlaLayer attn;
  bool sparse = false;
  SwiGlu mlp;  // the dense MLP, or the shared experts of a sparse layer (empty if none)
  MoeWeights moe;
};

class DeepseekModel : public Model {
 public:
  explicit DeepseekModel(const ModelConfig& config) : c_(config) {
    const MlaConfig& a = c_.mla;
    dims_.num_heads = static_cast<int32_t>(c_.num_heads);
    dims_.nope_dim = static_cast<int32_t>(a.nope_head_dim);
    dims_.rope_dim = static_cast<int32_t>(a.rope_head_dim);
    dims_.v_dim = static_cast<int32_t>(a.v_head_dim);
    dims_.kv_lora_rank = static_cast<int32_t>(a.kv_lora_rank);
  }

  absl::Status Load(const WeightSource& w, Ops& ops) override {
    const int64_t h = c_.hidden_size;
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
      Layer& l = layers_[i];
      KV_ASSIGN_OR_RETURN(l.input_norm, Fetch(w, ops, p + "input_layernorm.weight", {h}));
      KV_ASSIGN_OR_RETURN(l.post_attention_norm,
                          Fetch(w, ops, p + "post_attention_layernorm.weight", {h}));
      KV_ASSIGN_OR_RETURN(l.attn, LoadAttention(w, ops, p + "self_attn."));
      l.sparse = IsMoeLayer(c_, i);
      if (l.sparse) {
        KV_ASSIGN_OR_RETURN(l.moe, LoadMoeWeights(w, ops, c_, QwenMoeNames(), i));
        const int64_t shared = c_.moe.num_shared_experts * c_.moe.expert_intermediate_size;
        if (shared > 0) {
          KV_ASSIGN_OR_RETURN(l.mlp, LoadSwiGlu(w, ops, p + "mlp.shared_experts.", shared));
        }
      } else {
        KV_ASSIGN_OR_RETURN(l.mlp, LoadSwiGlu(w, ops, p + "mlp.", c_.intermediate_size));
      }
    }
    KV_ASSIGN_OR_RETURN(inv_freq_, ops.UploadFloats(RopeInvFreq(c_)));
    return absl::OkStatus();
  }

  KvCacheSpec KvSpec() const override {
    KvCacheSpec spec;
    spec.num_layers = static_cast<int32_t>(c_.num_layers);
    spec.layout = KvLayout::kMlaLatent;
    spec.kv_lora_rank = dims_.kv_lora_rank;
    spec.rope_dim = dims_.rope_dim;
    return spec;
  }

  Tensor Forward(const StepBatch& batch, Ops& ops) override {
    const int64_t n = batch.num_tokens();
    const float eps = static_cast<float>(c_.rms_norm_eps);
    Tensor x = ops.Alloc(n, c_.hidden_size);
    Tensor h = ops.Alloc(n, c_.hidden_size);
    const Scratch s = MakeScratch(ops, n);
    ops.Embedding(embed_, x);
    const Tensor rope = ops.RopeTable(inv_freq_, dims_.rope_dim, c_.rope_angles,
                                      static_cast<float>(c_.rope_scaling.attention_factor));
    for (int32_t i = 0; i < static_cast<int32_t>(layers_.size()); ++i) {
      const Layer& l = layers_[i];
      ops.RmsNorm(x, l.input_norm, eps, h);
      Attention(ops, i, rope, s, h);
      ops.Add(x, h);
      ops.RmsNorm(x, l.post_attention_norm, eps, h);
      ops.Add(x, Mlp(ops, l, s, h));
    }
    return ComputeLogits(ops, batch, x, final_norm_, lm_head_, eps, c_.hidden_size, c_.vocab_size);
  }

 private:
  // Per-step buffers shared by every layer.
  struct Scratch {
    Tensor q_lora, q, latent, k_rope, attn, gate, up, shared_gate, shared_up, moe_out;
  };

  Scratch MakeScratch(Ops& ops, int64_t n) const {
    const int64_t heads = c_.num_heads;
    const int64_t shared = c_.moe.num_shared_experts * c_.moe.expert_intermediate_size;
    Scratch s;
    if (c_.mla.q_lora_rank > 0) s.q_lora = ops.Alloc(n, c_.mla.q_lora_rank);
    s.q = ops.Alloc(n, heads * (dims_.nope_dim + dims_.rope_dim));
    s.latent = ops.Alloc(n, dims_.kv_lora_rank);
    s.k_rope = ops.Alloc(n, dims_.rope_dim);
    s.attn = ops.Alloc(n, heads * dims_.v_dim);
    s.gate = ops.Alloc(n, c_.intermediate_size);
    s.up = ops.Alloc(n, c_.intermediate_size);
    if (shared > 0) {
      s.shared_gate = ops.Alloc(n, shared);
      s.shared_up = ops.Alloc(n, shared);
    }
    if (c_.moe.routing.num_experts > 0) s.moe_out = ops.Alloc(n, c_.hidden_size);
    return s;
  }

  // h = o_proj(MLA(h)) of the normed input h, in place.
  void Attention(Ops& ops, int32_t layer, Tensor rope, const Scratch& s, Tensor h) const {
    const MlaLayer& a = layers_[layer].attn;
    const float eps = static_cast<float>(c_.rms_norm_eps);
    if (c_.mla.q_lora_rank > 0) {
      ops.MatMul(h, a.q_a, nullptr, s.q_lora);
      ops.RmsNorm(s.q_lora, a.q_a_norm, eps, s.q_lora);
      ops.MatMul(s.q_lora, a.q_b, nullptr, s.q);
    } else {
      ops.MatMul(h, a.q, nullptr, s.q);
    }
    ops.MatMul(h, a.kv_a_latent, nullptr, s.latent);
    ops.RmsNorm(s.latent, a.kv_a_norm, eps, s.latent);
    ops.MatMul(h, a.kv_a_rope, nullptr, s.k_rope);
    ops.Rope(s.q, dims_.nope_dim + dims_.rope_dim, dims_.nope_dim, rope, c_.rope_layout);
    ops.Rope(s.k_rope, dims_.rope_dim, 0, rope, c_.rope_layout);
    ops.MlaAttention(layer, s.q, s.latent, s.k_rope, a.kv_b, dims_,
                     static_cast<float>(c_.mla.softmax_scale), s.attn);
    ops.MatMul(s.attn, a.o, nullptr, h);
  }

  // The layer's MLP of the normed input h; returns where the result is.
  Tensor Mlp(Ops& ops, const Layer& l, const Scratch& s, Tensor h) const {
    if (!l.sparse) {
      RunSwiGlu(ops, l.mlp, s.gate, s.up, h);
      return h;
    }
    ops.Moe(h, l.moe, s.moe_out);
    if (!l.mlp.gate.empty()) {
      RunSwiGlu(ops, l.mlp, s.shared_gate, s.shared_up, h);
      ops.Add(s.moe_out, h);
    }
    return s.moe_out;
  }

  // h = down(silu(gate h) * up h), in place.
  static void RunSwiGlu(Ops& ops, const SwiGlu& w, Tensor gate, Tensor up, Tensor h) {
    ops.MatMul(h, w.gate, nullptr, gate);
    ops.MatMul(h, w.up, nullptr, up);
    ops.SiluMul(gate, up, gate);
    ops.MatMul(gate, w.down, nullptr, h);
  }

  absl::StatusOr<MlaLayer> LoadAttention(const WeightSource& w, Ops& ops,
                                         const std::string& p) const {
    const int64_t h = c_.hidden_size, heads = c_.num_heads, rank = dims_.kv_lora_rank;
    const int64_t qk = heads * (dims_.nope_dim + dims_.rope_dim);
    MlaLayer a;
    if (c_.mla.q_lora_rank > 0) {
      const int64_t qr = c_.mla.q_lora_rank;
      KV_ASSIGN_OR_RETURN(a.q_a, Fetch(w, ops, p + "q_a_proj.weight", {qr, h}));
      KV_ASSIGN_OR_RETURN(a.q_a_norm, Fetch(w, ops, p + "q_a_layernorm.weight", {qr}));
      KV_ASSIGN_OR_RETURN(a.q_b, Fetch(w, ops, p + "q_b_proj.weight", {qk, qr}));
    } else {
      KV_ASSIGN_OR_RETURN(a.q, Fetch(w, ops, p + "q_proj.weight", {qk, h}));
    }
    KV_ASSIGN_OR_RETURN(Weight kv_a,
                        Fetch(w, ops, p + "kv_a_proj_with_mqa.weight", {rank + dims_.rope_dim, h}));
    a.kv_a_latent = SliceRows(kv_a, 0, rank);
    a.kv_a_rope = SliceRows(kv_a, rank, dims_.rope_dim);
    KV_ASSIGN_OR_RETURN(a.kv_a_norm, Fetch(w, ops, p + "kv_a_layernorm.weight", {rank}));
    KV_ASSIGN_OR_RETURN(a.kv_b, Fetch(w, ops, p + "kv_b_proj.weight",
                                      {heads * (dims_.nope_dim + dims_.v_dim), rank}));
    KV_ASSIGN_OR_RETURN(a.o, Fetch(w, ops, p + "o_proj.weight", {h, heads * dims_.v_dim}));
    return a;
  }

  absl::StatusOr<SwiGlu> LoadSwiGlu(const WeightSource& w, Ops& ops, const std::string& p,
                                    int64_t inter) const {
    const int64_t h = c_.hidden_size;
    SwiGlu m;
    KV_ASSIGN_OR_RETURN(m.gate, Fetch(w, ops, p + "gate_proj.weight", {inter, h}));
    KV_ASSIGN_OR_RETURN(m.up, Fetch(w, ops, p + "up_proj.weight", {inter, h}));
    KV_ASSIGN_OR_RETURN(m.down, Fetch(w, ops, p + "down_proj.weight", {h, inter}));
    return m;
  }

  static absl::StatusOr<Weight> Fetch(const WeightSource& w, Ops& ops, const std::string& name,
                                      std::vector<int64_t> shape) {
    KV_ASSIGN_OR_RETURN(TensorView t, GetChecked(w, name, shape));
    return ops.Upload(t);
  }

  ModelConfig c_;
  MlaDims dims_;
  Weight embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
};

KVASIR_REGISTER_MODEL("DeepseekV2ForCausalLM", DeepseekModel);
KVASIR_REGISTER_MODEL("DeepseekV3ForCausalLM", DeepseekModel);

}  // namespace
}  // namespace kvasir
