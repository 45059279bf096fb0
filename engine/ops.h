// The model <-> device seam: the ops model code is written against. Each backend (CPU now, CUDA
// later) implements them; model code never names a device.
//
// Activations are row-major 2-D tensors of the backend's activation type in its memory, allocated
// from a per-step arena (Alloc), valid until the next BeginStep. Weights are uploaded once
// (Upload).
#ifndef KVASIR_ENGINE_OPS_H_
#define KVASIR_ENGINE_OPS_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/weights/weight_source.h"
#include "kernels/dtype.h"
#include "kernels/moe_routing.h"
#include "scheduler/batch.h"

namespace kvasir {

// A [rows, cols] activation, contiguous, owned by the backend's step arena. Its element type is
// the backend's activation type (float32 on the CPU, bf16 on CUDA) or float32 where a backend
// is asked for it (AllocF32: logits, RoPE tables). Model code never reads the elements, so it is
// the same for every backend.
struct Tensor {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  DType dtype = DType::kF32;  // set by the backend's Alloc / AllocF32
  float* f32() const { return static_cast<float*>(data); }
  int64_t numel() const { return rows * cols; }
  // The same memory seen as [numel / cols, cols]; numel must divide.
  Tensor View(int64_t new_cols) const { return {data, numel() / new_cols, new_cols, dtype}; }
};

// A weight in backend memory: a matrix [rows, cols] (a linear layer is [out, in]) or a vector
// (rows == 1). Quantized rows use the GGML block layouts of kernels/dtype.h.
struct Weight {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  bool empty() const { return data == nullptr; }
};

// Rows [begin, begin + count) of w: one part of a stacked tensor (e.g. expert e of a
// [num_experts * rows, cols] expert weight). Pointer arithmetic only, valid for any backend.
inline Weight SliceRows(const Weight& w, int64_t begin, int64_t count) {
  Weight s = w;
  s.data = static_cast<const uint8_t*>(w.data) + begin * RowBytes(w.dtype, w.cols);
  s.rows = count;
  return s;
}

// The routed experts of one mixture-of-experts layer, in backend memory. Shared experts are not
// here: they are a dense MLP the model adds to the op's output.
struct MoeWeights {
  MoeRouting routing;     // kernels/moe_routing.h
  Weight router;          // [num_experts, hidden]
  Weight selection_bias;  // 1 x num_experts float32 (e_score_correction_bias), or empty
  int64_t inter = 0;      // each expert's intermediate size
  // Per expert: gate and up [inter, hidden], down [hidden, inter]; each num_experts long. They
  // may be slices of stacked tensors (SliceRows).
  std::vector<Weight> gate, up, down;
};

// What one token slot of one layer of the paged KV cache holds.
enum class KvLayout {
  kKeyValue,   // K and V of every KV head (multi-head / grouped-query attention)
  kMlaLatent,  // MLA (DeepSeek-V2/V3): the compressed latent and the RoPE key, shared by all heads
};

// Geometry of the paged KV cache: one pool, every layer, blocks of block_size token slots. The
// model fills the layout fields (Model::KvSpec); the runner fills num_blocks and block_size.
struct KvCacheSpec {
  int32_t num_layers = 0;
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  KvLayout layout = KvLayout::kKeyValue;
  // kKeyValue: num_kv_heads heads of head_dim for K and of v_head_dim (0: head_dim) for V.
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t v_head_dim = 0;
  // kMlaLatent: kv_lora_rank latent values (after kv_a_layernorm) then rope_dim RoPE-key values.
  int32_t kv_lora_rank = 0;
  int32_t rope_dim = 0;
  // Element type of the cache. The CPU backend keeps it in float32 (the only type it accepts).
  DType dtype = DType::kF32;

  // Elements one token occupies in one layer.
  int64_t elements_per_token_layer() const {
    if (layout == KvLayout::kMlaLatent) return int64_t{kv_lora_rank} + rope_dim;
    return int64_t{num_kv_heads} * (head_dim + (v_head_dim > 0 ? v_head_dim : head_dim));
  }
  // Bytes one token occupies across all layers: what the pool is sized by.
  int64_t bytes_per_token() const {
    return num_layers * RowBytes(dtype, elements_per_token_layer());
  }
};

// Multi-head latent attention (DeepSeek-V2/V3) geometry of one layer.
struct MlaDims {
  int32_t num_heads = 0;
  int32_t nope_dim = 0;      // qk_nope_head_dim: the part of q/k without RoPE
  int32_t rope_dim = 0;      // qk_rope_head_dim: the RoPE part, one key shared by all heads
  int32_t v_dim = 0;         // v_head_dim
  int32_t kv_lora_rank = 0;  // the latent's width
};

// What Ops::SampleRows needs of each logits row (every row of the step samples): the sampling
// parameters of engine/request.h, and the logit processors' inputs as CSR lists (indptr
// [rows + 1], row r's entries at [indptr[r], indptr[r + 1])), applied as
// Sampler::ApplyProcessors does: bias, repetition penalty (prompt and output ids), presence and
// frequency penalties (output ids and counts), banned ids.
struct SampleRowsRequest {
  std::vector<float> temperature, top_p, min_p;  // [rows]
  std::vector<int32_t> top_k;                    // [rows]
  std::vector<uint64_t> seed, step;              // [rows]: the draw of Sampler::Uniform(seed, step)
  std::vector<float> repetition_penalty, presence_penalty, frequency_penalty;  // [rows]
  std::vector<int32_t> bias_indptr{0}, bias_ids;  // logit_bias, in the request's order
  std::vector<float> bias_values;
  std::vector<int32_t> prompt_indptr{0}, prompt_ids;                 // distinct prompt ids
  std::vector<int32_t> output_indptr{0}, output_ids, output_counts;  // distinct output ids
  std::vector<int32_t> banned_indptr{0}, banned_ids;  // set to -inf (stop ids before min_tokens)
  // -1: no log-probabilities; n in [0, 20]: each row's chosen token's and its n most likely.
  int32_t top_logprobs = -1;

  int64_t rows() const { return static_cast<int64_t>(temperature.size()); }
  // Total list entries (what a device copy of the lists holds).
  int64_t list_entries() const {
    return static_cast<int64_t>(bias_ids.size() + prompt_ids.size() + output_ids.size() +
                                banned_ids.size());
  }
  void Clear() {
    for (auto* v : {&temperature, &top_p, &min_p, &repetition_penalty, &presence_penalty,
                    &frequency_penalty, &bias_values}) {
      v->clear();
    }
    for (auto* v : {&top_k, &bias_ids, &prompt_ids, &output_ids, &output_counts, &banned_ids}) {
      v->clear();
    }
    for (auto* v : {&bias_indptr, &prompt_indptr, &output_indptr, &banned_indptr}) *v = {0};
    seed.clear();
    step.clear();
    top_logprobs = -1;
  }
};

// Ops::SampleRows' result, host memory valid until the next BeginStep.
struct SampledRows {
  std::span<const int32_t> ids;           // [rows]
  std::span<const float> chosen_logprob;  // [rows] (top_logprobs >= 0)
  std::span<const int32_t> top_ids;       // [rows, top_logprobs], best first; -1 past the vocab
  std::span<const float> top_logprobs;    // [rows, top_logprobs]
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string Describe() const = 0;

  // Weights: copies or maps a loaded tensor into backend memory, as a [rows, cols] weight. A
  // device backend also accepts a view without data: a dummy tensor it makes itself
  // (engine/weights/dummy_weights.h, DummyWeightSource::kOnDevice).
  virtual absl::StatusOr<Weight> Upload(const TensorView& t) = 0;
  virtual absl::Status AllocateKvCache(const KvCacheSpec& spec) = 0;

  // The KV cache element type this backend keeps (KvCacheSpec::dtype, which sizes the pool).
  virtual DType KvCacheDType() const { return DType::kF32; }

  // Device memory the KV pool may take once weights and activations are placed: utilization
  // times the device's memory, less what is in use. nullopt for a backend without a device
  // memory limit (the CPU), whose pool the runner sizes from the context limits.
  virtual std::optional<int64_t> KvCacheBudget(double /*utilization*/) { return std::nullopt; }

  // Reserves the step arena for the largest steps the scheduler can make: forward(batch) runs
  // the model on each worst-case batch with the backend counting, not computing (no kernels, no
  // cache writes). A no-op for a backend whose arena grows on demand (the CPU).
  // kv is the cache the model will use (all but num_blocks, which depends on what is left).
  virtual absl::Status ReserveActivations(const KvCacheSpec& /*kv*/,
                                          const std::vector<const StepBatch*>& /*worst_cases*/,
                                          const std::function<Tensor(const StepBatch&)>& /*fwd*/) {
    return absl::OkStatus();
  }

  // One step: BeginStep(batch), then forward(batch) (the model), returning its logits. A backend
  // may instead replay a recording of forward on a batch of the same shape (CUDA graphs of
  // decode steps), which is why the model runs through this.
  virtual Tensor RunStep(const StepBatch& batch,
                         const std::function<Tensor(const StepBatch&)>& forward) {
    BeginStep(batch);
    return forward(batch);
  }

  // Per step: resets the arena and makes the batch's index arrays visible to the device.
  virtual void BeginStep(const StepBatch& batch) = 0;
  // An activation of the backend's type.
  virtual Tensor Alloc(int64_t rows, int64_t cols) = 0;
  // A float32 tensor whatever the activation type: logits (MatMul writes float32 into it).
  virtual Tensor AllocF32(int64_t rows, int64_t cols) { return Alloc(rows, cols); }

  // out[t] = table[batch.token_ids[t]]
  virtual void Embedding(const Weight& table, Tensor out) = 0;
  // out = x / rms(x) * w, row by row (w has x.cols entries). out may be x.
  virtual void RmsNorm(Tensor x, const Weight& w, float eps, Tensor out) = 0;
  // out = x * W^T (+ bias). W is [out.cols, x.cols].
  virtual void MatMul(Tensor x, const Weight& w, const Weight* bias, Tensor out) = 0;
  // a += b
  virtual void Add(Tensor a, Tensor b) = 0;
  // out = silu(gate) * up, elementwise. out may be gate.
  virtual void SiluMul(Tensor gate, Tensor up, Tensor out) = 0;
  // The RoPE table of this step's positions: [tokens, rot_dim], each row the cos then the sin of
  // the rot_dim / 2 angles, both multiplied by attention_factor (YaRN's; 1 otherwise). inv_freq
  // is a 1 x rot_dim/2 weight (UploadFloats). Built once per step and shared by every layer.
  virtual Tensor RopeTable(const Weight& inv_freq, int32_t rot_dim, RopeAngles angles,
                           float attention_factor) = 0;
  // Rotates dims [rot_offset, rot_offset + rot_dim) of each head of x ([tokens, heads *
  // head_dim]) by the angles of table (from RopeTable; rot_dim = table.cols).
  virtual void Rope(Tensor x, int32_t head_dim, int32_t rot_offset, Tensor table,
                    RopeLayout layout) = 0;
  // Writes k, v ([tokens, kv_heads * head_dim]) into the layer's cache at the batch slots, then
  // out = causal paged attention of q ([tokens, heads * head_dim]) over each sequence's context.
  virtual void Attention(int32_t layer, Tensor q, Tensor k, Tensor v, float scale, Tensor out) = 0;
  // Multi-head latent attention (needs a KvLayout::kMlaLatent cache). Writes latent
  // ([tokens, kv_lora_rank], after kv_a_layernorm) and k_rope ([tokens, rope_dim], rotated) into
  // the layer's cache at the batch slots, then out ([tokens, heads * v_dim]) = causal paged
  // attention of q ([tokens, heads * (nope_dim + rope_dim)], each head's RoPE part rotated) over
  // each sequence's cached context, where head h's key is [W_UK_h c ; k_rope] and its value
  // W_UV_h c for a cached latent c, and kv_b ([heads * (nope_dim + v_dim), kv_lora_rank]:
  // per head the nope_dim rows of W_UK_h, then the v_dim rows of W_UV_h) is kv_b_proj.
  // How is the backend's choice; the CPU backend takes, per sequence, the absorbed form for a
  // single query (decode: W_UK folded into the query, attention over the latent itself, W_UV
  // applied to the result) and the expanded form for several (prefill: the context's K and V
  // are expanded per head). Both compute the same function (tested against each other).
  virtual void MlaAttention(int32_t layer, Tensor q, Tensor latent, Tensor k_rope,
                            const Weight& kv_b, const MlaDims& dims, float scale, Tensor out) = 0;
  // Mixture of experts, one op: router logits = x * router^T; route each token (MoeRouting:
  // top_k experts and their weights); permute the tokens grouped by expert; run every expert's
  // SwiGLU MLP down_e(silu(gate_e x) * up_e x) over its contiguous rows (a grouped GEMM); then
  // un-permute: out[t] = sum_j weight[t][j] * y_j[t], summed in routing order (largest choice
  // first). x and out are [tokens, hidden] and must not overlap. Expert parallelism adds its
  // all-to-all dispatch after the permute and its return before the combine, inside the op.
  virtual void Moe(Tensor x, const MoeWeights& w, Tensor out) = 0;
  // out[i] = x[batch.logits_indices[i]]
  virtual void GatherLogitsRows(Tensor x, Tensor out) = 0;
  // The float32 tensor x readable on the host until the next BeginStep (logits for the
  // sampler): the CPU backend's own memory, a device backend's pinned copy. Ends the step's
  // device work (a device backend synchronises), whatever x's size.
  virtual std::span<const float> ToHost(Tensor x) = 0;
  // Samples every row of logits (float32 [rows, vocab]; rows == r.temperature.size()) by
  // engine/sampler.h's rule, with log-probabilities of the raw logits when asked; only ids and
  // log-probabilities reach the host. Ends the step like ToHost. See CanSampleRows.
  virtual SampledRows SampleRows(Tensor logits, const SampleRowsRequest& r) = 0;
  // Whether SampleRows takes rows of this many logits.
  virtual bool CanSampleRows(int64_t /*vocab*/) const { return true; }
  // Copies a float32 tensor to host memory.
  void CopyToHost(Tensor x, float* host) {
    const std::span<const float> v = ToHost(x);
    std::copy(v.begin(), v.end(), host);
  }
  // Uploads a small host float vector (e.g. RoPE inverse frequencies) as a 1 x n weight.
  virtual absl::StatusOr<Weight> UploadFloats(const std::vector<float>& values) = 0;
};

// The CPU backend (kernels/cpu), num_threads compute threads (0 = all cores).
std::unique_ptr<Ops> MakeCpuOps(int num_threads);

// The CUDA backend (engine/cuda_ops.cc, kernels/cuda): bf16 weights and activations.
struct CudaOpsOptions {
  int device = 0;
  // Bounds of every step (the scheduler's limits): they size the metadata buffers and the
  // arena, and bound the contexts a captured decode graph serves.
  int32_t max_num_seqs = 0;
  int32_t max_batched_tokens = 0;
  int32_t max_model_len = 0;
  // Record decode steps (every sequence one token) as CUDA graphs, one per padded batch size
  // (1, 2, 4, 8, then multiples of 8 up to max_num_seqs), and replay them.
  bool cuda_graphs = true;
};
// FAILED_PRECONDITION when the build has no CUDA backend or no device is usable.
absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options);

}  // namespace kvasir

#endif  // KVASIR_ENGINE_OPS_H_
