#include "engine/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "engine/weights/gguf.h"
#include "engine/weights/str_util.h"
#include "nlohmann/json.hpp"

namespace kvasir {

using weights_internal::Cat;
namespace {

using json = nlohmann::json;

constexpr char kLlama[] = "LlamaForCausalLM";
constexpr char kQwen2[] = "Qwen2ForCausalLM";
constexpr char kQwen3[] = "Qwen3ForCausalLM";
constexpr char kMixtral[] = "MixtralForCausalLM";
constexpr char kQwen3Moe[] = "Qwen3MoeForCausalLM";
constexpr char kDeepseekV2[] = "DeepseekV2ForCausalLM";
constexpr char kDeepseekV3[] = "DeepseekV3ForCausalLM";

// Typed access to a JSON object; errors name the file and the key.
class JsonFields {
 public:
  JsonFields(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  bool Present(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  absl::StatusOr<int64_t> Int(const char* key, std::optional<int64_t> def = std::nullopt) const {
    if (!Present(key)) return Default(key, def);
    const json& v = j_[key];
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX)) {
      return Bad(key, "an integer", v);
    }
    return v.get<int64_t>();
  }
  absl::StatusOr<double> Double(const char* key, std::optional<double> def = std::nullopt) const {
    if (!Present(key)) return Default(key, def);
    const json& v = j_[key];
    if (!v.is_number()) return Bad(key, "a number", v);
    return v.get<double>();
  }
  absl::StatusOr<bool> Bool(const char* key, bool def) const {
    if (!Present(key)) return def;
    const json& v = j_[key];
    if (!v.is_boolean()) return Bad(key, "true or false", v);
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const char* key, std::string def) const {
    if (!Present(key)) return def;
    const json& v = j_[key];
    if (!v.is_string()) return Bad(key, "a string", v);
    return v.get<std::string>();
  }
  absl::Status Bad(const char* key, std::string_view wanted, const json& v) const {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return absl::InvalidArgumentError(
        Cat("'", path_, "': '", key, "' must be ", wanted, ", got ", s));
  }

 private:
  template <typename T>
  absl::StatusOr<T> Default(const char* key, std::optional<T> def) const {
    if (def.has_value()) return *def;
    return absl::InvalidArgumentError(Cat("'", path_, "': required key '", key, "' is missing"));
  }

  const json& j_;
  std::string path_;
};

absl::Status Invalid(const std::string& file, std::string_view msg) {
  return absl::InvalidArgumentError(Cat("'", file, "': ", msg));
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& rs, const std::string& path,
                                             int64_t max_pos) {
  RopeScaling s;
  if (rs.is_null()) return s;
  if (!rs.is_object()) return Invalid(path, "'rope_scaling' must be an object or null");
  const JsonFields f(rs, path);
  KV_ASSIGN_OR_RETURN(std::string type, f.String("rope_type", ""));
  if (type.empty()) {
    KV_ASSIGN_OR_RETURN(type, f.String("type", "default"));
  }
  if (type == "default") return s;
  s.type = type;
  if (type == "linear") {
    KV_ASSIGN_OR_RETURN(s.factor, f.Double("factor"));
  } else if (type == "llama3") {
    KV_ASSIGN_OR_RETURN(s.factor, f.Double("factor"));
    KV_ASSIGN_OR_RETURN(s.low_freq_factor, f.Double("low_freq_factor"));
    KV_ASSIGN_OR_RETURN(s.high_freq_factor, f.Double("high_freq_factor"));
    KV_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                        f.Int("original_max_position_embeddings"));
    if (!(s.low_freq_factor < s.high_freq_factor) || s.original_max_position_embeddings <= 0) {
      return Invalid(path,
                     "rope_scaling llama3 needs low_freq_factor < high_freq_factor and "
                     "original_max_position_embeddings > 0");
    }
  } else if (type == "yarn") {
    KV_ASSIGN_OR_RETURN(s.factor, f.Double("factor"));
    KV_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                        f.Int("original_max_position_embeddings", max_pos));
    KV_ASSIGN_OR_RETURN(s.beta_fast, f.Double("beta_fast", 32.0));
    KV_ASSIGN_OR_RETURN(s.beta_slow, f.Double("beta_slow", 1.0));
    auto mscale = [](double scale, double m) {
      return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
    };
    KV_ASSIGN_OR_RETURN(double m, f.Double("mscale", 0.0));
    KV_ASSIGN_OR_RETURN(s.mscale_all_dim, f.Double("mscale_all_dim", 0.0));
    // transformers _compute_yarn_parameters: mscale and mscale_all_dim count when both are set
    // and not 0.
    if (f.Present("attention_factor")) {
      KV_ASSIGN_OR_RETURN(s.attention_factor, f.Double("attention_factor"));
    } else if (m != 0 && s.mscale_all_dim != 0) {
      s.attention_factor = mscale(s.factor, m) / mscale(s.factor, s.mscale_all_dim);
    } else {
      s.attention_factor = mscale(s.factor, 1.0);
    }
  } else {
    return Invalid(path, Cat("rope_scaling type '", type,
                             "' is not supported (supported: linear, llama3, yarn)"));
  }
  if (!(s.factor > 0)) return Invalid(path, "rope_scaling 'factor' must be > 0");
  return s;
}

// Checks relations every architecture needs; fills rotary_dim from `partial_rotary_factor`.
absl::Status Validate(ModelConfig& c, const std::string& file, double partial_rotary_factor) {
  const std::pair<const char*, int64_t> positive[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [key, v] : positive) {
    if (v <= 0) return Invalid(file, Cat("'", key, "' must be > 0, got ", v));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return Invalid(file, Cat("num_attention_heads ", c.num_heads,
                             " is not a multiple of num_key_value_heads ", c.num_kv_heads));
  }
  if (c.head_dim % 2 != 0) return Invalid(file, Cat("head_dim ", c.head_dim, " is odd"));
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * partial_rotary_factor);
  if (c.rotary_dim <= 0 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0) {
    return Invalid(file, Cat("rotary dim ", c.rotary_dim, " (head_dim ", c.head_dim,
                             " * partial_rotary_factor ", partial_rotary_factor,
                             ") must be even and in (0, head_dim]"));
  }
  if (!(c.rms_norm_eps > 0)) return Invalid(file, "'rms_norm_eps' must be > 0");
  if (!(c.rope_theta > 0)) return Invalid(file, "'rope_theta' must be > 0");
  return absl::OkStatus();
}

absl::StatusOr<std::string> HfArchitecture(const json& j, const std::string& path) {
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string t = j["model_type"].get<std::string>();
    arch = t == "llama"         ? kLlama
           : t == "qwen2"       ? kQwen2
           : t == "qwen3"       ? kQwen3
           : t == "mixtral"     ? kMixtral
           : t == "qwen3_moe"   ? kQwen3Moe
           : t == "deepseek_v2" ? kDeepseekV2
           : t == "deepseek_v3" ? kDeepseekV3
                                : t;
  } else {
    return Invalid(path, "neither 'architectures' nor 'model_type' names the architecture");
  }
  if (arch != kLlama && arch != kQwen2 && arch != kQwen3 && arch != kMixtral && arch != kQwen3Moe &&
      arch != kDeepseekV2 && arch != kDeepseekV3) {
    return Invalid(path, Cat("architecture '", arch,
                             "' is not supported (supported: ", SupportedArchitectures(), ")"));
  }
  return arch;
}

absl::Status ParseTokenIds(const json& j, ModelConfig& c, const std::string& path) {
  if (j.contains("bos_token_id") && !j["bos_token_id"].is_null()) {
    if (!j["bos_token_id"].is_number_integer())
      return Invalid(path, "'bos_token_id' must be an integer");
    c.bos_token_id = j["bos_token_id"].get<int64_t>();
  }
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) {
      c.eos_token_ids.push_back(e.get<int64_t>());
    } else if (e.is_array()) {
      for (const json& id : e) {
        if (!id.is_number_integer()) return Invalid(path, "'eos_token_id' must hold integers");
        c.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      return Invalid(path, "'eos_token_id' must be an integer or a list of integers");
    }
  }
  return absl::OkStatus();
}

// <arch>.* keys of a GGUF file, with defaults.
class GgufKeys {
 public:
  GgufKeys(const GgufFile& f, const std::string& arch) : f_(f), prefix_(arch + ".") {}

  const GgufFile& file() const { return f_; }
  std::string Key(std::string_view name) const { return Cat(prefix_, name); }
  bool Has(std::string_view name) const { return f_.HasKey(Key(name)); }
  absl::StatusOr<int64_t> Int(std::string_view name) const { return f_.GetInt(Key(name)); }
  absl::StatusOr<int64_t> Int(std::string_view name, int64_t def) const {
    return Has(name) ? Int(name) : def;
  }
  absl::StatusOr<double> Float(std::string_view name) const { return f_.GetFloat(Key(name)); }
  absl::StatusOr<double> Float(std::string_view name, double def) const {
    return Has(name) ? Float(name) : def;
  }

 private:
  const GgufFile& f_;
  std::string prefix_;
};

// Fills the sizes of `c`; returns the rotary dim (rope.dimension_count, default head_dim).
absl::StatusOr<int64_t> GgufShape(const GgufKeys& k, ModelConfig& c) {
  KV_ASSIGN_OR_RETURN(c.hidden_size, k.Int("embedding_length"));
  KV_ASSIGN_OR_RETURN(c.num_layers, k.Int("block_count"));
  KV_ASSIGN_OR_RETURN(c.intermediate_size, k.Int("feed_forward_length"));
  KV_ASSIGN_OR_RETURN(c.num_heads, k.Int("attention.head_count"));
  if (c.num_heads <= 0) {
    return Invalid(k.file().path(), Cat(k.Key("attention.head_count"), " must be > 0"));
  }
  KV_ASSIGN_OR_RETURN(c.num_kv_heads, k.Int("attention.head_count_kv", c.num_heads));
  KV_ASSIGN_OR_RETURN(c.max_position_embeddings, k.Int("context_length"));
  KV_ASSIGN_OR_RETURN(c.rms_norm_eps, k.Float("attention.layer_norm_rms_epsilon"));
  KV_ASSIGN_OR_RETURN(c.rope_theta, k.Float("rope.freq_base", 10000.0));
  if (k.Has("attention.key_length")) {
    KV_ASSIGN_OR_RETURN(c.head_dim, k.Int("attention.key_length"));
    if (c.head_dim <= 0) {
      return Invalid(k.file().path(), Cat(k.Key("attention.key_length"), " must be > 0"));
    }
  } else if (c.hidden_size % c.num_heads != 0) {
    return Invalid(k.file().path(),
                   Cat(k.Key("embedding_length"), " ", c.hidden_size, " is not divisible by ",
                       k.Key("attention.head_count"), " ", c.num_heads, " (and there is no ",
                       k.Key("attention.key_length"), ")"));
  } else {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  return k.Int("rope.dimension_count", c.head_dim);
}

// <arch>.vocab_size, else the length of tokenizer.ggml.tokens, else token_embd's rows.
absl::StatusOr<int64_t> GgufVocabSize(const GgufKeys& k) {
  const GgufFile& f = k.file();
  if (k.Has("vocab_size")) return k.Int("vocab_size");
  if (f.HasKey("tokenizer.ggml.tokens")) {
    KV_ASSIGN_OR_RETURN(std::vector<std::string> tokens, f.GetStringArray("tokenizer.ggml.tokens"));
    return static_cast<int64_t>(tokens.size());
  }
  if (auto e = f.GetRaw("token_embd.weight"); e.ok() && e->shape.size() == 2) return e->shape[0];
  return Invalid(f.path(), Cat("no ", k.Key("vocab_size"),
                               ", tokenizer.ggml.tokens or token_embd.weight to take the "
                               "vocabulary size from"));
}

// rope.scaling.type (none, linear, yarn) with rope.scaling.factor, or the older rope.scale_linear.
absl::StatusOr<RopeScaling> GgufRopeScaling(const GgufKeys& k, int64_t max_pos) {
  RopeScaling s;
  std::string type = "none";
  if (k.Has("rope.scaling.type")) {
    KV_ASSIGN_OR_RETURN(type, k.file().GetString(k.Key("rope.scaling.type")));
  } else if (k.Has("rope.scale_linear")) {
    type = "linear";
  }
  if (type == "none") return s;
  if (type != "linear" && type != "yarn") {
    return Invalid(k.file().path(), Cat(k.Key("rope.scaling.type"), " '", type,
                                        "' is not supported (supported: none, linear, yarn)"));
  }
  s.type = type;
  const std::string factor =
      k.Has("rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
  KV_ASSIGN_OR_RETURN(s.factor, k.Float(factor));
  if (!(s.factor > 0)) return Invalid(k.file().path(), Cat(k.Key(factor), " must be > 0"));
  KV_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                      k.Int("rope.scaling.original_context_length", max_pos));
  if (type == "yarn") s.attention_factor = s.factor <= 1 ? 1.0 : 0.1 * std::log(s.factor) + 1.0;
  return s;
}

// bos from tokenizer.ggml.bos_token_id; eos from eos_token_id and eot_token_id (both end a turn).
absl::Status GgufTokenIds(const GgufFile& f, ModelConfig& c) {
  if (f.HasKey("tokenizer.ggml.bos_token_id")) {
    KV_ASSIGN_OR_RETURN(c.bos_token_id, f.GetInt("tokenizer.ggml.bos_token_id"));
  }
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    if (!f.HasKey(key)) continue;
    KV_ASSIGN_OR_RETURN(int64_t id, f.GetInt(key));
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(id);
    }
  }
  return absl::OkStatus();
}

// llama.cpp's rope_freqs.weight (Llama 3.x): F32 [rotary_dim / 2]; empty when absent.
absl::StatusOr<std::vector<float>> GgufRopeFreqs(const GgufFile& f, int64_t rotary_dim) {
  std::vector<float> out;
  if (!f.HasRaw("rope_freqs.weight")) return out;
  KV_ASSIGN_OR_RETURN(TensorView t, f.GetRaw("rope_freqs.weight"));
  if (t.dtype != DType::kF32 || t.numel() != rotary_dim / 2) {
    return Invalid(f.path(), Cat("rope_freqs.weight must be F32 with ", rotary_dim / 2,
                                 " elements, got ", DTypeName(t.dtype), " ", ShapeString(t.shape)));
  }
  out.resize(rotary_dim / 2);
  std::memcpy(out.data(), t.data, t.nbytes);
  return out;
}

// num_attention_heads, num_key_value_heads and head_dim, with transformers' defaults.
absl::Status HfHeads(const JsonFields& f, const std::string& path, ModelConfig& c) {
  const bool qwen3 = c.architecture == kQwen3;
  KV_ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads"));
  if (c.num_heads <= 0) return Invalid(path, "'num_attention_heads' must be > 0");
  KV_ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", c.num_heads));
  if (f.Present("head_dim")) {
    KV_ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim"));
  } else if (qwen3) {
    c.head_dim = 128;  // Qwen3Config's default
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return Invalid(path,
                     Cat("hidden_size ", c.hidden_size, " is not divisible by num_attention_heads ",
                         c.num_heads, " (and there is no head_dim)"));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  return absl::OkStatus();
}

// The experts of Mixtral and Qwen3-MoE (MoeConfig), with transformers' defaults.
absl::Status HfMoe(const json& j, const JsonFields& f, const std::string& path, ModelConfig& c) {
  const bool mixtral = c.architecture == kMixtral;
  MoeConfig& m = c.moe;
  // transformers 5 writes num_local_experts for both; released Qwen3-MoE files say num_experts.
  const char* experts_key = f.Present("num_local_experts") ? "num_local_experts" : "num_experts";
  KV_ASSIGN_OR_RETURN(int64_t experts, f.Int(experts_key, mixtral ? 8 : 128));
  KV_ASSIGN_OR_RETURN(int64_t top_k, f.Int("num_experts_per_tok", mixtral ? 2 : 8));
  if (experts <= 0 || experts > INT32_MAX) {
    return Invalid(path, Cat("'", experts_key, "' must be > 0, got ", experts));
  }
  if (top_k < 1 || top_k > experts) {
    return Invalid(path, Cat("'num_experts_per_tok' must be in [1, ", experts, "], got ", top_k));
  }
  m.routing.num_experts = static_cast<int32_t>(experts);
  m.routing.top_k = static_cast<int32_t>(top_k);
  m.routing.scoring = MoeScoring::kSoftmax;
  if (mixtral) {
    m.routing.renormalize = true;
    m.expert_intermediate_size = c.intermediate_size;
    if (f.Present("sliding_window")) {
      return Invalid(path, "'sliding_window' is set: sliding-window attention is not supported");
    }
    return absl::OkStatus();
  }
  KV_ASSIGN_OR_RETURN(m.routing.renormalize, f.Bool("norm_topk_prob", false));
  KV_ASSIGN_OR_RETURN(m.expert_intermediate_size, f.Int("moe_intermediate_size", 768));
  if (m.expert_intermediate_size <= 0) return Invalid(path, "'moe_intermediate_size' must be > 0");
  KV_ASSIGN_OR_RETURN(m.decoder_sparse_step, f.Int("decoder_sparse_step", 1));
  if (m.decoder_sparse_step < 1) return Invalid(path, "'decoder_sparse_step' must be >= 1");
  if (f.Present("mlp_only_layers")) {
    const json& layers = j["mlp_only_layers"];
    if (!layers.is_array()) return f.Bad("mlp_only_layers", "a list of layer indices", layers);
    for (const json& l : layers) {
      if (!l.is_number_integer() || l.get<int64_t>() < 0 || l.get<int64_t>() >= c.num_layers) {
        return f.Bad("mlp_only_layers", Cat("layer indices in [0, ", c.num_layers, ")"), layers);
      }
      m.mlp_only_layers.push_back(l.get<int64_t>());
    }
  }
  return absl::OkStatus();
}

// DeepSeek's MLA sizes (MlaConfig), with DeepseekV2Config's / DeepseekV3Config's defaults.
absl::Status HfMla(const json& j, const JsonFields& f, const std::string& path, ModelConfig& c) {
  MlaConfig& a = c.mla;
  // q_lora_rank null means a plain q_proj; absent means the default 1536.
  if (!(j.contains("q_lora_rank") && j["q_lora_rank"].is_null())) {
    KV_ASSIGN_OR_RETURN(a.q_lora_rank, f.Int("q_lora_rank", 1536));
    if (a.q_lora_rank <= 0) return Invalid(path, "'q_lora_rank' must be > 0 or null");
  }
  KV_ASSIGN_OR_RETURN(a.kv_lora_rank, f.Int("kv_lora_rank", 512));
  KV_ASSIGN_OR_RETURN(a.nope_head_dim, f.Int("qk_nope_head_dim", 128));
  KV_ASSIGN_OR_RETURN(a.rope_head_dim, f.Int("qk_rope_head_dim", 64));
  KV_ASSIGN_OR_RETURN(a.v_head_dim, f.Int("v_head_dim", 128));
  const std::pair<const char*, int64_t> positive[] = {{"kv_lora_rank", a.kv_lora_rank},
                                                      {"qk_nope_head_dim", a.nope_head_dim},
                                                      {"qk_rope_head_dim", a.rope_head_dim},
                                                      {"v_head_dim", a.v_head_dim}};
  for (const auto& [key, v] : positive) {
    if (v <= 0 || v > 65536)
      return Invalid(path, Cat("'", key, "' must be in [1, 65536], got ", v));
  }
  KV_ASSIGN_OR_RETURN(bool attention_bias, f.Bool("attention_bias", false));
  KV_ASSIGN_OR_RETURN(bool mlp_bias, f.Bool("mlp_bias", false));
  if (attention_bias || mlp_bias) {
    return Invalid(path, "DeepSeek 'attention_bias' / 'mlp_bias' true is not supported");
  }
  // MLA expands K and V to every head: key/value head counts play no part.
  c.num_kv_heads = c.num_heads;
  c.head_dim = a.rope_head_dim;  // as transformers sets it: the RoPE dims
  KV_ASSIGN_OR_RETURN(bool interleave, f.Bool("rope_interleave", true));
  c.rope_layout = interleave ? RopeLayout::kInterleaved : RopeLayout::kNeox;
  return absl::OkStatus();
}

// How DeepSeek picks experts (topk_method, scoring_func, groups) as a MoeRouting.
absl::Status HfDeepseekRouting(const JsonFields& f, const std::string& path, bool v3,
                               MoeRouting& r) {
  KV_ASSIGN_OR_RETURN(std::string scoring, f.String("scoring_func", v3 ? "sigmoid" : "softmax"));
  if (scoring != "softmax" && scoring != "sigmoid") {
    return Invalid(path, Cat("'scoring_func' must be softmax or sigmoid, got '", scoring, "'"));
  }
  r.scoring = scoring == "sigmoid" ? MoeScoring::kSigmoid : MoeScoring::kSoftmax;
  KV_ASSIGN_OR_RETURN(std::string method, f.String("topk_method", v3 ? "noaux_tc" : "greedy"));
  KV_ASSIGN_OR_RETURN(int64_t groups, f.Int("n_group", v3 ? 8 : 1));
  KV_ASSIGN_OR_RETURN(int64_t topk_groups, f.Int("topk_group", v3 ? 4 : 1));
  if (method == "greedy") {
    groups = topk_groups = 1;
  } else if (method == "group_limited_greedy" || method == "noaux_tc") {
    r.group_score = method == "noaux_tc" ? MoeGroupScore::kTop2Sum : MoeGroupScore::kMax;
  } else {
    return Invalid(
        path,
        Cat("'topk_method' must be greedy, group_limited_greedy or noaux_tc, got '", method, "'"));
  }
  if (groups < 1 || r.num_experts % groups != 0 || topk_groups < 1 || topk_groups > groups) {
    return Invalid(path, Cat("'n_group' ", groups, " must divide n_routed_experts ", r.num_experts,
                             " and 'topk_group' ", topk_groups, " be in [1, n_group]"));
  }
  if (groups > 1 && r.top_k > topk_groups * (r.num_experts / groups)) {
    return Invalid(path, Cat("'num_experts_per_tok' ", r.top_k, " exceeds the ",
                             topk_groups * (r.num_experts / groups),
                             " experts of the topk_group chosen groups"));
  }
  r.num_groups = static_cast<int32_t>(groups);
  r.topk_groups = static_cast<int32_t>(topk_groups);
  return absl::OkStatus();
}

// DeepSeekMoE (MoeConfig): routed experts, shared experts, which layers have them.
absl::Status HfDeepseekMoe(const JsonFields& f, const std::string& path, ModelConfig& c) {
  const bool v3 = c.architecture == kDeepseekV3;
  MoeConfig& m = c.moe;
  KV_ASSIGN_OR_RETURN(int64_t experts, f.Int("n_routed_experts", v3 ? 256 : 64));
  // DeepseekV2Config has no default for num_experts_per_tok.
  KV_ASSIGN_OR_RETURN(int64_t top_k,
                      v3 ? f.Int("num_experts_per_tok", 8) : f.Int("num_experts_per_tok"));
  if (experts <= 0 || experts > INT32_MAX) {
    return Invalid(path, Cat("'n_routed_experts' must be > 0, got ", experts));
  }
  if (top_k < 1 || top_k > experts) {
    return Invalid(path, Cat("'num_experts_per_tok' must be in [1, ", experts, "], got ", top_k));
  }
  m.routing.num_experts = static_cast<int32_t>(experts);
  m.routing.top_k = static_cast<int32_t>(top_k);
  KV_RETURN_IF_ERROR(HfDeepseekRouting(f, path, v3, m.routing));
  KV_ASSIGN_OR_RETURN(m.routing.renormalize, f.Bool("norm_topk_prob", v3));
  KV_ASSIGN_OR_RETURN(double scaling, f.Double("routed_scaling_factor", v3 ? 2.5 : 1.0));
  m.routing.scaling = static_cast<float>(scaling);
  KV_ASSIGN_OR_RETURN(m.expert_intermediate_size, f.Int("moe_intermediate_size", v3 ? 2048 : 1407));
  KV_ASSIGN_OR_RETURN(m.num_shared_experts, f.Int("n_shared_experts", v3 ? 1 : 2));
  KV_ASSIGN_OR_RETURN(m.first_k_dense_replace, f.Int("first_k_dense_replace", v3 ? 3 : 0));
  KV_ASSIGN_OR_RETURN(m.moe_layer_freq, f.Int("moe_layer_freq", 1));
  if (m.expert_intermediate_size <= 0 || m.num_shared_experts < 0 || m.first_k_dense_replace < 0 ||
      m.moe_layer_freq < 1) {
    return Invalid(path,
                   "'moe_intermediate_size' must be > 0, 'n_shared_experts' and "
                   "'first_k_dense_replace' >= 0, 'moe_layer_freq' >= 1");
  }
  return absl::OkStatus();
}

// DeepSeek-V2/V3: MLA and DeepSeekMoE, and the softmax scale with YaRN's correction.
absl::Status HfDeepseek(const json& j, const JsonFields& f, const std::string& path,
                        ModelConfig& c) {
  KV_RETURN_IF_ERROR(HfMla(j, f, path, c));
  KV_RETURN_IF_ERROR(HfDeepseekMoe(f, path, c));
  MlaConfig& a = c.mla;
  a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(a.nope_head_dim + a.rope_head_dim));
  const RopeScaling& rs = c.rope_scaling;
  if (!rs.type.empty() && rs.mscale_all_dim != 0 && rs.factor > 1) {
    const double m = 0.1 * rs.mscale_all_dim * std::log(rs.factor) + 1.0;
    a.softmax_scale *= m * m;
  }
  return absl::OkStatus();
}

}  // namespace

std::string SupportedArchitectures() {
  return Cat(kLlama, ", ", kQwen2, ", ", kQwen3, ", ", kMixtral, ", ", kQwen3Moe, ", ", kDeepseekV2,
             ", ", kDeepseekV3);
}

bool IsMoeLayer(const ModelConfig& c, int64_t layer) {
  const MoeConfig& m = c.moe;
  return m.routing.num_experts > 0 && (layer + 1) % m.decoder_sparse_step == 0 &&
         layer >= m.first_k_dense_replace && layer % m.moe_layer_freq == 0 &&
         std::find(m.mlp_only_layers.begin(), m.mlp_only_layers.end(), layer) ==
             m.mlp_only_layers.end();
}

absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(Cat("model config '", path, "' does not exist"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Invalid(path, "not a JSON object");
  ModelConfig c;
  KV_ASSIGN_OR_RETURN(c.architecture, HfArchitecture(j, path));
  const bool llama = c.architecture == kLlama;
  const bool mixtral = c.architecture == kMixtral;
  const bool moe = mixtral || c.architecture == kQwen3Moe;
  const bool deepseek = c.architecture == kDeepseekV2 || c.architecture == kDeepseekV3;
  const JsonFields f(j, path);
  KV_ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  KV_ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  KV_ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  KV_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers"));
  KV_RETURN_IF_ERROR(HfHeads(f, path, c));
  KV_ASSIGN_OR_RETURN(double partial_rotary_factor, f.Double("partial_rotary_factor", 1.0));
  KV_ASSIGN_OR_RETURN(c.max_position_embeddings,
                      f.Int("max_position_embeddings", llama || c.architecture == kDeepseekV2 ? 2048
                                                       : c.architecture == kDeepseekV3        ? 4096
                                                       : mixtral ? 131072
                                                                 : 32768));
  KV_ASSIGN_OR_RETURN(c.rms_norm_eps, f.Double("rms_norm_eps", mixtral ? 1e-5 : 1e-6));
  const json* rope_params = j.contains("rope_parameters") && j["rope_parameters"].is_object()
                                ? &j["rope_parameters"]
                                : nullptr;
  double theta_default = mixtral ? 1e6 : 10000;
  if (rope_params != nullptr && rope_params->contains("rope_theta") &&
      (*rope_params)["rope_theta"].is_number()) {
    theta_default = (*rope_params)["rope_theta"].get<double>();
  }
  KV_ASSIGN_OR_RETURN(c.rope_theta, f.Double("rope_theta", theta_default));
  const json& rs = f.Present("rope_scaling") ? j["rope_scaling"]
                   : rope_params != nullptr  ? *rope_params
                                             : json();
  KV_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(rs, path, c.max_position_embeddings));
  c.rope_layout = RopeLayout::kNeox;
  KV_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  if (c.architecture == kQwen2) {
    c.attention_bias = true;  // Qwen2Attention always has q/k/v biases
  } else {
    KV_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
  }
  c.qk_norm = c.architecture == kQwen3 || c.architecture == kQwen3Moe;
  KV_RETURN_IF_ERROR(ParseTokenIds(j, c, path));
  KV_ASSIGN_OR_RETURN(std::string dtype, f.String("dtype", ""));
  KV_ASSIGN_OR_RETURN(c.torch_dtype, f.String("torch_dtype", dtype));
  if (deepseek) KV_RETURN_IF_ERROR(HfDeepseek(j, f, path, c));
  KV_RETURN_IF_ERROR(Validate(c, path, partial_rotary_factor));
  if (moe) KV_RETURN_IF_ERROR(HfMoe(j, f, path, c));
  return c;
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& f) {
  const std::string arch = f.architecture();
  ModelConfig c;
  if (arch == "llama") {
    c.architecture = kLlama;
  } else if (arch == "qwen2") {
    c.architecture = kQwen2;
  } else if (arch == "qwen3") {
    c.architecture = kQwen3;
  } else {
    return Invalid(f.path(), Cat("general.architecture '", arch,
                                 "' is not supported (supported: llama, qwen2, qwen3)"));
  }
  const GgufKeys keys(f, arch);
  KV_ASSIGN_OR_RETURN(int64_t rotary_dim, GgufShape(keys, c));
  KV_ASSIGN_OR_RETURN(c.vocab_size, GgufVocabSize(keys));
  KV_ASSIGN_OR_RETURN(c.rope_scaling, GgufRopeScaling(keys, c.max_position_embeddings));
  c.rope_layout = arch == "llama" ? RopeLayout::kInterleaved : RopeLayout::kNeox;
  c.tie_word_embeddings = !f.HasRaw("output.weight");
  c.attention_bias = f.HasRaw("blk.0.attn_q.bias");
  c.qk_norm = f.HasRaw("blk.0.attn_q_norm.weight");
  KV_RETURN_IF_ERROR(GgufTokenIds(f, c));
  KV_RETURN_IF_ERROR(Validate(c, f.path(), static_cast<double>(rotary_dim) / c.head_dim));
  c.rotary_dim = rotary_dim;
  KV_ASSIGN_OR_RETURN(c.rope_freq_factors, GgufRopeFreqs(f, c.rotary_dim));
  // llama.cpp's angle recurrence reproduces its plain RoPE exactly; scaled RoPE keeps the product.
  c.rope_angles = c.rope_scaling.type.empty() && c.rope_freq_factors.empty()
                      ? RopeAngles::kGgmlRecurrence
                      : RopeAngles::kProduct;
  return c;
}

std::vector<float> RopeInvFreq(const ModelConfig& c) {
  const int64_t dim = c.rotary_dim;
  const int64_t n = dim / 2;
  std::vector<double> inv(n);
  for (int64_t i = 0; i < n; ++i) {
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(dim));
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    // transformers _compute_llama3_parameters.
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / s.low_freq_factor;
    const double high_freq_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_freq_wavelen) {  // medium: interpolate
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  } else if (s.type == "yarn") {
    // transformers _compute_yarn_parameters (truncate = true).
    const double orig = static_cast<double>(s.original_max_position_embeddings);
    auto correction_dim = [&](double rotations) {
      return dim * std::log(orig / (rotations * 2 * std::numbers::pi)) /
             (2 * std::log(c.rope_theta));
    };
    const double low = std::max(std::floor(correction_dim(s.beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(s.beta_slow)), static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < n; ++i) {
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const double extrapolation = 1 - ramp;
      inv[i] = inv[i] / s.factor * (1 - extrapolation) + inv[i] * extrapolation;
    }
  }
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    double f = inv[i];
    if (static_cast<size_t>(i) < c.rope_freq_factors.size()) f /= c.rope_freq_factors[i];
    out[i] = static_cast<float>(f);
  }
  return out;
}

}  // namespace kvasir
