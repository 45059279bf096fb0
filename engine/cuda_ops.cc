// The CUDA backend of the ops interface, over kernels/cuda: bf16 weights, activations and KV cache,
// float32 logits and RoPE tables, fp32 accumulation everywhere.
//
// Memory (the planner): weights are uploaded one allocation each; the step arena is ONE device
// allocation, sized before the KV pool by running the model on the scheduler's worst-case
// batches with the backend only counting (ReserveActivations); the KV pool is one allocation of
// what is left under the utilization limit (KvCacheBudget). A step's activations are bumped out
// of the arena in the model's call order, so the same batch shape gets the same addresses every
// step, which is what lets a CUDA graph recorded once be replayed.
//
// Batch metadata (token ids, positions, slots, page tables, logits rows) is packed into pinned
// host memory at fixed offsets and copied with one asynchronous copy per step into a device
// buffer of the same layout; every kernel reads it there.
//
// CUDA graphs (CudaOpsOptions::cuda_graphs): a decode step (every sequence computes one token and
// samples) is padded to a bucket size (padding sequences have no context, write no cache slot and
// their logits are never read) and, from the second time its bucket is seen (the first runs
// eagerly, which loads every kernel the step uses), recorded once and replayed. A recorded step
// plans decode attention for max_model_len, so it serves every context under the limit.
//
// Errors: the step methods of Ops return nothing (the CPU backend cannot fail mid-step). A CUDA
// error in a step is sticky (the context is unusable afterwards), so it is fatal here, with the
// kernel's name and the CUDA error; argument errors are programming errors, fatal as well.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/ops.h"
#include "engine/util/status_macros.h"
#include "engine/weights/dummy_weights.h"
#include "kernels/check.h"
#include "kernels/cpu/fp16.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/mla.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/sampler.h"

namespace kvasir {
namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Lays out 256-byte aligned pieces of one buffer in call order: Take returns a piece's offset.
struct Carver {
  size_t bytes = 0;
  size_t Take(size_t n) {
    const size_t at = bytes;
    bytes += AlignUp(n);
    return at;
  }
};

// Copies v to base + offset (a staging buffer's piece).
template <typename T>
void CopyAt(void* base, size_t offset, const std::vector<T>& v) {
  if (!v.empty()) std::memcpy(static_cast<uint8_t*>(base) + offset, v.data(), sizeof(T) * v.size());
}

void Ok(const absl::Status& s) { KV_CHECK(s.ok()) << "CUDA backend: " << s.ToString(); }
void Ok(cudaError_t e, const char* what) { Ok(cuda::CudaStatus(e, what)); }

// Fixed offsets of the per-step metadata inside the pinned staging buffer and its device copy.
struct MetaLayout {
  size_t token_ids = 0, positions = 0, slot_mapping = 0, query_start = 0, seq_lens = 0, indptr = 0,
         logits_indices = 0, block_table = 0, bytes = 0;
  int64_t max_tokens = 0, max_seqs = 0, max_blocks = 0;

  static MetaLayout For(int64_t max_tokens, int64_t max_seqs, int64_t max_blocks) {
    MetaLayout m;
    m.max_tokens = max_tokens;
    m.max_seqs = max_seqs;
    m.max_blocks = max_blocks;
    Carver c;
    auto take = [&c](size_t bytes) { return c.Take(bytes); };
    m.slot_mapping = take(sizeof(int64_t) * max_tokens);
    m.token_ids = take(sizeof(int32_t) * max_tokens);
    m.positions = take(sizeof(int32_t) * max_tokens);
    m.logits_indices = take(sizeof(int32_t) * max_tokens);
    m.query_start = take(sizeof(int32_t) * (max_seqs + 1));
    m.seq_lens = take(sizeof(int32_t) * max_seqs);
    m.indptr = take(sizeof(int32_t) * (max_seqs + 1));
    m.block_table = take(sizeof(int32_t) * max_blocks);  // last: a step copies what it uses
    m.bytes = c.bytes;
    return m;
  }
};

// Fixed offsets of SampleRows' parameters (uploaded) and results (downloaded), the same in the
// pinned buffer and its device copy: parameters first, results after, so each direction is one
// copy.
struct SampleLayout {
  static constexpr int64_t kMaxTop = 20;  // EngineRequest::logprobs' limit
  size_t temperature = 0, top_k = 0, top_p = 0, min_p = 0, seed = 0, step = 0;
  size_t repetition = 0, presence = 0, frequency = 0;
  size_t ids = 0, chosen = 0, top_ids = 0, top_logprobs = 0, params_bytes = 0, bytes = 0;
  int64_t max_rows = 0;

  static SampleLayout For(int64_t rows) {
    SampleLayout l;
    l.max_rows = rows;
    Carver c;
    auto take = [&c](size_t bytes) { return c.Take(bytes); };
    l.seed = take(sizeof(uint64_t) * rows);
    l.step = take(sizeof(uint64_t) * rows);
    l.temperature = take(sizeof(float) * rows);
    l.top_k = take(sizeof(int32_t) * rows);
    l.top_p = take(sizeof(float) * rows);
    l.min_p = take(sizeof(float) * rows);
    l.repetition = take(sizeof(float) * rows);
    l.presence = take(sizeof(float) * rows);
    l.frequency = take(sizeof(float) * rows);
    l.params_bytes = c.bytes;
    l.ids = take(sizeof(int32_t) * rows);
    l.chosen = take(sizeof(float) * rows);
    l.top_ids = take(sizeof(int32_t) * rows * kMaxTop);
    l.top_logprobs = take(sizeof(float) * rows * kMaxTop);
    l.bytes = c.bytes;
    return l;
  }
};

class CudaOps : public Ops {
 public:
  static absl::StatusOr<std::unique_ptr<Ops>> Create(const CudaOpsOptions& o) {
    if (o.max_num_seqs < 1 || o.max_batched_tokens < 1 || o.max_model_len < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CUDA backend: max_num_seqs (", o.max_num_seqs, "), max_batched_tokens (",
          o.max_batched_tokens, ") and max_model_len (", o.max_model_len, ") must be positive"));
    }
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      cudaGetLastError();  // clear the error of a machine without a driver
      return absl::FailedPreconditionError(
          absl::StrCat("CUDA backend: no CUDA device is usable (",
                       err != cudaSuccess ? cudaGetErrorName(err) : "0 devices", ")"));
    }
    if (o.device < 0 || o.device >= count) {
      return absl::InvalidArgumentError(
          absl::StrCat("CUDA backend: device ", o.device, " does not exist (", count, " found)"));
    }
    std::unique_ptr<CudaOps> ops(new CudaOps(o));
    KV_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
    KV_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&ops->props_, o.device));
    if (ops->props_.major < 8) {
      return absl::FailedPreconditionError(
          absl::StrCat("CUDA backend: ", ops->props_.name, " is sm_", ops->props_.major,
                       ops->props_.minor, "; the kernels are built for sm_80 and sm_90a"));
    }
    KV_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&ops->stream_, cudaStreamNonBlocking));
    KV_ASSIGN_OR_RETURN(ops->gemm_, cuda::CublasLtGemm::Create());
    return std::unique_ptr<Ops>(std::move(ops));
  }

  ~CudaOps() override {
    cudaSetDevice(options_.device);  // the caller's thread may have another device current
    for (auto& [bucket, g] : graphs_) {
      if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
    }
    if (meta_host_ != nullptr) cudaFreeHost(meta_host_);
    if (meta_copied_ != nullptr) cudaEventDestroy(meta_copied_);
    if (sample_host_ != nullptr) cudaFreeHost(sample_host_);
    if (lists_host_ != nullptr) cudaFreeHost(lists_host_);
    if (logits_host_ != nullptr) cudaFreeHost(logits_host_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string Describe() const override {
    return absl::StrFormat("cuda (%s, sm_%d%d, %d SMs, %.0f GiB, graphs %s)", props_.name,
                           props_.major, props_.minor, props_.multiProcessorCount,
                           static_cast<double>(props_.totalGlobalMem) / (1 << 30),
                           options_.cuda_graphs ? "on" : "off");
  }

  DType KvCacheDType() const override { return DType::kBF16; }

  // Weights become bf16 whatever the file holds (F32 and F16 are converted, GGUF block types
  // dequantized), in slices of at most kStageElems so a large tensor never needs a host copy of
  // itself in float32. A view without data is a dummy tensor, made here.
  absl::StatusOr<Weight> Upload(const TensorView& t) override {
    Weight w;
    w.dtype = DType::kBF16;
    w.cols = t.shape.empty() ? 1 : t.shape.back();
    w.rows = w.cols == 0 ? 0 : t.numel() / w.cols;
    const int64_t n = w.rows * w.cols;
    KV_ASSIGN_OR_RETURN(DeviceBuffer buf, DeviceBuffer::Allocate(sizeof(bf16) * n));
    if (t.data == nullptr) {  // a dummy tensor to make here (DummyWeightSource::kOnDevice)
      KV_RETURN_IF_ERROR(cuda::FillDummy(buf.as<bf16>(), n, DummyNameSeed(t.name),
                                         DummyIsNorm(t.name), kDummyAmplitude, stream_));
      KV_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    } else if (t.dtype == DType::kBF16) {
      KV_CUDA_RETURN_IF_ERROR(cudaMemcpy(buf.data(), t.data, sizeof(bf16) * n, cudaMemcpyDefault));
    } else {
      const int64_t rows_per_slice =
          std::max<int64_t>(1, kStageElems / std::max<int64_t>(1, w.cols));
      std::vector<float> f(std::min(n, rows_per_slice * w.cols));
      std::vector<uint16_t> h(f.size());
      const uint8_t* src = static_cast<const uint8_t*>(t.data);
      const int64_t row_bytes = RowBytes(t.dtype, w.cols);
      for (int64_t r0 = 0; r0 < w.rows; r0 += rows_per_slice) {
        const int64_t rows = std::min(rows_per_slice, w.rows - r0);
        for (int64_t r = 0; r < rows; ++r) {
          float* dst = f.data() + r * w.cols;
          const uint8_t* row = src + (r0 + r) * row_bytes;
          if (t.dtype == DType::kF32) {
            std::memcpy(dst, row, sizeof(float) * w.cols);
          } else if (t.dtype == DType::kF16) {
            const uint16_t* x = reinterpret_cast<const uint16_t*>(row);
            for (int64_t i = 0; i < w.cols; ++i) dst[i] = cpu::Fp16ToFp32(x[i]);
          } else {
            cpu::DequantizeRow(row, t.dtype, w.cols, dst);
          }
        }
        for (int64_t i = 0; i < rows * w.cols; ++i) h[i] = cpu::Fp32ToBf16(f[i]);
        KV_CUDA_RETURN_IF_ERROR(cudaMemcpy(buf.as<bf16>() + r0 * w.cols, h.data(),
                                           sizeof(bf16) * rows * w.cols, cudaMemcpyHostToDevice));
      }
    }
    w.data = buf.data();
    weights_.push_back(std::move(buf));
    return w;
  }

  absl::StatusOr<Weight> UploadFloats(const std::vector<float>& values) override {
    KV_ASSIGN_OR_RETURN(DeviceBuffer buf, DeviceBuffer::Allocate(sizeof(float) * values.size()));
    KV_CUDA_RETURN_IF_ERROR(cudaMemcpy(buf.data(), values.data(), sizeof(float) * values.size(),
                                       cudaMemcpyHostToDevice));
    Weight w;
    w.data = buf.data();
    w.dtype = DType::kF32;
    w.rows = 1;
    w.cols = static_cast<int64_t>(values.size());
    weights_.push_back(std::move(buf));
    return w;
  }

  std::optional<int64_t> KvCacheBudget(double utilization) override {
    size_t free_bytes = 0, total = 0;
    if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return int64_t{0};
    // What is in use (weights, arena, cuBLASLt workspace, the context, other processes) comes
    // off the share this process may fill, and so does headroom for what comes after the pool
    // (CUDA graphs, lazily loaded kernels): 1 GiB, or 2 % of a small device.
    const double headroom = std::min(double{1 << 30}, 0.02 * static_cast<double>(total));
    const double budget = utilization * static_cast<double>(total) -
                          static_cast<double>(total - free_bytes) - headroom;
    return static_cast<int64_t>(std::max(0.0, budget));
  }

  absl::Status ReserveActivations(const KvCacheSpec& kv,
                                  const std::vector<const StepBatch*>& worst_cases,
                                  const std::function<Tensor(const StepBatch&)>& fwd) override {
    kv_ = kv;  // the layout; AllocateKvCache adds the block count
    int64_t max_tokens = 1, max_seqs = 1;
    for (const StepBatch* b : worst_cases) {
      max_tokens = std::max<int64_t>(max_tokens, b->num_tokens());
      max_seqs = std::max<int64_t>(max_seqs, b->num_seqs());
    }
    max_tokens = std::max<int64_t>(max_tokens, options_.max_batched_tokens);
    max_seqs = std::max<int64_t>(max_seqs, options_.max_num_seqs);
    // Every sequence of a step may hold max_model_len positions.
    const int64_t block_size = std::max(1, kv.block_size);
    const int64_t max_blocks =
        max_seqs * ((int64_t{options_.max_model_len} + block_size - 1) / block_size + 1);
    meta_ = MetaLayout::For(max_tokens, max_seqs, max_blocks);
    KV_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&meta_host_, meta_.bytes, cudaHostAllocDefault));
    KV_ASSIGN_OR_RETURN(meta_dev_, DeviceBuffer::Allocate(meta_.bytes));

    KV_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&meta_copied_, cudaEventDisableTiming));
    sample_ = SampleLayout::For(max_tokens);
    KV_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&sample_host_, sample_.bytes, cudaHostAllocDefault));
    KV_ASSIGN_OR_RETURN(sample_dev_, DeviceBuffer::Allocate(sample_.bytes));

    planning_ = true;
    size_t peak = 0, scratch_peak = 0;
    for (const StepBatch* b : worst_cases) {
      BeginStep(*b);
      fwd(*b);
      peak = std::max(peak, arena_used_);
      scratch_peak = std::max(scratch_peak, scratch_peak_);
    }
    planning_ = false;
    // Slack for the shapes between the worst cases (decode attention's workspace is not
    // monotonic in the batch size); running past either is a fatal error naming both sizes.
    scratch_bytes_ = AlignUp(scratch_peak + scratch_peak / 8 + (size_t{1} << 20));
    arena_bytes_ = AlignUp(peak + peak / 8 + (size_t{16} << 20));
    KV_ASSIGN_OR_RETURN(arena_, DeviceBuffer::Allocate(scratch_bytes_ + arena_bytes_));
    return absl::OkStatus();
  }

  absl::Status AllocateKvCache(const KvCacheSpec& spec) override {
    if (spec.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("the CUDA KV cache is bf16, not ", std::string(DTypeName(spec.dtype))));
    }
    const bool mla = spec.layout == KvLayout::kMlaLatent;
    if (!mla && spec.v_head_dim != 0 && spec.v_head_dim != spec.head_dim) {
      return absl::InvalidArgumentError("the CUDA K/V cache needs V heads as wide as K");
    }
    if (meta_dev_.data() == nullptr) {
      return absl::FailedPreconditionError(
          "CUDA backend: ReserveActivations must run before AllocateKvCache");
    }
    kv_ = spec;
    const int64_t slots = int64_t{spec.num_blocks} * spec.block_size;
    const size_t array_bytes =
        AlignUp(sizeof(bf16) * slots * spec.elements_per_token_layer() / (mla ? 1 : 2));
    const int arrays = mla ? 1 : 2;
    KV_ASSIGN_OR_RETURN(kv_pool_, DeviceBuffer::Allocate(array_bytes * arrays * spec.num_layers));
    // Zeroed once: a slot is written before it is read, but a benchmark's made-up contexts read
    // slots nothing wrote, and left-over NaNs there would route every MoE token alike.
    KV_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(kv_pool_.data(), 0, kv_pool_.bytes(), stream_));
    // The uploads (cudaMemcpy on the legacy stream, which this non-blocking stream does not wait
    // for) and the memset are done before the first step.
    KV_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    k_cache_.clear();
    v_cache_.clear();
    for (int32_t l = 0; l < spec.num_layers; ++l) {
      bf16* base = reinterpret_cast<bf16*>(kv_pool_.as<uint8_t>() + array_bytes * arrays * l);
      k_cache_.push_back(base);
      v_cache_.push_back(
          mla ? nullptr : reinterpret_cast<bf16*>(reinterpret_cast<uint8_t*>(base) + array_bytes));
    }
    return absl::OkStatus();
  }

  Tensor RunStep(const StepBatch& batch,
                 const std::function<Tensor(const StepBatch&)>& forward) override {
    // The engine runs steps on its own thread; the current device is per thread.
    Ok(cudaSetDevice(options_.device), "cudaSetDevice");
    const int32_t bucket = options_.cuda_graphs ? GraphBucket(batch) : 0;
    if (bucket == 0) {
      BeginStep(batch);
      return forward(batch);
    }
    PadDecodeBatch(batch, bucket, &padded_);
    BeginStep(padded_);
    decode_plan_len_ = options_.max_model_len;  // a recording serves every context length
    Graph& g = graphs_[bucket];
    Tensor logits;
    if (!g.warmed) {
      g.warmed = true;
      logits = forward(padded_);
    } else {
      if (g.exec == nullptr) Record(padded_, forward, &g);
      Ok(cudaGraphLaunch(g.exec, stream_), "cudaGraphLaunch");
      logits = g.logits;
    }
    logits.rows = static_cast<int64_t>(batch.logits_indices.size());
    return logits;
  }

  void BeginStep(const StepBatch& batch) override {
    batch_ = &batch;
    arena_used_ = 0;
    scratch_peak_ = 0;
    decode_only_ = batch.num_seqs() > 0;
    max_query_len_ = 0;
    decode_plan_len_ = 1;
    for (int32_t s = 0; s < batch.num_seqs(); ++s) {
      const int32_t q = batch.query_start[s + 1] - batch.query_start[s];
      max_query_len_ = std::max(max_query_len_, q);
      decode_only_ = decode_only_ && q == 1;
      decode_plan_len_ = std::max(decode_plan_len_, batch.seq_lens[s]);
    }
    if (planning_) return;
    KV_CHECK(batch.num_tokens() <= meta_.max_tokens && batch.num_seqs() <= meta_.max_seqs &&
             static_cast<int64_t>(batch.block_table.size()) <= meta_.max_blocks &&
             static_cast<int64_t>(batch.logits_indices.size()) <= meta_.max_tokens)
        << "CUDA backend: a step of " << batch.num_tokens() << " tokens, " << batch.num_seqs()
        << " sequences and " << batch.block_table.size()
        << " pages is over the reserved metadata bounds";
    // The previous step's copy out of the staging buffer must be done before it is rewritten
    // (ToHost synchronises every step; this holds whatever the caller did).
    Ok(cudaEventSynchronize(meta_copied_), "cudaEventSynchronize(step metadata)");
    auto put = [this](size_t off, const auto& v) { CopyAt(meta_host_, off, v); };
    put(meta_.token_ids, batch.token_ids);
    put(meta_.positions, batch.positions);
    put(meta_.slot_mapping, batch.slot_mapping);
    put(meta_.query_start, batch.query_start);
    put(meta_.seq_lens, batch.seq_lens);
    put(meta_.indptr, batch.block_table_indptr);
    put(meta_.logits_indices, batch.logits_indices);
    put(meta_.block_table, batch.block_table);
    const size_t used = meta_.block_table + sizeof(int32_t) * batch.block_table.size();
    Ok(cudaMemcpyAsync(meta_dev_.data(), meta_host_, used, cudaMemcpyHostToDevice, stream_),
       "cudaMemcpyAsync(step metadata)");
    Ok(cudaEventRecord(meta_copied_, stream_), "cudaEventRecord(step metadata)");
  }

  Tensor Alloc(int64_t rows, int64_t cols) override {
    return {AllocBytes(sizeof(bf16) * rows * cols), rows, cols, DType::kBF16};
  }
  Tensor AllocF32(int64_t rows, int64_t cols) override {
    return {AllocBytes(sizeof(float) * rows * cols), rows, cols, DType::kF32};
  }

  void Embedding(const Weight& table, Tensor out) override {
    if (planning_) return;
    Ok(cuda::Embedding(Bf16(table), table.rows, table.cols, Meta<int32_t>(meta_.token_ids),
                       out.rows, Bf16(out), stream_));
  }

  void RmsNorm(Tensor x, const Weight& w, float eps, Tensor out) override {
    if (planning_) return;
    Ok(cuda::RmsNorm(Bf16(x), Bf16(w), x.rows, x.cols, eps, Bf16(out), stream_));
  }

  void MatMul(Tensor x, const Weight& w, const Weight* bias, Tensor out) override {
    if (planning_ || x.rows == 0) return;
    KV_CHECK(w.cols == x.cols && w.rows == out.cols && x.rows == out.rows)
        << "MatMul shapes " << x.rows << "x" << x.cols << " * (" << w.rows << "x" << w.cols
        << ")^T -> " << out.rows << "x" << out.cols;
    KV_CHECK(bias == nullptr || out.dtype == DType::kBF16) << "a bias needs a bf16 output";
    cuda::GemmArgs a;
    a.x = Bf16(x);
    a.w = Bf16(w);
    a.bias = bias != nullptr ? bias->data : nullptr;
    a.y = out.data;
    a.y_dtype = out.dtype;
    a.m = x.rows;
    a.n = out.cols;
    a.k = x.cols;
    Ok(gemm_->Run(a, stream_));
  }

  void Add(Tensor a, Tensor b) override {
    if (planning_) return;
    Ok(cuda::AddInPlace(Bf16(a), Bf16(b), a.numel(), stream_));
  }

  void SiluMul(Tensor gate, Tensor up, Tensor out) override {
    if (planning_) return;
    Ok(cuda::SiluMul(Bf16(gate), Bf16(up), gate.cols, gate.rows, gate.cols, Bf16(out), stream_));
  }

  Tensor RopeTable(const Weight& inv_freq, int32_t rot_dim, RopeAngles angles,
                   float attention_factor) override {
    Tensor table = AllocF32(batch_->num_tokens(), rot_dim);
    if (planning_) return table;
    Ok(cuda::RopeTable(
        Meta<int32_t>(meta_.positions), table.rows, static_cast<const float*>(inv_freq.data),
        rot_dim, angles == RopeAngles::kGgmlRecurrence, attention_factor, table.f32(), stream_));
    return table;
  }

  void Rope(Tensor x, int32_t head_dim, int32_t rot_offset, Tensor table,
            RopeLayout layout) override {
    if (planning_) return;
    Ok(cuda::RopeApply(
        Bf16(x), x.rows, static_cast<int32_t>(x.cols / head_dim), head_dim, rot_offset,
        static_cast<int32_t>(table.cols), table.f32(),
        layout == RopeLayout::kInterleaved ? cuda::RopeStyle::kInterleaved : cuda::RopeStyle::kNeox,
        stream_));
  }

  void Attention(int32_t layer, Tensor q, Tensor k, Tensor v, float scale, Tensor out) override {
    const int32_t hd = kv_.head_dim;
    const int32_t heads = static_cast<int32_t>(q.cols / hd);
    cuda::DecodeAttentionPlan plan;
    void* workspace = nullptr;
    if (decode_only_) {
      plan = cuda::PlanDecodeAttention(batch_->num_seqs(), heads, kv_.num_kv_heads, hd,
                                       decode_plan_len_, props_.multiProcessorCount);
      workspace = Scratch(0, plan.workspace_bytes);
    }
    if (planning_) return;
    Ok(cuda::WriteKvCache(Bf16(k), Bf16(v), k.rows, int64_t{kv_.num_kv_heads} * hd,
                          Meta<int64_t>(meta_.slot_mapping), k_cache_[layer], v_cache_[layer],
                          stream_));
    const cuda::PagedKv kv = PagedKv(layer);
    if (decode_only_) {
      cuda::DecodeAttentionArgs a;
      a.q = Bf16(q);
      a.out = Bf16(out);
      a.num_seqs = batch_->num_seqs();
      a.num_heads = heads;
      a.scale = scale;
      a.kv = kv;
      a.plan = plan;
      a.workspace = workspace;
      Ok(cuda::DecodeAttention(a, stream_));
    } else {
      cuda::PrefillAttentionArgs a;
      a.q = Bf16(q);
      a.out = Bf16(out);
      a.query_start = Meta<int32_t>(meta_.query_start);
      a.num_seqs = batch_->num_seqs();
      a.num_heads = heads;
      a.max_query_len = max_query_len_;
      a.scale = scale;
      a.kv = kv;
      Ok(cuda::PrefillAttention(a, stream_));
    }
  }

  void MlaAttention(int32_t layer, Tensor q, Tensor latent, Tensor k_rope, const Weight& kv_b,
                    const MlaDims& dims, float scale, Tensor out) override {
    KV_CHECK(kv_.layout == KvLayout::kMlaLatent && dims.kv_lora_rank == kv_.kv_lora_rank &&
             dims.rope_dim == kv_.rope_dim)
        << "MlaAttention needs the MLA latent cache of its dims";
    const cuda::MlaShape shape{.num_heads = dims.num_heads,
                               .nope_dim = dims.nope_dim,
                               .rope_dim = dims.rope_dim,
                               .v_dim = dims.v_dim,
                               .kv_lora_rank = dims.kv_lora_rank};
    const int32_t tokens = static_cast<int32_t>(q.rows);
    const cuda::MlaPlan plan =
        cuda::PlanMla(shape, std::max(tokens, 1), decode_plan_len_, props_.multiProcessorCount);
    void* workspace = Scratch(0, plan.workspace_bytes);
    if (planning_) return;
    cuda::MlaWriteCacheArgs w;
    w.latent = Bf16(latent);
    w.latent_row_stride = latent.cols;
    w.k_rope = Bf16(k_rope);
    w.k_rope_row_stride = k_rope.cols;
    w.num_tokens = tokens;
    w.kv_lora_rank = dims.kv_lora_rank;
    w.rope_dim = dims.rope_dim;
    w.slot_mapping = Meta<int64_t>(meta_.slot_mapping);
    w.cache = k_cache_[layer];
    Ok(cuda::MlaWriteCache(w, stream_));
    cuda::MlaAttentionArgs a;
    a.q = Bf16(q);
    a.kv_b = Bf16(kv_b);
    a.out = Bf16(out);
    a.shape = shape;
    a.scale = scale;
    a.num_seqs = batch_->num_seqs();
    a.num_tokens = tokens;
    a.query_start = decode_only_ ? nullptr : Meta<int32_t>(meta_.query_start);
    a.cache = k_cache_[layer];
    a.block_size = kv_.block_size;
    a.kv_indptr = Meta<int32_t>(meta_.indptr);
    a.kv_indices = Meta<int32_t>(meta_.block_table);
    a.seq_lens = Meta<int32_t>(meta_.seq_lens);
    a.plan = plan;
    a.workspace = workspace;
    Ok(decode_only_ ? cuda::MlaDecode(a, stream_) : cuda::MlaAttention(a, stream_));
  }

  void Moe(Tensor x, const MoeWeights& w, Tensor out) override {
    const MoeRouting& r = w.routing;
    const int32_t tokens = static_cast<int32_t>(x.rows);
    const size_t logits_bytes = AlignUp(sizeof(float) * x.rows * r.num_experts);
    const Tensor logits = {Scratch(0, logits_bytes), x.rows, r.num_experts, DType::kF32};
    const size_t ws_bytes =
        cuda::MoeWorkspaceBytes(x.rows, r.top_k, r.num_experts, x.cols, w.inter);
    void* workspace = Scratch(logits_bytes, ws_bytes);
    // The experts' pointer arrays go to the device once per layer, on its first (planning) run:
    // never inside a recording.
    const ExpertPointers& e = ExpertPointersOf(w);
    if (planning_ || tokens == 0) return;
    MatMul(x, w.router, nullptr, logits);
    cuda::MoeForwardArgs a;
    a.x = Bf16(x);
    a.router_logits = logits.f32();
    a.selection_bias =
        w.selection_bias.empty() ? nullptr : static_cast<const float*>(w.selection_bias.data);
    a.num_tokens = tokens;
    a.hidden = x.cols;
    a.inter = w.inter;
    a.routing = r;
    a.gate.ptrs = e.gate;
    a.up.ptrs = e.up;
    a.down.ptrs = e.down;
    a.out = Bf16(out);
    a.workspace = workspace;
    a.workspace_bytes = ws_bytes;
    Ok(cuda::MoeForward(a, stream_));
  }

  void GatherLogitsRows(Tensor x, Tensor out) override {
    if (planning_) return;
    Ok(cuda::GatherRows(Bf16(x), x.cols, Meta<int32_t>(meta_.logits_indices), out.rows, Bf16(out),
                        stream_));
  }

  std::span<const float> ToHost(Tensor x) override {
    if (planning_) return {};
    const size_t bytes = sizeof(float) * x.numel();
    if (bytes > logits_host_bytes_) {  // grows to the largest logits once; never in a recording
      if (logits_host_ != nullptr) Ok(cudaFreeHost(logits_host_), "cudaFreeHost");
      Ok(cudaHostAlloc(&logits_host_, bytes, cudaHostAllocDefault), "cudaHostAlloc(logits)");
      logits_host_bytes_ = bytes;
    }
    if (bytes > 0) {
      const float* src = x.f32();
      if (x.dtype == DType::kBF16) {
        Tensor f = AllocF32(x.rows, x.cols);
        Ok(cuda::ToFloat(Bf16(x), x.numel(), f.f32(), stream_));
        src = f.f32();
      }
      Ok(cudaMemcpyAsync(logits_host_, src, bytes, cudaMemcpyDeviceToHost, stream_),
         "cudaMemcpyAsync(logits)");
    }
    // Also for a step without logits rows: its kernels are done before the next step begins.
    Ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(step)");
    return {static_cast<const float*>(logits_host_), static_cast<size_t>(x.numel())};
  }
  bool CanSampleRows(int64_t vocab) const override { return vocab <= cuda::kSampleMaxVocab; }

  // cuda::Sample over the logits in place (it applies the processors and restores the logits),
  // then cuda::Logprobs of the raw logits when asked; one upload of the parameters (and one of
  // the processors' lists when there are any), one download of the results.
  SampledRows SampleRows(Tensor logits, const SampleRowsRequest& r) override {
    const int64_t rows = logits.rows;
    const int64_t n = r.top_logprobs;
    KV_CHECK(logits.dtype == DType::kF32 && static_cast<int64_t>(r.temperature.size()) == rows &&
             rows <= sample_.max_rows && n <= SampleLayout::kMaxTop)
        << "SampleRows: " << rows << " rows, " << r.temperature.size() << " parameter rows, top "
        << n;
    uint8_t* h = static_cast<uint8_t*>(sample_host_);
    auto put = [&](size_t off, const auto& v) {
      KV_CHECK_EQ(static_cast<int64_t>(v.size()), rows);
      CopyAt(h, off, v);
    };
    put(sample_.temperature, r.temperature);
    put(sample_.top_k, r.top_k);
    put(sample_.top_p, r.top_p);
    put(sample_.min_p, r.min_p);
    put(sample_.seed, r.seed);
    put(sample_.step, r.step);
    put(sample_.repetition, r.repetition_penalty);
    put(sample_.presence, r.presence_penalty);
    put(sample_.frequency, r.frequency_penalty);
    uint8_t* d = sample_dev_.as<uint8_t>();
    Ok(cudaMemcpyAsync(d, h, sample_.params_bytes, cudaMemcpyHostToDevice, stream_),
       "cudaMemcpyAsync(sampling parameters)");
    cuda::SampleArgs a;
    a.logits = logits.f32();
    a.rows = static_cast<int32_t>(rows);
    a.vocab = static_cast<int32_t>(logits.cols);
    a.params.temperature = reinterpret_cast<const float*>(d + sample_.temperature);
    a.params.top_k = reinterpret_cast<const int32_t*>(d + sample_.top_k);
    a.params.top_p = reinterpret_cast<const float*>(d + sample_.top_p);
    a.params.min_p = reinterpret_cast<const float*>(d + sample_.min_p);
    a.params.seed = reinterpret_cast<const uint64_t*>(d + sample_.seed);
    a.params.step = reinterpret_cast<const uint64_t*>(d + sample_.step);
    a.params.repetition_penalty = reinterpret_cast<const float*>(d + sample_.repetition);
    a.params.presence_penalty = reinterpret_cast<const float*>(d + sample_.presence);
    a.params.frequency_penalty = reinterpret_cast<const float*>(d + sample_.frequency);
    a.ids = reinterpret_cast<int32_t*>(d + sample_.ids);
    if (r.list_entries() > 0) UploadLists(r, &a);
    Ok(cuda::Sample(a, stream_));
    const int64_t top = std::min<int64_t>(std::max<int64_t>(n, 0), logits.cols);
    size_t results = sizeof(int32_t) * rows;  // the ids; with logprobs, everything after them
    if (n >= 0) {
      cuda::LogprobsArgs l;
      l.logits = logits.f32();
      l.rows = a.rows;
      l.vocab = a.vocab;
      l.top_k = static_cast<int32_t>(top);
      l.top_ids = reinterpret_cast<int32_t*>(d + sample_.top_ids);
      l.top_logprobs = reinterpret_cast<float*>(d + sample_.top_logprobs);
      l.chosen = a.ids;
      l.chosen_logprob = reinterpret_cast<float*>(d + sample_.chosen);
      Ok(cuda::Logprobs(l, stream_));
      results = sample_.bytes - sample_.ids;
    }
    Ok(cudaMemcpyAsync(h + sample_.ids, d + sample_.ids, results, cudaMemcpyDeviceToHost, stream_),
       "cudaMemcpyAsync(sampled ids)");
    Ok(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(step)");
    SampledRows out;
    out.ids = {reinterpret_cast<const int32_t*>(h + sample_.ids), static_cast<size_t>(rows)};
    if (n >= 0) {
      // Logprobs wrote rows of `top` entries; SampledRows' rows are n wide (n > top only for a
      // vocabulary under n): spread them out, "none" (-1) past the vocabulary.
      int32_t* ids = reinterpret_cast<int32_t*>(h + sample_.top_ids);
      float* lps = reinterpret_cast<float*>(h + sample_.top_logprobs);
      if (top < n) {
        for (int64_t i = rows - 1; i >= 0; --i) {
          for (int64_t j = n - 1; j >= 0; --j) {
            ids[i * n + j] = j < top ? ids[i * top + j] : -1;
            lps[i * n + j] = j < top ? lps[i * top + j] : -INFINITY;
          }
        }
      }
      out.chosen_logprob = {reinterpret_cast<const float*>(h + sample_.chosen),
                            static_cast<size_t>(rows)};
      out.top_ids = {ids, static_cast<size_t>(rows * n)};
      out.top_logprobs = {lps, static_cast<size_t>(rows * n)};
    }
    return out;
  }

 private:
  static constexpr int64_t kStageElems = int64_t{1} << 22;

  struct Graph {
    bool warmed = false;
    cudaGraphExec_t exec = nullptr;
    Tensor logits;  // where the recording leaves its logits (arena addresses are fixed)
  };

  explicit CudaOps(const CudaOpsOptions& o) : options_(o) {}

  template <typename T>
  T* Meta(size_t offset) const {
    return reinterpret_cast<T*>(meta_dev_.as<uint8_t>() + offset);
  }
  static bf16* Bf16(const Tensor& t) {
    KV_DCHECK(t.dtype == DType::kBF16);
    return static_cast<bf16*>(t.data);
  }
  static const bf16* Bf16(const Weight& w) {
    KV_CHECK(w.dtype == DType::kBF16) << "CUDA weights are bf16";
    return static_cast<const bf16*>(w.data);
  }

  // The processors' lists of a SampleRows call, one upload into a device copy of the same layout,
  // and the sampler's workspace (4 bytes per entry); both grow to the largest step's.
  void UploadLists(const SampleRowsRequest& r, cuda::SampleArgs* a) {
    Carver c;
    struct Piece {
      size_t offset;
      const void* data;
      size_t bytes;
    };
    std::vector<Piece> pieces;
    auto take = [&](const auto& v) {
      const size_t bytes = sizeof(v[0]) * v.size();
      pieces.push_back({c.Take(bytes), v.data(), bytes});
      return pieces.back().offset;
    };
    const size_t bias_indptr = take(r.bias_indptr), bias_ids = take(r.bias_ids),
                 bias_values = take(r.bias_values), prompt_indptr = take(r.prompt_indptr),
                 prompt_ids = take(r.prompt_ids), output_indptr = take(r.output_indptr),
                 output_ids = take(r.output_ids), output_counts = take(r.output_counts),
                 banned_indptr = take(r.banned_indptr), banned_ids = take(r.banned_ids);
    if (c.bytes > lists_bytes_) {
      const size_t bytes = std::max(c.bytes, 2 * lists_bytes_);
      if (lists_host_ != nullptr) Ok(cudaFreeHost(lists_host_), "cudaFreeHost");
      Ok(cudaHostAlloc(&lists_host_, bytes, cudaHostAllocDefault), "cudaHostAlloc(lists)");
      absl::StatusOr<DeviceBuffer> dev = DeviceBuffer::Allocate(bytes);
      Ok(dev.status());
      lists_dev_ = *std::move(dev);
      lists_bytes_ = bytes;
    }
    uint8_t* h = static_cast<uint8_t*>(lists_host_);
    for (const Piece& p : pieces) {
      if (p.bytes > 0) std::memcpy(h + p.offset, p.data, p.bytes);
    }
    Ok(cudaMemcpyAsync(lists_dev_.data(), h, c.bytes, cudaMemcpyHostToDevice, stream_),
       "cudaMemcpyAsync(sampling lists)");
    const size_t ws = cuda::SampleWorkspaceBytes(r.list_entries());
    if (ws > sample_ws_.bytes()) {
      absl::StatusOr<DeviceBuffer> buf =
          DeviceBuffer::Allocate(std::max(ws, 2 * sample_ws_.bytes()));
      Ok(buf.status());
      sample_ws_ = *std::move(buf);
    }
    const uint8_t* d = lists_dev_.as<uint8_t>();
    auto i32 = [d](size_t off) { return reinterpret_cast<const int32_t*>(d + off); };
    a->bias = {i32(bias_indptr), i32(bias_ids)};
    a->bias_values = reinterpret_cast<const float*>(d + bias_values);
    a->prompt = {i32(prompt_indptr), i32(prompt_ids)};
    a->output = {i32(output_indptr), i32(output_ids)};
    a->output_counts = i32(output_counts);
    a->banned = {i32(banned_indptr), i32(banned_ids)};
    a->workspace = sample_ws_.data();
    a->workspace_bytes = sample_ws_.bytes();
  }

  // Op-local scratch (attention, MLA and MoE workspaces, router logits): one region at the start
  // of the arena that every op reuses in turn (stream order keeps them apart), bytes at offset.
  void* Scratch(size_t offset, size_t bytes) {
    scratch_peak_ = std::max(scratch_peak_, AlignUp(offset + bytes));
    if (planning_) return nullptr;
    KV_CHECK(scratch_peak_ <= scratch_bytes_)
        << "CUDA backend: an op needs more than the " << scratch_bytes_
        << " bytes of scratch reserved for the worst-case batches";
    return arena_.as<uint8_t>() + offset;
  }

  void* AllocBytes(size_t bytes) {
    const size_t at = arena_used_;
    arena_used_ += AlignUp(bytes);
    if (planning_) return nullptr;
    KV_CHECK(arena_used_ <= arena_bytes_)
        << "CUDA backend: this step needs more than the " << arena_bytes_
        << " bytes of activations reserved for the worst-case batches";
    return arena_.as<uint8_t>() + scratch_bytes_ + at;
  }

  // Device arrays of one MoE layer's per-expert weight pointers.
  struct ExpertPointers {
    DeviceBuffer buffer;  // gate [E], up [E], down [E]
    const bf16* const* gate = nullptr;
    const bf16* const* up = nullptr;
    const bf16* const* down = nullptr;
  };

  const ExpertPointers& ExpertPointersOf(const MoeWeights& w) {
    auto [it, inserted] = expert_pointers_.try_emplace(&w);
    ExpertPointers& e = it->second;
    if (!inserted) return e;
    const int32_t n = w.routing.num_experts;
    std::vector<const bf16*> host;
    for (const std::vector<Weight>* part : {&w.gate, &w.up, &w.down}) {
      KV_CHECK(static_cast<int32_t>(part->size()) == n) << "MoE weights of " << n << " experts";
      for (const Weight& x : *part) host.push_back(Bf16(x));
    }
    absl::StatusOr<DeviceBuffer> buf = DeviceBuffer::Allocate(sizeof(bf16*) * host.size());
    Ok(buf.status());
    e.buffer = *std::move(buf);
    Ok(cudaMemcpy(e.buffer.data(), host.data(), sizeof(bf16*) * host.size(),
                  cudaMemcpyHostToDevice),
       "cudaMemcpy(expert pointers)");
    e.gate = e.buffer.as<const bf16*>();
    e.up = e.gate + n;
    e.down = e.up + n;
    return e;
  }

  cuda::PagedKv PagedKv(int32_t layer) const {
    cuda::PagedKv kv;
    kv.k_cache = k_cache_[layer];
    kv.v_cache = v_cache_[layer];
    kv.block_size = kv_.block_size;
    kv.num_kv_heads = kv_.num_kv_heads;
    kv.head_dim = kv_.head_dim;
    kv.kv_indptr = Meta<int32_t>(meta_.indptr);
    kv.kv_indices = Meta<int32_t>(meta_.block_table);
    kv.seq_lens = Meta<int32_t>(meta_.seq_lens);
    return kv;
  }

  // The bucket a decode step is padded to, or 0 when the step is not a plain decode step.
  int32_t GraphBucket(const StepBatch& b) const {
    const int32_t n = b.num_seqs();
    if (n == 0 || n > options_.max_num_seqs || b.num_tokens() != n ||
        static_cast<int32_t>(b.logits_indices.size()) != n) {
      return 0;
    }
    for (const ScheduledSequence& s : b.seqs) {
      if (s.num_new_tokens != 1 || !s.samples || s.num_prompt_logit_rows != 0) return 0;
    }
    const int32_t bucket = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : (n + 7) / 8 * 8;
    // Past the bounds the arena and metadata were reserved for, the step runs eagerly.
    return bucket <= std::min(options_.max_num_seqs, options_.max_batched_tokens) ? bucket : 0;
  }

  // b padded to `bucket` sequences of one token; padding sequences have no context and no slot.
  static void PadDecodeBatch(const StepBatch& b, int32_t bucket, StepBatch* p) {
    *p = b;
    const int32_t pages = b.block_table_indptr.back();
    for (int32_t i = b.num_seqs(); i < bucket; ++i) {
      p->seqs.push_back({.uid = 0, .start_position = 0, .num_new_tokens = 1, .samples = true});
      p->token_ids.push_back(0);
      p->positions.push_back(0);
      p->slot_mapping.push_back(-1);
      p->query_start.push_back(i + 1);
      p->seq_lens.push_back(0);
      p->block_table_indptr.push_back(pages);
      p->logits_indices.push_back(i);
    }
  }

  void Record(const StepBatch& padded, const std::function<Tensor(const StepBatch&)>& forward,
              Graph* g) {
    cudaGraph_t graph = nullptr;
    Ok(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    g->logits = forward(padded);
    Ok(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
    Ok(cudaGraphInstantiate(&g->exec, graph, 0), "cudaGraphInstantiate");
    Ok(cudaGraphDestroy(graph), "cudaGraphDestroy");
  }

  CudaOpsOptions options_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::CublasLtGemm> gemm_;
  std::vector<DeviceBuffer> weights_;

  // The step: its batch, its arena and the attention mode it runs.
  const StepBatch* batch_ = nullptr;
  bool planning_ = false;
  DeviceBuffer arena_;
  size_t arena_bytes_ = 0, arena_used_ = 0;      // the step's tensors, after the scratch
  size_t scratch_bytes_ = 0, scratch_peak_ = 0;  // op-local workspaces, at the arena's start
  bool decode_only_ = false;
  int32_t max_query_len_ = 0, decode_plan_len_ = 1;

  MetaLayout meta_;
  void* meta_host_ = nullptr;          // pinned
  cudaEvent_t meta_copied_ = nullptr;  // the last step's metadata copy
  DeviceBuffer meta_dev_;
  SampleLayout sample_;
  void* sample_host_ = nullptr;  // pinned
  DeviceBuffer sample_dev_;
  void* lists_host_ = nullptr;  // pinned
  size_t lists_bytes_ = 0;
  DeviceBuffer lists_dev_, sample_ws_;
  void* logits_host_ = nullptr;  // pinned
  size_t logits_host_bytes_ = 0;

  KvCacheSpec kv_;
  DeviceBuffer kv_pool_;
  std::vector<bf16*> k_cache_, v_cache_;  // per layer (v: null for MLA)

  std::map<const MoeWeights*, ExpertPointers> expert_pointers_;  // by layer
  std::map<int32_t, Graph> graphs_;                              // by bucket
  StepBatch padded_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Ops>> MakeCudaOps(const CudaOpsOptions& options) {
  return CudaOps::Create(options);
}

}  // namespace kvasir
