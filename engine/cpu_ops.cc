// The CPU backend of the ops interface, over kernels/cpu. Weights are used in place (the mmap
// of the model file); activations live in a per-step arena whose buffers are reused every step.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/ops.h"
#include "engine/sampler.h"
#include "engine/util/status_macros.h"
#include "kernels/check.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/mla.h"
#include "kernels/cpu/moe.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"

namespace kvasir {
namespace {

// Growable buffers handed out in call order. A model makes the same Alloc calls every step, so
// after the first step of each shape no allocation happens.
class StepArena {
 public:
  void Reset() { next_ = 0; }
  float* Get(int64_t numel) {
    if (next_ == buffers_.size()) buffers_.emplace_back();
    Buffer& b = buffers_[next_++];
    if (b.capacity < numel) {
      b.data.reset(new (std::align_val_t{64}) float[numel]);
      b.capacity = numel;
    }
    return b.data.get();
  }

 private:
  struct AlignedDelete {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  struct Buffer {
    std::unique_ptr<float[], AlignedDelete> data;
    int64_t capacity = 0;
  };
  std::vector<Buffer> buffers_;
  size_t next_ = 0;
};

// The CPU backend's KV cache is float32; an MLA cache needs its latent, a K/V cache equal K and V
// head dims (the paged attention kernel reads both with one head_dim).
absl::Status CheckKvSpec(const KvCacheSpec& spec) {
  if (spec.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CPU KV cache is float32, not ", std::string(DTypeName(spec.dtype))));
  }
  if (spec.layout == KvLayout::kMlaLatent && spec.kv_lora_rank <= 0) {
    return absl::InvalidArgumentError("an MLA KV cache needs kv_lora_rank > 0");
  }
  if (spec.layout == KvLayout::kKeyValue && spec.v_head_dim != 0 &&
      spec.v_head_dim != spec.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("the CPU K/V cache needs V heads as wide as K (",
                                                   spec.head_dim, "), got ", spec.v_head_dim));
  }
  return absl::OkStatus();
}

class CpuOps : public Ops {
 public:
  explicit CpuOps(int num_threads) : pool_(num_threads) {}

  std::string Describe() const override {
    return absl::StrCat("cpu (", cpu::DescribeKernels(), ", ", pool_.num_threads(), " threads)");
  }

  absl::StatusOr<Weight> Upload(const TensorView& t) override {
    if (t.data == nullptr && t.numel() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' has no data (dummy weights made on a device need a device)"));
    }
    Weight w;
    w.data = t.data;
    w.dtype = t.dtype;
    w.cols = t.shape.empty() ? 1 : t.shape.back();
    w.rows = w.cols == 0 ? 0 : t.numel() / w.cols;
    // Vectors (norm weights, biases) are read as float32 by the kernels: a bf16 or f16 checkpoint's
    // are converted once (they are small); matrices keep their type (MatMul dispatches on it).
    if (t.shape.size() <= 1 && (t.dtype == DType::kBF16 || t.dtype == DType::kF16)) {
      std::vector<float> values(t.numel());
      const uint16_t* h = static_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < t.numel(); ++i) {
        values[i] = t.dtype == DType::kBF16 ? cpu::Bf16ToFp32(h[i]) : cpu::Fp16ToFp32(h[i]);
      }
      return UploadFloats(values);
    }
    return w;
  }

  absl::StatusOr<Weight> UploadFloats(const std::vector<float>& values) override {
    host_floats_.push_back(std::make_unique<std::vector<float>>(values));
    Weight w;
    w.data = host_floats_.back()->data();
    w.rows = 1;
    w.cols = static_cast<int64_t>(values.size());
    return w;
  }

  absl::Status AllocateKvCache(const KvCacheSpec& spec) override {
    KV_RETURN_IF_ERROR(CheckKvSpec(spec));
    kv_ = spec;
    // K and V: two arrays per layer; the MLA latent (with its RoPE key): one.
    const bool mla = spec.layout == KvLayout::kMlaLatent;
    const size_t per_array = static_cast<size_t>(spec.num_blocks) * spec.block_size *
                             spec.elements_per_token_layer() / (mla ? 1 : 2);
    // Refuse what the machine cannot hold, rather than being killed by the OOM killer later.
    const double total = static_cast<double>(spec.bytes_per_token()) * spec.num_blocks *
                         static_cast<double>(spec.block_size);
    const double physical =
        static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
    if (physical > 0 && total > 0.9 * physical) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "KV cache of %.0f bytes does not fit in this machine's %.0f bytes of memory; lower "
          "--kv-cache-bytes",
          total, physical));
    }
    try {
      // Left uninitialised (pages are committed on first write, so start-up does not touch
      // the whole pool): a slot is always written before attention reads it.
      k_cache_.clear();
      v_cache_.clear();
      for (int32_t l = 0; l < spec.num_layers; ++l) {
        k_cache_.push_back(std::make_unique_for_overwrite<float[]>(per_array));
        if (!mla) v_cache_.push_back(std::make_unique_for_overwrite<float[]>(per_array));
      }
    } catch (const std::bad_alloc&) {
      k_cache_.clear();
      v_cache_.clear();
      return absl::ResourceExhaustedError(
          absl::StrFormat("could not allocate a KV cache of %.0f bytes", total));
    }
    return absl::OkStatus();
  }

  void BeginStep(const StepBatch& batch) override {
    batch_ = &batch;
    arena_.Reset();
  }

  Tensor Alloc(int64_t rows, int64_t cols) override {
    return {arena_.Get(rows * cols), rows, cols};
  }

  void Embedding(const Weight& table, Tensor out) override {
    cpu::Embedding(table.data, table.dtype, table.cols, batch_->token_ids.data(), out.rows,
                   out.f32());
  }

  void RmsNorm(Tensor x, const Weight& w, float eps, Tensor out) override {
    cpu::RmsNorm(x.f32(), static_cast<const float*>(w.data), x.rows, x.cols, eps, out.f32(),
                 &pool_);
  }

  void MatMul(Tensor x, const Weight& w, const Weight* bias, Tensor out) override {
    KV_DCHECK(w.cols == x.cols && w.rows == out.cols);
    cpu::MatMul(x.f32(), x.rows, x.cols, w.data, w.dtype, w.rows,
                bias ? static_cast<const float*>(bias->data) : nullptr, out.f32(), &pool_);
  }

  void Add(Tensor a, Tensor b) override { cpu::AddInPlace(a.f32(), b.f32(), a.numel()); }

  void SiluMul(Tensor gate, Tensor up, Tensor out) override {
    cpu::SiluMul(gate.f32(), up.f32(), gate.numel(), out.f32());
  }

  Tensor RopeTable(const Weight& inv_freq, int32_t rot_dim, RopeAngles angles,
                   float attention_factor) override {
    Tensor table = Alloc(batch_->num_tokens(), rot_dim);
    cpu::RopeCosSin(batch_->positions.data(), table.rows, static_cast<const float*>(inv_freq.data),
                    rot_dim,
                    angles == RopeAngles::kGgmlRecurrence ? cpu::RopeAngles::kGgmlRecurrence
                                                          : cpu::RopeAngles::kProduct,
                    table.f32());
    if (attention_factor != 1.0f) {
      for (int64_t i = 0; i < table.numel(); ++i) table.f32()[i] *= attention_factor;
    }
    return table;
  }

  void Rope(Tensor x, int32_t head_dim, int32_t rot_offset, Tensor table,
            RopeLayout layout) override {
    KV_DCHECK(rot_offset >= 0 && rot_offset + table.cols <= head_dim);
    // Head h of token t starts at x + (t * heads + h) * head_dim; shifting the base by rot_offset
    // rotates [rot_offset, rot_offset + rot_dim) of every head (the last stays inside x).
    cpu::RopeApply(
        x.f32() + rot_offset, x.rows, static_cast<int>(x.cols / head_dim), head_dim,
        static_cast<int>(table.cols), table.f32(),
        layout == RopeLayout::kInterleaved ? cpu::RopeStyle::kInterleaved : cpu::RopeStyle::kNeox);
  }

  void Attention(int32_t layer, Tensor q, Tensor k, Tensor v, float scale, Tensor out) override {
    float* kc = k_cache_[layer].get();
    float* vc = v_cache_[layer].get();
    cpu::WriteKvCache(k.f32(), v.f32(), k.rows, kv_.num_kv_heads, kv_.head_dim,
                      batch_->slot_mapping.data(), kc, vc);
    cpu::PagedAttentionArgs a;
    a.q = q.f32();
    a.k_cache = kc;
    a.v_cache = vc;
    a.num_seqs = batch_->num_seqs();
    a.num_heads = static_cast<int>(q.cols / kv_.head_dim);
    a.num_kv_heads = kv_.num_kv_heads;
    a.head_dim = kv_.head_dim;
    a.block_size = kv_.block_size;
    a.scale = scale;
    a.query_start = batch_->query_start.data();
    a.seq_lens = batch_->seq_lens.data();
    a.block_table_indptr = batch_->block_table_indptr.data();
    a.block_table = batch_->block_table.data();
    a.out = out.f32();
    cpu::PagedAttention(a, &pool_);
  }

  void MlaAttention(int32_t layer, Tensor q, Tensor latent, Tensor k_rope, const Weight& kv_b,
                    const MlaDims& dims, float scale, Tensor out) override {
    KV_DCHECK(kv_.layout == KvLayout::kMlaLatent && dims.kv_lora_rank == kv_.kv_lora_rank &&
              dims.rope_dim == kv_.rope_dim);
    float* cache = k_cache_[layer].get();
    cpu::WriteMlaCache(latent.f32(), k_rope.f32(), latent.rows, dims.kv_lora_rank, dims.rope_dim,
                       batch_->slot_mapping.data(), cache);
    cpu::MlaAttentionArgs a;
    a.q = q.f32();
    a.cache = cache;
    a.kv_b = kv_b.data;
    a.kv_b_dtype = kv_b.dtype;
    a.num_heads = dims.num_heads;
    a.nope_dim = dims.nope_dim;
    a.rope_dim = dims.rope_dim;
    a.v_dim = dims.v_dim;
    a.kv_lora_rank = dims.kv_lora_rank;
    a.block_size = kv_.block_size;
    a.scale = scale;
    a.num_seqs = batch_->num_seqs();
    a.query_start = batch_->query_start.data();
    a.seq_lens = batch_->seq_lens.data();
    a.block_table_indptr = batch_->block_table_indptr.data();
    a.block_table = batch_->block_table.data();
    a.out = out.f32();
    cpu::MlaAttention(a, cpu::MlaForm::kByQueryCount, &mla_scratch_, &pool_);
  }

  void Moe(Tensor x, const MoeWeights& w, Tensor out) override {
    const MoeRouting& r = w.routing;
    const int64_t n = x.rows, h = x.cols, assignments = x.rows * r.top_k;
    KV_DCHECK(w.router.rows == r.num_experts && w.router.cols == h && out.cols == h);
    // Scratch outside the step arena: the arena gives every call new buffers, and this op runs
    // once per layer.
    moe_logits_.resize(n * r.num_experts);
    MatMul(x, w.router, nullptr, {moe_logits_.data(), n, r.num_experts});
    moe_ids_.resize(assignments);
    moe_weights_.resize(assignments);
    const float* bias =
        w.selection_bias.empty() ? nullptr : static_cast<const float*>(w.selection_bias.data);
    cpu::MoeRoute(moe_logits_.data(), n, r, bias, moe_ids_.data(), moe_weights_.data(), &pool_);
    cpu::MoePermute(moe_ids_.data(), n, r.top_k, r.num_experts, &moe_perm_);
    moe_xs_.resize(assignments * h);
    cpu::MoeGatherRows(x.f32(), h, moe_perm_.source_token.data(), assignments, moe_xs_.data(),
                       &pool_);
    moe_experts_.resize(r.num_experts);
    for (int32_t e = 0; e < r.num_experts; ++e) {
      moe_experts_[e] = {w.gate[e].data,  w.up[e].data,  w.down[e].data,
                         w.gate[e].dtype, w.up[e].dtype, w.down[e].dtype};
    }
    cpu::MoeExpertsArgs a;
    a.xs = moe_xs_.data();
    a.expert_offsets = moe_perm_.expert_offsets.data();
    a.num_experts = r.num_experts;
    a.hidden = h;
    a.inter = w.inter;
    a.experts = moe_experts_.data();
    moe_gate_.resize(assignments * w.inter);
    moe_up_.resize(assignments * w.inter);
    moe_ys_.resize(assignments * h);
    a.scratch_gate = moe_gate_.data();
    a.scratch_up = moe_up_.data();
    a.ys = moe_ys_.data();
    cpu::MoeExpertsSwiGlu(a, &pool_);
    cpu::MoeCombine(a.ys, h, moe_perm_.row_of.data(), moe_weights_.data(), n, r.top_k, out.f32(),
                    &pool_);
  }

  void GatherLogitsRows(Tensor x, Tensor out) override {
    for (int64_t i = 0; i < out.rows; ++i) {
      std::memcpy(out.f32() + i * x.cols, x.f32() + batch_->logits_indices[i] * x.cols,
                  x.cols * sizeof(float));
    }
  }

  std::span<const float> ToHost(Tensor x) override {
    return {x.f32(), static_cast<size_t>(x.numel())};
  }

  // Sampler::SampleRow, row by row (the engine's host path runs it too), with the processors'
  // history rebuilt from the lists for the rows that have processors.
  SampledRows SampleRows(Tensor logits, const SampleRowsRequest& r) override {
    const int64_t rows = logits.rows, vocab = logits.cols;
    KV_CHECK_EQ(r.rows(), rows);
    const int64_t n = std::max(r.top_logprobs, 0);
    sampled_ids_.assign(rows, -1);
    sampled_chosen_.assign(r.top_logprobs >= 0 ? rows : 0, 0.0f);
    sampled_top_ids_.assign(rows * n, -1);
    sampled_top_logprobs_.assign(rows * n, -INFINITY);
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = logits.f32() + i * vocab;
      SamplingParams p;
      p.temperature = r.temperature[i];
      p.top_k = r.top_k[i];
      p.top_p = r.top_p[i];
      p.min_p = r.min_p[i];
      p.repetition_penalty = r.repetition_penalty[i];
      p.presence_penalty = r.presence_penalty[i];
      p.frequency_penalty = r.frequency_penalty[i];
      for (int32_t j = r.bias_indptr[i]; j < r.bias_indptr[i + 1]; ++j) {
        p.logit_bias.emplace_back(r.bias_ids[j], r.bias_values[j]);
      }
      const std::span<const int32_t> banned(r.banned_ids.data() + r.banned_indptr[i],
                                            r.banned_indptr[i + 1] - r.banned_indptr[i]);
      if (Sampler::NeedsProcessing(p, !banned.empty())) {
        history_prompt_.clear();
        history_output_.clear();
        for (int32_t j = r.prompt_indptr[i]; j < r.prompt_indptr[i + 1]; ++j) {
          history_prompt_.insert(r.prompt_ids[j]);
        }
        for (int32_t j = r.output_indptr[i]; j < r.output_indptr[i + 1]; ++j) {
          history_output_[r.output_ids[j]] = r.output_counts[j];
        }
      }
      TokenLogprobs lp;
      sampled_ids_[i] = sampler_.SampleRow(row, vocab, p, {&history_prompt_, &history_output_},
                                           banned, r.seed[i], r.step[i], static_cast<int32_t>(n),
                                           r.top_logprobs >= 0 ? &lp : nullptr);
      if (r.top_logprobs < 0) continue;
      sampled_chosen_[i] = lp.logprob;
      for (size_t j = 0; j < lp.top.size() && static_cast<int64_t>(j) < n; ++j) {
        sampled_top_ids_[i * n + j] = lp.top[j].first;
        sampled_top_logprobs_[i * n + j] = lp.top[j].second;
      }
    }
    return {sampled_ids_, sampled_chosen_, sampled_top_ids_, sampled_top_logprobs_};
  }

 private:
  cpu::ThreadPool pool_;
  StepArena arena_;
  const StepBatch* batch_ = nullptr;
  KvCacheSpec kv_;
  std::vector<std::unique_ptr<float[]>> k_cache_, v_cache_;  // per layer
  std::vector<std::unique_ptr<std::vector<float>>> host_floats_;
  // MoE scratch, reused every layer and step.
  std::vector<int32_t> moe_ids_;
  std::vector<float> moe_weights_, moe_logits_, moe_xs_, moe_gate_, moe_up_, moe_ys_;
  cpu::MoePermutation moe_perm_;
  cpu::MlaScratch mla_scratch_;
  Sampler sampler_;
  absl::flat_hash_set<int32_t> history_prompt_;
  absl::flat_hash_map<int32_t, int32_t> history_output_;
  std::vector<int32_t> sampled_ids_, sampled_top_ids_;
  std::vector<float> sampled_chosen_, sampled_top_logprobs_;
  std::vector<cpu::ExpertWeights> moe_experts_;
};

}  // namespace

std::unique_ptr<Ops> MakeCpuOps(int num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  return std::make_unique<CpuOps>(num_threads < 1 ? 1 : num_threads);
}

}  // namespace kvasir
